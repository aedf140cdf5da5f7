"""The web UI's JSON shapes of a connection (CONN) and a message (MSG), built in one place.

The shapes are the contract between the UI server and the page (``/work/notes/ui-api.md``):
the breakpoints (a paused message's MSG), the live state and the REST endpoints all build
them here, so the page sees one shape whoever sent it. Pure: plain dicts from the proxy's
plain data, no I/O.
"""

from __future__ import annotations

from typing import Any

from wsproxy.model import Flow, FrameEvent, HttpExchange, Message
from wsproxy.sansio.errors import ProtocolError
from wsproxy.sansio.frames import Opcode, parse_close
from wsproxy.sansio.targets import host_port

__all__ = [
    "PREVIEW_CHARS",
    "close_of",
    "conn_dict",
    "exchange_dict",
    "message_dict",
    "msg_dict",
    "opcode_name",
    "preview",
]

PREVIEW_CHARS = 200  # of a text payload, or hex digits of a binary one (100 bytes)

_OPCODES: dict[int, str] = {
    Opcode.CONTINUATION: "continuation",
    Opcode.TEXT: "text",
    Opcode.BINARY: "binary",
    Opcode.CLOSE: "close",
    Opcode.PING: "ping",
    Opcode.PONG: "pong",
}


def opcode_name(opcode: int) -> str:
    """``text``, ``binary``, ``ping`` ... (``op0x3`` for a reserved one, never on our wire)."""
    return _OPCODES.get(opcode, f"op{opcode:#x}")


def preview(payload: bytes, text: bool) -> tuple[str, bool]:
    """The first ``PREVIEW_CHARS`` of a text payload (hex digits of a binary one), and
    whether that is less than all of it."""
    if text:
        # Decode no more than can be shown: 4 bytes per character at most in UTF-8.
        head = payload[: PREVIEW_CHARS * 4].decode("utf-8", "replace")
        shown = head[:PREVIEW_CHARS]
        return shown, len(shown) < len(head) or len(payload) > PREVIEW_CHARS * 4
    half = PREVIEW_CHARS // 2
    return payload[:half].hex(), len(payload) > half


def _decoded(message: Message) -> dict[str, Any] | None:
    """``{"protocol", "kind", "summary"}`` of a decoded message (``message.decoded`` once
    the decoders are wired in), else None."""
    value = getattr(message, "decoded", None)
    if value is None:
        return None
    return {
        "protocol": str(getattr(value, "protocol", "")),
        "kind": str(getattr(value, "kind", "")),
        "summary": str(getattr(value, "summary", "")),
    }


def _verdict(item: Message | FrameEvent) -> str:
    if item.dropped:
        return "dropped"
    if isinstance(item, Message) and item.injected:
        return "injected"
    return "modified" if item.modified else "forwarded"


def message_dict(flow_id: str, seq: int, message: Message | FrameEvent) -> dict[str, Any]:
    """The MSG of a whole message, or of a control frame (a ``FrameEvent``).

    ``flow_id`` is the connection it belongs to: the MSG itself does not carry it (the event
    around it does, ``{"type": "msg", "conn": flow_id, "msg": MSG}``), it is here so every
    caller names the message the same way, and for the log of a payload that cannot be read.
    """
    del flow_id  # see the docstring: part of the contract's signature, not of the shape
    if isinstance(message, FrameEvent):
        return _frame_dict(seq, message)
    content = message.content
    text = message.is_text
    shown, truncated = preview(content, text)
    original = None
    if message.modified:
        original = preview(message.original_content, message.original_opcode == Opcode.TEXT)[0]
    if message.compressed and message.wire_frames:
        wire_size = sum(len(wire) for _, _, wire in message.wire_frames)
    else:
        wire_size = len(message.original_content)
    return {
        "seq": seq,
        "from": message.direction,
        "ts": message.timestamp,
        "opcode": opcode_name(message.opcode),
        "size": len(content),
        "wire_size": wire_size,
        "fragments": max(1, len(message.wire_frames)),
        "verdict": _verdict(message),
        "preview": shown,
        "truncated": truncated,
        "decoded": _decoded(message),
        "original_preview": original,
        "close": None,
    }


