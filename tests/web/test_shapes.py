"""The UI's MSG and CONN shapes (``wsproxy.web.shapes``): exactly the contract's fields."""

from __future__ import annotations

from typing import Any

import pytest

from wsproxy.model import (
    CloseInfo,
    Counters,
    Flow,
    FrameEvent,
    HandshakeRequest,
    HandshakeResponse,
    HttpExchange,
    Message,
)
from wsproxy.sansio.frames import Opcode, serialize_close
from wsproxy.sansio.http11 import Headers
from wsproxy.web.shapes import (
    PREVIEW_CHARS,
    conn_dict,
    exchange_dict,
    message_dict,
    opcode_name,
    preview,
)

MSG_KEYS = {
    "seq",
    "from",
    "ts",
    "opcode",
    "size",
    "wire_size",
    "fragments",
    "verdict",
    "preview",
    "truncated",
    "decoded",
    "original_preview",
    "close",
}
CONN_KEYS = {
    "id",
    "kind",
    "url",
    "method",
    "status",
    "client",
    "state",
    "subprotocol",
    "extensions",
    "counts",
    "close",
    "error",
    "started",
    "ended",
    "decoder",
}


def flow(**fields: Any) -> Flow:
    request = HandshakeRequest("wss", "example.com", 443, "/chat?room=1", Headers())
    return Flow("c3", ("127.0.0.1", 50312), request, started=1796000000.12, **fields)


# -- MSG ---------------------------------------------------------------------------------------


def test_text_message() -> None:
    message = Message(True, Opcode.TEXT, b"hello", timestamp=12.5)
    shape = message_dict("c3", 17, message)
    assert set(shape) == MSG_KEYS
    assert shape == {
        "seq": 17,
        "from": "client",
        "ts": 12.5,
        "opcode": "text",
        "size": 5,
        "wire_size": 5,
        "fragments": 1,
        "verdict": "forwarded",
        "preview": "hello",
        "truncated": False,
        "decoded": None,
        "original_preview": None,
        "close": None,
    }


def test_modified_compressed_fragmented_message() -> None:
    message = Message(
        False,
        Opcode.TEXT,
        b"original text",
        compressed=True,
        fragment_sizes=[8, 5],
        wire_frames=[(False, 4, b"abc"), (True, 0, b"de")],
    )
    message._actor = "breakpoints"
    message.text = "edited"
    shape = message_dict("c3", 1, message)
    assert shape["from"] == "server" and shape["verdict"] == "modified"
    assert (shape["size"], shape["wire_size"], shape["fragments"]) == (6, 5, 2)
    assert shape["preview"] == "edited" and shape["original_preview"] == "original text"


def test_verdicts() -> None:
    dropped = Message(True, Opcode.BINARY, b"x")
    dropped.drop()
    assert message_dict("c", 1, dropped)["verdict"] == "dropped"
    injected = Message(True, Opcode.TEXT, b"x", injected=True)
    assert message_dict("c", 1, injected)["verdict"] == "injected"


def test_long_text_and_binary_previews() -> None:
    long_text = Message(True, Opcode.TEXT, ("é" * 300).encode())
    shape = message_dict("c", 1, long_text)
    assert shape["preview"] == "é" * PREVIEW_CHARS and shape["truncated"] is True
    exact = Message(True, Opcode.TEXT, b"a" * PREVIEW_CHARS)
    assert message_dict("c", 1, exact)["truncated"] is False
    binary = Message(True, Opcode.BINARY, bytes(range(150)))
    shape = message_dict("c", 1, binary)
    assert shape["opcode"] == "binary"
    assert shape["preview"] == bytes(range(100)).hex() and shape["truncated"] is True
    assert preview(b"\x00\x01", False) == ("0001", False)


def test_decoded_summary() -> None:
    class Decoded:
        protocol, kind, summary = "socketio", "EVENT", 'socket.io EVENT "chat" ["hi"]'

    class DecodedMessage(Message):
        __slots__ = ()

        @property
        def decoded(self) -> Decoded:
            return Decoded()

    shape = message_dict("c", 1, DecodedMessage(True, Opcode.TEXT, b"x"))
    assert shape["decoded"] == {
        "protocol": "socketio",
        "kind": "EVENT",
        "summary": 'socket.io EVENT "chat" ["hi"]',
    }


