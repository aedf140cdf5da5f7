"""Frame records as JSONL ``frame`` lines (the format is ``wsproxy.capture.jsonl``'s): the
general encoder, and the fast one for the usual small frame (a cached line template per
connection and frame kind, filled with the length and the content)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from wsproxy.capture import jsonenc
from wsproxy.capture.jsonenc import Data, b64encode, encode, json_dumps
from wsproxy.capture.jsonl import PIECE
from wsproxy.capture.records import file_opcode_name, iso_time
from wsproxy.sansio.relay import FrameRecord, utf8_boundary


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
    dumps = jsonenc.ORJSON.dumps if jsonenc.ORJSON is not None else None
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
    if jsonenc.ORJSON is not None:
        try:
            encoded: bytes = jsonenc.ORJSON.dumps(value)
            return encoded
        except TypeError:  # a lone surrogate: json escapes it
            pass
    return json_dumps(value).encode("utf-8")


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