def _frame_dict(seq: int, frame: FrameEvent) -> dict[str, Any]:
    """A control frame's MSG (pings, pongs, close frames: shown as text when UTF-8)."""
    payload = frame.payload
    close = None
    if frame.opcode == Opcode.CLOSE:
        try:
            code, reason = parse_close(payload)
        except ProtocolError:  # the relay answered it with 1002: show what was sent
            code, reason = None, ""
        close = {"code": code, "reason": reason}
        payload = reason.encode("utf-8")
    shown, truncated = _control_preview(payload)
    original = _control_preview(frame.original_payload)[0] if frame.modified else None
    return {
        "seq": seq,
        "from": frame.direction,
        "ts": frame.timestamp,
        "opcode": opcode_name(frame.opcode),
        "size": len(frame.payload),
        "wire_size": len(frame.wire),
        "fragments": 1,
        "verdict": _verdict(frame),
        "preview": shown,
        "truncated": truncated,
        "decoded": None,
        "original_preview": original,
        "close": close,
    }


def _control_preview(payload: bytes) -> tuple[str, bool]:
    """A ping's or pong's payload as text when it is UTF-8, else in hex."""
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return preview(payload, False)
    return preview(payload, True)


def _state(flow: Flow) -> str:
    if flow.ended is not None:
        return "closed"
    if flow.response is None:
        return "connecting"
    if flow.client_close.received_close or flow.server_close.received_close:
        return "closing"
    return "open"


def _close(code: int | None, reason: str, received: bool) -> dict[str, Any] | None:
    return {"code": code, "reason": reason} if received else None


def conn_dict(flow: Flow, **live: Any) -> dict[str, Any]:
    """The CONN of a WebSocket flow.

    The flow's counts and close codes are filled in when it ends; a caller that follows it
    live (the UI server's state) passes what it knows now as keywords that override the
    fields of the same name: ``state="closing"``, ``counts={...}``, ``decoder="socketio"``.
    """
    counts = {
        "client": {"messages": flow.client_counts.messages, "bytes": flow.client_counts.bytes},
        "server": {"messages": flow.server_counts.messages, "bytes": flow.server_counts.bytes},
    }
    client, server = flow.client_close, flow.server_close
    shape: dict[str, Any] = {
        "id": flow.id,
        "kind": "websocket",
        "url": flow.request.url,
        "method": "GET",
        "status": None if flow.response is None else flow.response.status,
        "client": host_port(*flow.client_address),
        "state": _state(flow),
        "subprotocol": flow.subprotocol,
        "extensions": list(flow.extensions),
        "counts": counts,
        "close": {
            "client": _close(client.code, client.reason, client.received_close),
            "server": _close(server.code, server.reason, server.received_close),
            "closed_by": flow.closed_by,
        },
        "error": flow.error,
        "started": flow.started,
        "ended": flow.ended,
        "decoder": None,
    }
    unknown = set(live) - set(shape)
    if unknown:
        raise TypeError(f"conn_dict: no CONN field {sorted(unknown)[0]!r}")
    shape.update(live)
    return shape


def exchange_dict(exchange: HttpExchange) -> dict[str, Any]:
    """The CONN of a plain HTTP exchange (``kind`` http: no messages, no close frames)."""
    client = exchange.client_address
    address = host_port(str(client[0]), int(client[1])) if client else ""
    ended = exchange.ended is not None
    return {
        "id": exchange.conn,
        "kind": "http",
        "url": exchange.url,
        "method": exchange.method,
        "status": exchange.status,
        "client": address,
        "state": "closed" if ended else ("open" if exchange.status is not None else "connecting"),
        "subprotocol": None,
        "extensions": [],
        "counts": {
            "client": {"messages": 0, "bytes": exchange.request_body.size},
            "server": {"messages": 0, "bytes": exchange.response_body.size},
        },
        "close": {"client": None, "server": None, "closed_by": None},
        "error": exchange.error,
        "started": exchange.started,
        "ended": exchange.ended,
        "decoder": None,
    }


def close_of(payload: bytes) -> dict[str, Any] | None:
    """A close frame's code and reason (RFC 6455 5.5.1); None for an empty close body (an
    invalid one, answered 1002 by the relay, shows what was sent)."""
    if not payload:
        return None
    try:
        code, reason = parse_close(payload)
    except ProtocolError:
        return {
            "code": int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None,
            "reason": payload[2:].decode("utf-8", "replace"),
        }
    return {"code": code, "reason": reason}


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
    """A MSG from plain fields (the live state's records): ``content`` may be only the start
    of the message, ``size`` is all of it."""
    text = opcode == Opcode.TEXT
    shown, truncated = preview(content, text)
    return {
        "seq": seq,
        "from": "client" if from_client else "server",
        "ts": ts,
        "opcode": opcode_name(opcode),
        "size": size,
        "wire_size": wire_size,
        "fragments": fragments,
        "verdict": verdict,
        "preview": shown,
        "truncated": truncated or size > len(content),
        "decoded": decoded,
        "original_preview": None if original is None else preview(original, text)[0],
        "close": close_of(content) if opcode == Opcode.CLOSE else None,
    }