def test_control_frames() -> None:
    close = FrameEvent(False, Opcode.CLOSE, serialize_close(4000, "bye"))
    shape = message_dict("c", 3, close)
    assert set(shape) == MSG_KEYS
    assert shape["opcode"] == "close" and shape["close"] == {"code": 4000, "reason": "bye"}
    assert shape["preview"] == "bye" and shape["from"] == "server"
    empty = message_dict("c", 4, FrameEvent(True, Opcode.CLOSE, b""))
    assert empty["close"] == {"code": None, "reason": ""}
    broken = message_dict("c", 5, FrameEvent(True, Opcode.CLOSE, b"\x03"))
    assert broken["close"] == {"code": None, "reason": ""}
    ping = FrameEvent(True, Opcode.PING, b"\xff\x00")
    ping._actor = "p"
    ping.payload = b"new"
    shape = message_dict("c", 6, ping)
    assert shape["opcode"] == "ping" and shape["verdict"] == "modified"
    assert shape["preview"] == "new" and shape["original_preview"] == "ff00"
    pong = message_dict("c", 7, FrameEvent(False, Opcode.PONG, b"\xff"))
    assert pong["preview"] == "ff" and pong["close"] is None


def test_opcode_names() -> None:
    names = [opcode_name(op) for op in (0, 1, 2, 8, 9, 10, 3)]
    assert names == ["continuation", "text", "binary", "close", "ping", "pong", "op0x3"]


# -- CONN --------------------------------------------------------------------------------------


def test_connecting_flow() -> None:
    shape = conn_dict(flow())
    assert set(shape) == CONN_KEYS
    assert shape == {
        "id": "c3",
        "kind": "websocket",
        "url": "wss://example.com/chat?room=1",
        "method": "GET",
        "status": None,
        "client": "127.0.0.1:50312",
        "state": "connecting",
        "subprotocol": None,
        "extensions": [],
        "counts": {"client": {"messages": 0, "bytes": 0}, "server": {"messages": 0, "bytes": 0}},
        "close": {"client": None, "server": None, "closed_by": None},
        "error": None,
        "started": 1796000000.12,
        "ended": None,
        "decoder": None,
    }


def test_open_closing_and_closed_flows() -> None:
    response = HandshakeResponse(101, "Switching Protocols", Headers())
    opened = flow(response=response, subprotocol="graphql-transport-ws")
    opened.extensions = ["permessage-deflate; client_max_window_bits"]
    shape = conn_dict(opened)
    assert shape["state"] == "open" and shape["status"] == 101
    assert shape["subprotocol"] == "graphql-transport-ws"
    assert shape["extensions"] == ["permessage-deflate; client_max_window_bits"]
    closing = flow(response=response, client_close=CloseInfo(1000, "", True))
    assert conn_dict(closing)["state"] == "closing"
    closed = flow(
        response=response,
        client_close=CloseInfo(4000, "bye", True),
        server_close=CloseInfo(None, "", False),
        closed_by="client",
        client_counts=Counters(messages=2, frames=3, bytes=40),
        server_counts=Counters(messages=1, frames=1, bytes=9),
        error="protocol error: x (1002)",
        ended=1796000001.5,
    )
    shape = conn_dict(closed)
    assert shape["state"] == "closed" and shape["ended"] == 1796000001.5
    assert shape["close"] == {
        "client": {"code": 4000, "reason": "bye"},
        "server": None,
        "closed_by": "client",
    }
    assert shape["counts"] == {
        "client": {"messages": 2, "bytes": 40},
        "server": {"messages": 1, "bytes": 9},
    }
    assert shape["error"] == "protocol error: x (1002)"


def test_live_fields_override() -> None:
    shape = conn_dict(flow(), state="closing", decoder="socketio")
    assert (shape["state"], shape["decoder"]) == ("closing", "socketio")
    with pytest.raises(TypeError, match="no CONN field 'colour'"):
        conn_dict(flow(), colour="red")


def test_ipv6_client_address() -> None:
    request = HandshakeRequest("ws", "::1", 8080, "/", Headers())
    shape = conn_dict(Flow("c1", ("::1", 5000), request))
    assert shape["client"] == "[::1]:5000" and shape["url"] == "ws://[::1]:8080/"


def test_plain_http_exchange() -> None:
    exchange = HttpExchange(
        conn="c9",
        started=10.0,
        client_address=("127.0.0.1", 4000),
        method="POST",
        url="http://example.com/api",
        http_version="HTTP/1.1",
        upstream=("example.com", 80),
        request_headers=[],
    )
    exchange.request_body.add(b"abc")
    shape = exchange_dict(exchange)
    assert set(shape) == CONN_KEYS
    assert (shape["kind"], shape["method"], shape["state"]) == ("http", "POST", "connecting")
    assert shape["counts"]["client"] == {"messages": 0, "bytes": 3}
    exchange.status = 200
    assert exchange_dict(exchange)["state"] == "open"
    exchange.ended = 11.0
    assert exchange_dict(exchange)["state"] == "closed"
