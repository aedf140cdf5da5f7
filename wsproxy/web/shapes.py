"""The JSON shapes the web UI's server and page share (``/work/notes/ui-api.md``): MSG, CONN.

One place builds them, so the push channel, the REST answers and the breakpoints' pauses say
the same thing the same way. Pure: plain values in, dicts out.
"""

from __future__ import annotations

from typing import Any

from wsproxy.model import Flow, Message
from wsproxy.sansio.frames import Opcode

__all__ = [
    "OPCODE_NAMES",
    "PREVIEW_CHARS",
    "close_of",
    "conn_dict",
    "message_dict",
    "msg_dict",
    "preview",
]

PREVIEW_CHARS = 200  # characters of a message shown in lists (binary: 100 bytes in hex)

OPCODE_NAMES: dict[int, str] = {
    Opcode.CONTINUATION: "continuation",
    Opcode.TEXT: "text",
    Opcode.BINARY: "binary",
    Opcode.CLOSE: "close",
    Opcode.PING: "ping",
    Opcode.PONG: "pong",
}


def preview(data: bytes, text: bool, size: int | None = None) -> tuple[str, bool]:
    """The first PREVIEW_CHARS characters of ``data`` (hex for binary), and whether that is
    less than the whole (``size``: the whole content's size when ``data`` is only its start)."""
    whole = len(data) if size is None else size
    if text:
        head = data[: PREVIEW_CHARS * 4].decode("utf-8", "replace")
        shown = head[:PREVIEW_CHARS]
        return shown, len(shown.encode("utf-8", "replace")) < whole or len(head) > PREVIEW_CHARS
    count = PREVIEW_CHARS // 2
    return data[:count].hex(), whole > count


def close_of(payload: bytes) -> dict[str, Any] | None:
    """A close frame's code and reason (RFC 6455 5.5.1); None for an empty close body."""
    if len(payload) < 2:
        return None
    code = int.from_bytes(payload[:2], "big")
    return {"code": code, "reason": payload[2:].decode("utf-8", "replace")}


def msg_dict(
    *,
    seq: int,
    from_client: bool,
    ts: float,
    opcode: int,
    content: bytes,
    size: int,
    wire_size: int,
    fragments: int,
    verdict: str,
    decoded: dict[str, Any] | None = None,
    original: bytes | None = None,
) -> dict[str, Any]:
    """A MSG: ``content`` may be only the start of the message (``size`` is all of it)."""
    text = opcode == Opcode.TEXT
    shown, truncated = preview(content, text, size)
    return {
        "seq": seq,
        "from": "client" if from_client else "server",
        "ts": ts,
        "opcode": OPCODE_NAMES.get(opcode, str(opcode)),
        "size": size,
        "wire_size": wire_size,
        "fragments": fragments,
        "verdict": verdict,
        "preview": shown,
        "truncated": truncated,
        "decoded": decoded,
        "original_preview": None if original is None else preview(original, text)[0],
        "close": close_of(content) if opcode == Opcode.CLOSE else None,
    }


def _verdict(message: Message) -> str:
    if message.injected:
        return "injected"
    if message.dropped:
        return "dropped"
    return "modified" if message.modified else "forwarded"


def message_dict(flow_id: str, seq: int, message: Message) -> dict[str, Any]:
    """A plugin's ``Message`` as a MSG (``flow_id`` names its connection: kept for the
    breakpoints' callers, the MSG itself does not repeat it)."""
    del flow_id
    modified = message.modified and not message.injected
    return msg_dict(
        seq=seq,
        from_client=message.from_client,
        ts=message.timestamp,
        opcode=message.opcode,
        content=message.content,
        size=len(message.content),
        wire_size=sum(message.fragment_sizes),
        fragments=len(message.fragment_sizes),
        verdict=_verdict(message),
        original=message.original_content if modified else None,
    )


def _side_close(info: Any) -> dict[str, Any] | None:
    if not info.received_close:
        return None
    return {"code": info.code, "reason": info.reason}


def conn_dict(flow: Flow) -> dict[str, Any]:
    """A proxied WebSocket's ``Flow`` as a CONN (counts as the flow has them)."""
    from wsproxy.sansio.targets import host_port

    host, port = flow.client_address[0], flow.client_address[1]
    state = "closed" if flow.ended is not None else "open" if flow.response else "connecting"
    return {
        "id": flow.id,
        "kind": "websocket",
        "url": flow.request.url,
        "method": "GET",
        "status": None if flow.response is None else flow.response.status,
        "client": host_port(str(host), int(port)),
        "state": state,
        "subprotocol": flow.subprotocol,
        "extensions": list(flow.extensions),
        "counts": {
            "client": {"messages": flow.client_counts.messages, "bytes": flow.client_counts.bytes},
            "server": {"messages": flow.server_counts.messages, "bytes": flow.server_counts.bytes},
        },
        "close": {
            "client": _side_close(flow.client_close),
            "server": _side_close(flow.server_close),
            "closed_by": flow.closed_by,
        },
        "error": flow.error,
        "started": flow.started,
        "ended": flow.ended,
        "decoder": None,
    }
