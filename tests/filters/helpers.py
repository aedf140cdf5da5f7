"""Subjects for the filter tests: a flow and its messages as plain values."""

from __future__ import annotations

from wsproxy.decoders.base import Decoded
from wsproxy.filters import FlowInfo, MessageInfo, Subject, compile_filter

FLOW = FlowInfo(
    url="wss://chat.example.com:443/socket.io/?EIO=4&transport=websocket",
    host="chat.example.com",
    request_headers=(
        ("Host", "chat.example.com"),
        ("Origin", "https://chat.example.com"),
        ("Sec-WebSocket-Protocol", "graphql-transport-ws"),
    ),
    response_headers=(("Sec-WebSocket-Protocol", "graphql-transport-ws"),),
)
OTHER = FlowInfo(url="ws://127.0.0.1:9000/echo", host="127.0.0.1")


def text(payload: str, *, client: bool = True, decoded: Decoded | None = None) -> MessageInfo:
    return MessageInfo(client, 1, payload.encode(), decode=lambda: decoded)


def binary(payload: bytes, *, client: bool = True, decoded: Decoded | None = None) -> MessageInfo:
    return MessageInfo(client, 2, payload, decode=lambda: decoded)


def matches(expression: str, message: MessageInfo | None = None, flow: FlowInfo = FLOW) -> bool:
    return compile_filter(expression).matches(Subject(flow, message))


def evaluate(
    expression: str, message: MessageInfo | None = None, flow: FlowInfo = FLOW
) -> bool | None:
    return compile_filter(expression).evaluate(Subject(flow, message))
