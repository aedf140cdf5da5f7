"""Log every message with its flags, change "Hello" to "HAPPY", drop "FOOBAR" (mitmproxy addon
style: the calls of mitmproxy's websocket-simple.py example, plus ``dropped`` and
``injected``)."""

import logging
import re

from mitmproxy import http


def websocket_message(flow: http.HTTPFlow):
    message = flow.websocket.messages[-1]
    who = "client" if message.from_client else "server"
    logging.info(
        f"watcher: {who} {message.content!r} injected={message.injected} dropped={message.dropped}"
    )
    message.content = re.sub(rb"^Hello", b"HAPPY", message.content)
    if b"FOOBAR" in message.content:
        message.drop()
