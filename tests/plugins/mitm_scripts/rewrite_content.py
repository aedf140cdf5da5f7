"""Rewrite WebSocket messages in flight (mitmproxy addon style, as in mitmproxy's examples).

Client text messages: "hello" becomes "HELLO". Server text messages get " [seen]" appended.
Binary messages from the client are reversed.
"""

from mitmproxy import http


def websocket_message(flow: http.HTTPFlow):
    assert flow.websocket is not None  # make type checker happy
    message = flow.websocket.messages[-1]
    if message.from_client and message.is_text:
        message.content = message.content.replace(b"hello", b"HELLO")
    elif message.is_text:
        message.text = message.text + " [seen]"
    elif message.from_client:
        message.content = message.content[::-1]
