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
import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

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
    file_opcode_name,
    iso_time,
    opcode_from_name,
)
from wsproxy.model import BodyCapture, HttpExchange
from wsproxy.sansio.relay import RECORD_PIECE, FrameRecord, utf8_boundary
from wsproxy.sansio.targets import host_port

VERSION = 2
TYPE = "wsproxy-capture"
# The most content (and the most original content) one frame line carries: the relay's piece
# size, so the lines of a streamed frame and of a frame recorded whole are cut alike.
PIECE = RECORD_PIECE

Data = bytes | memoryview

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# The writer's two hot spots, measured (bench/capture_bench.py): base64 of large payloads
# (CPython's binascii does about 300 MB/s, pybase64's SIMD code over 10 GB/s) and JSON of
# small records (orjson about 5x faster than json). pybase64 is a dependency, orjson an option
# (``wsproxy[fast]``); each is used when installed, and the lines are the same JSON either way.
_b64encode: Callable[[Data], bytes] = base64.b64encode
_orjson: Any = None
try:
    import pybase64

    _b64encode = pybase64.b64encode
except ImportError:  # pragma: no cover - depends on what is installed
    pass
with contextlib.suppress(ImportError):  # pragma: no cover - depends on what is installed
    import orjson as _orjson


def dumps(obj: dict[str, Any]) -> str:
    """One record as one line (no newline): compact, UTF-8 text kept as it is."""
    return _dumps(obj)


def encode(obj: dict[str, Any]) -> bytes:
    """``dumps(obj)`` as UTF-8 bytes, with orjson when it is installed."""
    if _orjson is not None:
        try:
            line: bytes = _orjson.dumps(obj)
            return line
        except TypeError:  # orjson.JSONEncodeError: a lone surrogate, an int over 64 bits
            pass
    return _dumps(obj).encode("utf-8")


def b64encode(data: Data) -> bytes:
    """Base64 of ``data`` (bytes or a memoryview, not copied first), with pybase64 when it is
    installed."""
    return _b64encode(data)


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


def _content(
    prefix: str,
    data: Data,
    text: bool,
    out: dict[str, Any],
    raw: list[tuple[str, Data]] | None = None,
) -> None:
    if text:
        try:
            out[prefix + "text"] = str(data, "utf-8")
            return
        except UnicodeDecodeError:
            pass
    if raw is not None:
        raw.append((prefix + "b64", data))  # encoded by frame_line, outside the JSON encoder
    else:
        out[prefix + "b64"] = b64encode(data).decode("ascii")


_NAMES = {opcode: file_opcode_name(opcode) for opcode in range(16)}


def frame(
    conn: str,
    ts: float,
    record: FrameRecord,
    *,
    payload: Data | None = None,
    original: Data | None = None,
    offset: int = 0,
    more: bool = False,
    raw: list[tuple[str, Data]] | None = None,
) -> dict[str, Any]:
    """One ``frame`` line for ``record``: by default all of it; for one line of a frame in
    pieces, the piece of content (and of original content) it carries, and where."""
    r = record
    text = r.message_opcode == 0x1 and r.opcode in (0x0, 0x1)
    out: dict[str, Any] = {
        "type": "frame",
        "conn": conn,
        "time": iso_time(ts),
        "ts": ts,
        "direction": r.side.value,
        "opcode": _NAMES.get(r.opcode) or file_opcode_name(r.opcode),
        "message_opcode": _NAMES.get(r.message_opcode) or file_opcode_name(r.message_opcode),
        "fin": r.fin,
        "rsv1": bool(r.rsv & 0x40),
        "rsv2": bool(r.rsv & 0x20),
        "rsv3": bool(r.rsv & 0x10),
        "length": r.length,
    }
    _content("", r.payload if payload is None else payload, text, out, raw)
    out["compressed"] = r.compressed
    out["verdict"] = r.verdict
    if r.by is not None:
        out["by"] = r.by
    if original is None and payload is None:
        original = r.original
    if original is not None:
        _content("original_", original, text, out, raw)
    if offset or more:
        out["offset"] = offset
        out["more"] = more
    return out


def _cuts(data: Data, text: bool) -> Iterator[tuple[int, int]]:
    """Where ``data`` is cut into line pieces of at most PIECE bytes (between characters)."""
    start = 0
    while start < len(data):
        end = min(start + PIECE, len(data))
        if text and end < len(data):
            end = utf8_boundary(data, end)
            if end <= start:
                end = start + PIECE
        yield start, end
        start = end


