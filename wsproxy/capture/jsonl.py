"""The JSONL capture format: one JSON object per line, UTF-8, in the order things happened.

Every record has ``type``; records of a connection carry its ``conn`` id (the proxy's
connection number, as in the ``-v`` log) and two times: ``time``, ISO-8601 UTC with
microseconds, and ``ts``, the same instant as epoch seconds (a float, for arithmetic).

``wsproxy-capture`` (first line, once)::

    {"type": "wsproxy-capture", "version": 1, "time": ..., "ts": ..., "tool": "wsproxy 0.1.0",
     "filter": "EXPR" | null}   (--capture-filter: a filter expression or URL regex)

``handshake`` (a WebSocket opened; written before its first frame)::

    {"type": "handshake", "conn": "3", "time": ..., "ts": ...,
     "client": "127.0.0.1:50312", "upstream": "example.com:443", "url": "wss://example.com/chat",
     "request_headers": [["Host", "example.com"], ...],   # as sent upstream, order kept
     "status": 101, "reason": "Switching Protocols",
     "response_headers": [["Upgrade", "websocket"], ...],
     "subprotocol": "chat" | null, "extensions": ["permessage-deflate; ..."]}

``frame`` (one per frame relayed, changed, dropped or injected, control frames included; a
frame whose content is larger than ``PIECE`` bytes is recorded in several ``frame`` lines, see
``offset`` and ``more``)::

    {"type": "frame", "conn": "3", "time": ..., "ts": ...,
     "direction": "client" | "server",      # who sent it (injected: the direction it travels)
     "opcode": "TEXT" | "BINARY" | "CONT" | "CLOSE" | "PING" | "PONG",
     "message_opcode": "TEXT" | "BINARY" | ...,  # the message a CONT frame belongs to
     "fin": true, "rsv1": false, "rsv2": false, "rsv3": false,
     "length": 5,                           # payload bytes on the wire (compressed if it was)
     "text": "hello"  |  "b64": "AAH/",     # the content in the clear (decompressed): "text"
                                            # when the message is TEXT and the frame's bytes
                                            # are valid UTF-8 on their own, else base64
     "compressed": false,                   # the message was permessage-deflate compressed
     "verdict": "forwarded" | "modified" | "dropped" | "injected",
     "by": "plugin name",                   # modified/dropped: who ("proxy": the other side
                                            # was already closing)
     "original_text" | "original_b64": ..., # modified: the content before the change (on the
                                            # first frame of the message: the whole message)
     "offset": 262144, "more": true}        # only on a frame recorded in pieces, see below

A frame recorded in pieces (version 2): each line has every field of the frame (``length`` is
the whole frame's) and one piece of its content, at most ``PIECE`` bytes; ``offset`` is where
that piece starts in the frame's content (decompressed), and ``more`` is true on every line but
the frame's last. The pieces of one frame are consecutive among the frame lines of their
connection and direction (an injected message may come between, recognisable by its verdict),
and they follow as the frame streams through the proxy, so a frame stalled half-way is in the
file up to where it stalled. ``original_*`` is cut the same way, over the first lines of the
frame. A reader joins the pieces; a piece whose ``offset`` is not where the previous one ended
means records were lost (a ``lost`` record says so), and the frame cannot be rebuilt. A text
message's pieces are cut between characters, so each piece is ``text`` when the whole is.

``close`` (a WebSocket ended)::

    {"type": "close", "conn": "3", "time": ..., "ts": ..., "closed_by": "client" | "server" |
     "proxy" | null, "duration": 12.5,
     "client": {"code": 1000, "reason": "", "received_close": true},   # the close frame the
     "server": {"code": 1000, "reason": "", "received_close": true},   # side sent, if any
     "counts": {"client": {"messages": 4, "frames": 4, "bytes": 120}, "server": {...}},
     "error": "protocol error: ..." | null}

``http`` (a plain HTTP exchange, once it ended; only with ``--capture-http``, the default for
HAR captures; ``time``/``ts`` are when the request head was read)::

    {"type": "http", "conn": "c2", "time": ..., "ts": ...,
     "client": "127.0.0.1:50310", "upstream": "example.com:80",
     "method": "POST", "url": "http://example.com/api?x=1", "http_version": "HTTP/1.1",
     "request_headers": [["Host", "example.com"], ...],   # as sent upstream, order kept
     "request_body": {"size": 5000000, "kept": 1048576, "truncated": true, "b64": "..."},
     "status": 200 | null, "reason": "OK", "response_version": "HTTP/1.1",
     "response_headers": [["Content-Type", "text/html"], ...],  # as the upstream sent them
     "response_body": {"size": 12, "kept": 12, "truncated": false, "text": "<html></html>"},
     "timings": {"request_sent": 0.0004, "first_byte": 0.0031, "end": 0.0042},  # seconds
                                            # after ts; null: it did not happen
     "answered_by": "upstream" | "proxy" | null,   # proxy: an error status it answered itself
     "error": "upstream closed without answering" | null}

A body's content (transfer framing removed, content coding kept) is ``text`` when its kept bytes
are UTF-8, else ``b64``; at most ``model.BODY_KEEP`` (1 MiB) of it is kept, ``size`` is the
whole body's (the proxy streams bodies and never holds one whole). No ``text``/``b64`` when the
body is empty.

``lost`` (the writer fell behind and dropped records: readers see the gap)::

    {"type": "lost", "time": ..., "ts": ..., "count": 120, "total": 120}

``stopped`` (writing the capture failed, as on a full disk; the last line, when it fits)::

    {"type": "stopped", "time": ..., "ts": ..., "error": "ENOSPC: No space left on device"}

Readers ignore fields and record types they do not know; ``version`` changes only when a
field changes meaning (2: frames in pieces; this reader reads 1 and 2). A last line cut short
by a crash is skipped.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

from wsproxy.capture.jsonenc import Data, b64encode, dumps, encode
from wsproxy.capture.records import (
    Close,
    CloseSide,
    Connection,
    Frame,
    Header,
    Http,
    Lost,
    Record,
    Stopped,
    iso_time,
    opcode_from_name,
)
from wsproxy.model import BodyCapture, Flow, HttpExchange
from wsproxy.sansio.relay import RECORD_PIECE, utf8_boundary
from wsproxy.sansio.targets import host_port

__all__ = [
    "PIECE",
    "TYPE",
    "VERSION",
    "Data",
    "b64encode",
    "close_record",
    "decode",
    "decode_line",
    "dumps",
    "encode",
    "handshake_record",
    "header",
    "http",
    "http_line",
    "lost",
    "stopped",
]

VERSION = 2
TYPE = "wsproxy-capture"
# The most content (and the most original content) one frame line carries: the relay's piece
# size, so the lines of a streamed frame and of a frame recorded whole are cut alike.
PIECE = RECORD_PIECE


def header(tool: str, filter: str | None, ts: float | None = None) -> dict[str, Any]:
    ts = time.time() if ts is None else ts
    return {
        "type": TYPE,
        "version": VERSION,
        "time": iso_time(ts),
        "ts": ts,
        "tool": tool,
        "filter": filter,
    }


def _address(address: Any) -> str | None:
    try:
        host, port = address[0], address[1]
    except (TypeError, IndexError):
        return None
    return host_port(str(host), port)


def handshake_record(flow: Flow) -> dict[str, Any]:
    request, response = flow.request, flow.response
    return {
        "type": "handshake",
        "conn": flow.id,
        "time": iso_time(flow.started),
        "ts": flow.started,
        "client": _address(flow.client_address),
        "upstream": _address((request.host, request.port)),
        "url": request.url,
        "request_headers": [list(item) for item in request.headers.items()],
        "status": response.status if response is not None else None,
        "reason": response.reason if response is not None else None,
        "response_headers": (
            [list(item) for item in response.headers.items()] if response is not None else []
        ),
        "subprotocol": flow.subprotocol,
        "extensions": list(flow.extensions),
    }


def close_record(flow: Flow) -> dict[str, Any]:
    ended = flow.ended if flow.ended is not None else time.time()
    counts = {
        side: {"messages": c.messages, "frames": c.frames, "bytes": c.bytes}
        for side, c in (("client", flow.client_counts), ("server", flow.server_counts))
    }
    return {
        "type": "close",
        "conn": flow.id,
        "time": iso_time(ended),
        "ts": ended,
        "closed_by": flow.closed_by,
        "duration": round(ended - flow.started, 6),
        "client": {
            "code": flow.client_close.code,
            "reason": flow.client_close.reason,
            "received_close": flow.client_close.received_close,
        },
        "server": {
            "code": flow.server_close.code,
            "reason": flow.server_close.reason,
            "received_close": flow.server_close.received_close,
        },
        "counts": counts,
        "error": flow.error,
    }


def _body(body: BodyCapture) -> dict[str, Any]:
    out: dict[str, Any] = {"size": body.size, "kept": len(body.kept), "truncated": body.truncated}
    data = bytes(body.kept)
    if not data:
        return out
    cut = utf8_boundary(data, len(data)) if body.truncated else len(data)
    try:
        out["text"] = data[:cut].decode("utf-8")  # a truncated text ends between characters
        out["kept"] = cut
    except UnicodeDecodeError:
        out["b64"] = base64.b64encode(data).decode("ascii")
    return out


def http(exchange: HttpExchange) -> dict[str, Any]:
    """The ``http`` record of one exchange (encoded in the writer thread: it holds bodies)."""
    e = exchange
    started = e.started

    def after(ts: float | None) -> float | None:
        return None if ts is None else round(max(0.0, ts - started), 6)

    return {
        "type": "http",
        "conn": e.conn,
        "time": iso_time(started),
        "ts": started,
        "client": _address(e.client_address),
        "upstream": _address(e.upstream),
        "method": e.method,
        "url": e.url,
        "http_version": e.http_version,
        "request_headers": [list(item) for item in e.request_headers],
        "request_body": _body(e.request_body),
        "status": e.status,
        "reason": e.reason,
        "response_version": e.response_version,
        "response_headers": [list(item) for item in e.response_headers],
        "response_body": _body(e.response_body),
        "timings": {
            "request_sent": after(e.request_sent),
            "first_byte": after(e.first_byte),
            "end": after(e.ended),
        },
        "answered_by": e.answered_by,
        "error": e.error,
    }


def http_line(exchange: HttpExchange) -> Iterator[bytes]:
    yield encode(http(exchange))
    yield b"\n"


def stopped(error: str, ts: float | None = None) -> dict[str, Any]:
    """The last record of a capture whose writing failed (a full disk): nothing follows."""
    ts = time.time() if ts is None else ts
    return {"type": "stopped", "time": iso_time(ts), "ts": ts, "error": error}


def lost(count: int, total: int, ts: float | None = None) -> dict[str, Any]:
    ts = time.time() if ts is None else ts
    return {"type": "lost", "time": iso_time(ts), "ts": ts, "count": count, "total": total}


# -- reading ---------------------------------------------------------------------------------


def _bytes(obj: dict[str, Any], prefix: str) -> bytes | None:
    text = obj.get(prefix + "text")
    if text is not None:
        return str(text).encode("utf-8")
    b64 = obj.get(prefix + "b64")
    if b64 is not None:
        return base64.b64decode(b64)
    return None


def _side(obj: Any) -> CloseSide:
    if not isinstance(obj, dict):
        return CloseSide()
    return CloseSide(obj.get("code"), obj.get("reason") or "", bool(obj.get("received_close")))


def decode(obj: dict[str, Any]) -> Record | None:
    """A parsed line as a record; None for a type this reader does not know."""
    kind = obj.get("type")
    ts = float(obj.get("ts", 0.0))
    if kind == "frame":
        payload = _bytes(obj, "") or b""
        rsv = (0x40 if obj.get("rsv1") else 0) | (0x20 if obj.get("rsv2") else 0)
        rsv |= 0x10 if obj.get("rsv3") else 0
        opcode = opcode_from_name(obj["opcode"])
        return Frame(
            conn=str(obj["conn"]),
            time=ts,
            direction=obj["direction"],
            opcode=opcode,
            payload=payload,
            fin=bool(obj.get("fin", True)),
            rsv=rsv,
            length=int(obj.get("length", len(payload))),
            compressed=bool(obj.get("compressed", False)),
            message_opcode=opcode_from_name(obj.get("message_opcode", opcode)),
            verdict=obj.get("verdict", "forwarded"),
            by=obj.get("by"),
            original=_bytes(obj, "original_"),
            offset=int(obj.get("offset", 0)),
            more=bool(obj.get("more", False)),
        )
    if kind == "handshake":
        return Connection(
            conn=str(obj["conn"]),
            time=ts,
            url=obj.get("url", ""),
            client=obj.get("client"),
            upstream=obj.get("upstream"),
            request_headers=[(n, v) for n, v in obj.get("request_headers", [])],
            status=int(obj.get("status", 101)),
            reason=obj.get("reason", ""),
            response_headers=[(n, v) for n, v in obj.get("response_headers", [])],
            subprotocol=obj.get("subprotocol"),
            extensions=list(obj.get("extensions", [])),
        )
    if kind == "close":
        return Close(
            conn=str(obj["conn"]),
            time=ts,
            closed_by=obj.get("closed_by"),
            client=_side(obj.get("client")),
            server=_side(obj.get("server")),
            counts=counts if isinstance(counts := obj.get("counts"), dict) else {},
            error=obj.get("error"),
        )
    if kind == "lost":
        return Lost(ts, int(obj.get("count", 0)), int(obj.get("total", 0)))
    if kind == "stopped":
        return Stopped(ts, str(obj.get("error", "")))
    if kind == "http":
        return _decode_http(obj, ts)
    if kind == TYPE:
        return Header(int(obj.get("version", 0)), ts, obj.get("tool", ""), obj.get("filter"))
    return None


def _body_of(obj: Any) -> tuple[int, bytes | None]:
    if not isinstance(obj, dict):
        return 0, None
    return int(obj.get("size", 0)), _bytes(obj, "") or b""


def _decode_http(obj: dict[str, Any], ts: float) -> Http:
    timings = obj.get("timings")
    timings = timings if isinstance(timings, dict) else {}
    request_size, request_body = _body_of(obj.get("request_body"))
    response_size, response_body = _body_of(obj.get("response_body"))
    first_byte, end = timings.get("first_byte"), timings.get("end")
    status = obj.get("status")
    return Http(
        conn=str(obj["conn"]),
        time=ts,
        method=str(obj.get("method", "")),
        url=str(obj.get("url", "")),
        status=None if status is None else int(status),
        reason=str(obj.get("reason", "")),
        http_version=str(obj.get("http_version", "HTTP/1.1")),
        client=obj.get("client"),
        upstream=obj.get("upstream"),
        request_headers=[(n, v) for n, v in obj.get("request_headers", [])],
        response_headers=[(n, v) for n, v in obj.get("response_headers", [])],
        request_size=request_size,
        response_size=response_size,
        request_body=request_body,
        response_body=response_body,
        wait=None if first_byte is None else float(first_byte),
        duration=0.0 if end is None else float(end),
        answered_by=obj.get("answered_by"),
        error=obj.get("error"),
    )


def decode_line(line: str | bytes) -> Record | None:
    """One line as a record; None for a blank, cut-short or unknown line."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    try:
        return decode(obj)
    except (KeyError, TypeError, ValueError):
        return None