def frame_line(conn: str, ts: float, record: FrameRecord) -> Iterator[bytes]:
    """``record`` as the pieces of its ``frame`` line(s), newlines included, to write one by one.

    Base64 payloads go last, written straight from ``base64.b64encode``: base64 needs no JSON
    escaping, so a 1 MiB binary frame is not copied through the JSON encoder and its UTF-8
    encoding (three copies fewer); the line is still ordinary JSON. Content over ``PIECE``
    bytes is cut into several lines (see the module doc), each encoded from a memoryview of the
    payload when it is written: the record is never copied whole, and a writer holds one line.
    """
    r = record
    original = r.original or b""
    if len(r.payload) <= PIECE and len(original) <= PIECE:
        yield from _line(conn, ts, r, r.payload, r.original, r.offset, r.more)
        return
    text = r.message_opcode == 0x1 and r.opcode in (0x0, 0x1)
    payload_view, original_view = memoryview(r.payload), memoryview(original)
    payload_cuts = list(_cuts(payload_view, text))
    original_cuts = list(_cuts(original_view, text)) if r.original is not None else []
    lines = max(len(payload_cuts), len(original_cuts))
    position = 0
    for index in range(lines):
        start, end = payload_cuts[index] if index < len(payload_cuts) else (position, position)
        position = end
        piece = payload_view[start:end]
        was = None
        if index < len(original_cuts):
            was = original_view[slice(*original_cuts[index])]
        more = r.more or index < lines - 1
        yield from _line(conn, ts, r, piece, was, r.offset + start, more)


def frame_bytes(conn: str, ts: float, record: FrameRecord) -> bytes:
    """``frame_line`` joined: the write-ahead's path for small frames, one call per record
    instead of a generator's steps (a small frame's line is encoded on the event loop)."""
    r = record
    if len(r.payload) > PIECE or (r.original is not None and len(r.original) > PIECE):
        return b"".join(frame_line(conn, ts, r))
    parts = _line_parts(conn, ts, r, r.payload, r.original, r.offset, r.more)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def frames_bytes(conn: str, ts: float, records: Sequence[FrameRecord]) -> bytes:
    """The lines of a run of frames of one connection recorded at one instant (one read's
    frames), joined: what ``frame_bytes`` makes of each, byte for byte, at a fraction of the
    cost per frame. The time is formatted once for the run and put into each template once
    (``_run_heads``), so a plain frame's line is its head, its length, its content and a tail.
    """
    time_part = _scalar(iso_time(ts))
    ts_part = _scalar(ts)
    heads: dict[tuple[Any, ...], tuple[bytes, bytes, bytes]] = {}
    parts: list[bytes] = []
    append, extend = parts.append, parts.extend
    dumps = _orjson.dumps if _orjson is not None else None
    for r in records:
        payload = r.payload
        if r.original is not None or r.offset or r.more or len(payload) > PIECE:
            append(frame_bytes(conn, ts, r))
            continue
        opcode, message_opcode = r.opcode, r.message_opcode
        key = (r.side._value_, opcode, message_opcode, r.fin, r.rsv, r.compressed, r.verdict, r.by)
        head = heads.get(key)
        if head is None:
            head = heads[key] = _run_head(conn, r, key, time_part, ts_part)
        if message_opcode == 0x1 and opcode < 0x2:  # text: CONT (0) or TEXT (1)
            try:
                text = str(payload, "utf-8")
            except UnicodeDecodeError:
                pass
            else:
                # Decoded UTF-8 holds no lone surrogate: orjson takes every such string.
                content = dumps(text) if dumps is not None else _scalar(text)
                extend((head[0], b"%d" % r.length, b',"text":', content, head[1]))
                continue
        extend((head[0], b"%d" % r.length, head[2], b64encode(payload), b'"}\n'))
    return b"".join(parts)


def _run_head(
    conn: str, r: FrameRecord, key: tuple[Any, ...], time_part: bytes, ts_part: bytes
) -> tuple[bytes, bytes, bytes]:
    """For ``frames_bytes``: a template's line up to the length with this run's time in it,
    the tail after a text content, and what comes between the length and a base64 content."""
    template = _TEMPLATES.get((conn, *key))
    if template is None:
        if len(_TEMPLATES) >= _TEMPLATES_MAX:
            _TEMPLATES.clear()
        template = _TEMPLATES[(conn, *key)] = _template(conn, r)
    head, before_ts, before_length, tail = template
    return head + time_part + before_ts + ts_part + before_length, tail, tail[:-2] + b',"b64":"'


def _line(
    conn: str,
    ts: float,
    record: FrameRecord,
    payload: Data,
    original: Data | None,
    offset: int,
    more: bool,
) -> Iterator[bytes]:
    yield from _line_parts(conn, ts, record, payload, original, offset, more)


def _line_parts(
    conn: str,
    ts: float,
    record: FrameRecord,
    payload: Data,
    original: Data | None,
    offset: int,
    more: bool,
) -> list[bytes]:
    if original is None and not offset and not more:
        return [_plain_line(conn, ts, record, payload)]
    raw: list[tuple[str, Data]] = []
    obj = frame(
        conn, ts, record, payload=payload, original=original, offset=offset, more=more, raw=raw
    )
    head = encode(obj)
    if not raw:
        return [head + b"\n"]
    parts = [head[:-1]]
    for key, data in raw:
        parts += (b',"', key.encode("ascii"), b'":"', b64encode(data), b'"')
    parts.append(b"}\n")
    return parts


def _scalar(value: str | float) -> bytes:
    """One JSON value, by the encoder ``encode`` uses, so it reads as it would in a record."""
    if _orjson is not None:
        try:
            encoded: bytes = _orjson.dumps(value)
            return encoded
        except TypeError:  # a lone surrogate: json escapes it
            pass
    return _dumps(value).encode("utf-8")


# The constant parts of frame lines, by the fields that make them (see _plain_line). Bounded:
# the connection id is part of the key, and a long run has many.
_TEMPLATES: dict[tuple[Any, ...], tuple[bytes, bytes, bytes, bytes]] = {}
_TEMPLATES_MAX = 1024


def _plain_line(conn: str, ts: float, r: FrameRecord, payload: Data) -> bytes:
    """The line of a frame recorded whole with no original content (nearly every frame), as
    ``frame`` and ``encode`` make it, byte for byte, without building the dictionary: all but
    the time, the length and the content is the same for every frame of a connection's
    direction and kind, so it is encoded once (``_TEMPLATES``) and the line put together."""
    # The side as its value (a str): an Enum member hashes in Python, a str in C.
    side, by = r.side._value_, r.by
    key = (conn, side, r.opcode, r.message_opcode, r.fin, r.rsv, r.compressed, r.verdict, by)
    template = _TEMPLATES.get(key)
    if template is None:
        if len(_TEMPLATES) >= _TEMPLATES_MAX:
            _TEMPLATES.clear()
        template = _TEMPLATES[key] = _template(conn, r)
    head, before_ts, before_length, tail = template
    parts = [head, _scalar(iso_time(ts)), before_ts, _scalar(ts), before_length, b"%d" % r.length]
    if r.message_opcode == 0x1 and r.opcode in (0x0, 0x1):
        try:
            text = str(payload, "utf-8")
        except UnicodeDecodeError:
            pass
        else:
            parts += (b',"text":', _scalar(text), tail)
            return b"".join(parts)
    # Base64 goes last, as _line_parts puts it.
    parts += (tail[:-2], b',"b64":"', b64encode(payload), b'"}\n')
    return b"".join(parts)


def _template(conn: str, r: FrameRecord) -> tuple[bytes, bytes, bytes, bytes]:
    """``frame``'s line for ``r`` cut around its variable parts: up to the time, between the
    time and ``ts``, between ``ts`` and the length, and after the content (newline included)."""
    fields = frame(conn, 0.0, r, payload=b"")
    fields.pop("text", None)
    fields.pop("b64", None)
    keys = list(fields)
    cut = keys.index("length") + 1
    stand_in = "\x00"
    before = {key: fields[key] for key in keys[:cut]}
    before["time"] = before["ts"] = before["length"] = stand_in
    # The three stand-ins are the last three in the line: only the connection id comes before.
    head, before_ts, before_length, end = encode(before).rsplit(_scalar(stand_in), 3)
    assert end == b"}"
    after = encode({key: fields[key] for key in keys[cut:]})
    return head, before_ts, before_length, b"," + after[1:] + b"\n"


def _address(address: Any) -> str | None:
    try:
        host, port = address[0], address[1]
    except (TypeError, IndexError):
        return None
    return host_port(str(host), port)


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
