"""HAR 1.2 files with WebSocket messages: written from a JSONL journal, read from any tool.

Writing follows what Chrome DevTools exports, so the file opens in DevTools and HAR viewers:
one entry per WebSocket (the upgrade GET and its 101), ``_resourceType: "websocket"``, and
``_webSocketMessages``: ``{"type": "send" | "receive", "time": epoch seconds (float),
"opcode": 1 | 2, "data": text, or base64 for binary}``, one per whole message ("send" is
client to server). Our additions, ignored by other tools, keep what a HAR cannot say:
``_verdict`` ("modified", "dropped", "injected"; absent when forwarded), ``_by`` and
``_original`` (the content before a change, encoded like ``data``) on messages, and
``_wsproxy_conn`` and ``_wsproxy_close`` (the JSONL close record) on entries. Control frames
are not listed (Chrome does not either); the JSONL journal has them.

Plain HTTP exchanges (``http`` records, ``--capture-http``) become entries of their own, made
by ``harhttp``, in start order with the WebSocket entries.

``journal_to_har`` streams: a first pass over the journal keeps each connection's handshake and
close records and the file offsets of its data frames (8 bytes a frame) and of its ``http``
records; a second pass writes each entry, reading its frames back by offset, so memory holds
one message (or one exchange) at a time, not the capture.

Reading (``read_har``) understands our files, Chrome's exports and mitmproxy's ``hardump``
(mitmproxy 11 writes the same ``_webSocketMessages`` as Chrome, with an ``http://`` URL for
the upgrade). A HAR is one JSON document; it is read as a stream of JSON events (ijson), so
memory does not grow with the file: a 1 GiB HAR is read one message at a time.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from array import array
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, urlsplit

import ijson

from wsproxy.capture import jsonl
from wsproxy.capture.messages import TEXT, Message, Reassembler
from wsproxy.capture.records import (
    Close,
    CloseSide,
    Connection,
    Frame,
    Http,
    Record,
    iso_time,
)
from wsproxy.exceptions import WsproxyError, os_error_text

CREATOR = {"name": "wsproxy", "version": "0.1.0"}


class CaptureFormatError(WsproxyError):
    """A capture file that cannot be read."""


def unreadable(path: Path, error: OSError) -> CaptureFormatError:
    """The error for a capture that cannot be opened or read, worded alike everywhere:
    ``x.jsonl: No such file or directory``, ``/tmp: Is a directory``."""
    return CaptureFormatError(f"{path}: {os_error_text(error)}")


# -- writing ---------------------------------------------------------------------------------


class _Conn:
    __slots__ = ("close", "handshake", "last", "offsets")

    def __init__(self) -> None:
        self.handshake: dict[str, Any] | None = None
        self.close: dict[str, Any] | None = None
        self.offsets = array("q")
        self.last = 0.0


def _scan(journal: BinaryIO) -> tuple[dict[str, _Conn], list[tuple[float, int]]]:
    """Each WebSocket's records, and the (start, file offset) of each ``http`` record."""
    conns: dict[str, _Conn] = {}
    exchanges: list[tuple[float, int]] = []
    offset = 0
    for line in journal:
        start = offset
        offset += len(line)
        if not line.endswith(b"\n"):
            break  # cut short by a crash
        try:
            obj = json.loads(line)
            kind, conn_id = obj.get("type"), obj.get("conn")
        except (ValueError, AttributeError):
            continue  # not a record (the readers skip it too)
        ts = _float(obj.get("ts"), 0.0)
        if kind == "http":
            exchanges.append((ts, start))
            continue
        if conn_id is None:
            continue
        conn = conns.get(str(conn_id))
        if conn is None:
            conn = conns[str(conn_id)] = _Conn()
        conn.last = max(conn.last, ts)
        if kind == "handshake":
            conn.handshake = obj
        elif kind == "close":
            conn.close = obj
        elif kind == "frame" and obj.get("opcode") in ("TEXT", "BINARY", "CONT"):
            conn.offsets.append(start)
    return conns, exchanges


def _data(content: bytes, opcode: int) -> str:
    if opcode == TEXT:
        try:
            return content.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return base64.b64encode(content).decode("ascii")


def har_message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "send" if message.direction == "client" else "receive",
        "time": message.time,
        "opcode": message.opcode,
        "data": _data(message.content, message.opcode),
    }
    if message.verdict != "forwarded":
        out["_verdict"] = message.verdict
        if message.by is not None:
            out["_by"] = message.by
        if message.original is not None:
            out["_original"] = _data(message.original, message.opcode)
    return out


def _headers(pairs: Any) -> list[dict[str, str]]:
    """``[[name, value], ...]`` as HAR headers; anything else in a damaged journal is left out."""
    if not isinstance(pairs, list):
        return []
    return [
        {"name": str(pair[0]), "value": str(pair[1])}
        for pair in pairs
        if isinstance(pair, list) and len(pair) == 2
    ]


def _float(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def har_entry(
    conn_id: str, handshake: dict[str, Any] | None, close: dict[str, Any] | None, last: float
) -> dict[str, Any]:
    """A HAR 1.2 entry for one WebSocket, without its messages."""
    hs = handshake or {"url": "", "ts": last, "request_headers": [], "response_headers": []}
    started = _float(hs.get("ts"), last)
    ended = _float(close.get("ts"), last) if close is not None else last
    url = str(hs.get("url", ""))
    status = hs.get("status") or 101
    entry: dict[str, Any] = {
        "startedDateTime": iso_time(started),
        "time": max(0.0, (ended - started) * 1000),
        "request": {
            "method": "GET",
            "url": url,
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": _headers(hs.get("request_headers", [])),
            "queryString": [
                {"name": n, "value": v} for n, v in parse_qsl(urlsplit(url).query, True)
            ],
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": {
            "status": status,
            "statusText": hs.get("reason") or "Switching Protocols",
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": _headers(hs.get("response_headers", [])),
            "content": {"size": 0, "mimeType": "x-unknown"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": 0,
        },
        "cache": {},
        "timings": {
            "blocked": -1,
            "dns": -1,
            "connect": -1,
            "ssl": -1,
            "send": 0,
            "wait": 0,
            "receive": 0,
        },
        "_resourceType": "websocket",
        "_wsproxy_conn": conn_id,
    }
    if hs.get("upstream"):
        entry["serverIPAddress"] = str(hs["upstream"]).rsplit(":", 1)[0].strip("[]")
    if close is not None:
        entry["_wsproxy_close"] = close
    return entry


def _write_entry(out: BinaryIO, journal: BinaryIO, conn_id: str, conn: _Conn) -> None:
    head = json.dumps(har_entry(conn_id, conn.handshake, conn.close, conn.last), ensure_ascii=False)
    out.write(head[:-1].encode("utf-8") + b', "_webSocketMessages": [')
    assembler = Reassembler()
    first = True
    for offset in conn.offsets:
        journal.seek(offset)
        record = jsonl.decode_line(journal.readline())
        if not isinstance(record, Frame):
            continue
        message = assembler.feed(record)
        if message is None:
            continue
        item = json.dumps(har_message(message), ensure_ascii=False).encode("utf-8")
        out.write(item if first else b",\n" + item)
        first = False
    out.write(b"]}")


def _write_http(out: BinaryIO, journal: BinaryIO, offset: int) -> None:
    from wsproxy.capture.harhttp import http_entry

    journal.seek(offset)
    out.write(json.dumps(http_entry(json.loads(journal.readline())), ensure_ascii=False).encode())


def _started(conn: _Conn) -> float:
    return _float((conn.handshake or {}).get("ts"), conn.last)


def journal_to_har(journal: Path | str, out: Path | str) -> int:
    """Write ``out`` (atomically) from a JSONL capture; returns the number of entries.

    Entries are in the order they started, WebSockets and plain HTTP exchanges together, as a
    browser's HAR is (an ``http`` record is written when its exchange ends).
    """
    journal, out = Path(journal), Path(out)
    with open(journal, "rb") as src:
        conns, exchanges = _scan(src)
        order: list[tuple[float, str, int]] = [(_started(c), i, -1) for i, c in conns.items()]
        order += [(ts, "", offset) for ts, offset in exchanges]
        order.sort(key=lambda item: item[0])  # stable: journal order among equal times
        fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
        try:
            with os.fdopen(fd, "wb") as dst:
                log_head = {"version": "1.2", "creator": CREATOR, "pages": []}
                dst.write(json.dumps({"log": log_head})[:-2].encode() + b', "entries": [\n')
                for index, (_, conn_id, offset) in enumerate(order):
                    if index:
                        dst.write(b",\n")
                    if offset >= 0:
                        _write_http(dst, src, offset)
                    else:
                        _write_entry(dst, src, conn_id, conns[conn_id])
                dst.write(b"\n]}}\n")
            os.replace(tmp, out)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return len(order)


# -- reading ---------------------------------------------------------------------------------


def _parse_time(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _ws_url(url: str) -> str:
    for http, ws in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(http):
            return ws + url[len(http) :]
    return url


def _content(data: Any, opcode: int) -> bytes:
    text = "" if data is None else str(data)
    if opcode == TEXT:
        return text.encode("utf-8")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return text.encode("utf-8")  # not base64 after all: keep what is there


def _pairs(headers: Any) -> list[tuple[str, str]]:
    if not isinstance(headers, list):
        return []
    return [(str(h.get("name", "")), str(h.get("value", ""))) for h in headers]


def _header(pairs: list[tuple[str, str]], name: str) -> str | None:
    return next((v for n, v in pairs if n.lower() == name.lower()), None)


def _is_websocket(entry: dict[str, Any]) -> bool:
    if "_webSocketMessages" in entry or entry.get("_resourceType") == "websocket":
        return True
    response = entry.get("response")
    return isinstance(response, dict) and response.get("status") == 101


# ijson's events: (prefix, event, value); a prefix names where the value is ("log.entries.item").
Event = tuple[str, str, Any]
_ENTRIES = "log.entries"
_ENTRY = "log.entries.item"
_MESSAGES = "log.entries.item._webSocketMessages"
_OPEN = ("start_map", "start_array")
_CLOSE = ("end_map", "end_array")
# Bodies of HTTP entries are not read back (show prints sizes): never held, however large.
_SKIP = (f"{_ENTRY}.response.content.text", f"{_ENTRY}.request.postData.text")
_SKIP_INSIDE = tuple(prefix + "." for prefix in _SKIP)
_BOM = b"\xef\xbb\xbf"


def _build(events: Iterator[Event], event: str, value: Any, skip: bool = False) -> Any:
    """The JSON value that starts with ``event``, built from ``events`` up to its end; with
    ``skip``, the bodies of HTTP entries (``_SKIP``) are left out."""
    if event not in _OPEN:
        return value
    builder = ijson.ObjectBuilder()
    builder.event(event, value)
    depth = 1
    for prefix, event, value in events:
        depth += 1 if event in _OPEN else -1 if event in _CLOSE else 0
        if skip and (
            prefix in _SKIP
            or prefix.startswith(_SKIP_INSIDE)
            or (event == "map_key" and f"{prefix}.{value}" in _SKIP)
        ):
            continue
        builder.event(event, value)
        if depth == 0:
            break
    return builder.value


def read_har(path: Path | str) -> Iterator[Record]:
    """The entries of a HAR file as records: for a WebSocket its connection, messages and
    close; an ``Http`` for any other entry.

    The file is read as a stream of JSON events (ijson), never whole: memory holds one entry's
    fields and one message at a time, whatever the file's size, when the messages come after
    the entry's request and response (as wsproxy, Chrome and mitmproxy write them; otherwise
    that entry's messages are held until its end). An entry that is not valid fails with its
    index, after the records before it went out.
    """
    path = Path(path)
    try:
        file = open(path, "rb")  # noqa: SIM115 (closed below, in the generator)
        if file.read(3) != _BOM:
            file.seek(0)
    except OSError as error:
        raise unreadable(path, error) from None
    with file:
        events = ijson.parse(file, use_float=True)
        try:
            yield from _walk(path, events)
        except ijson.JSONError as error:
            text = error.args[0] if error.args else ""
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            first = str(text).strip().splitlines()[0] if str(text).strip() else "invalid"
            raise CaptureFormatError(f"{path}: not a HAR file (not JSON: {first})") from None
        except OSError as error:
            raise unreadable(path, error) from None


def _walk(path: Path, events: Iterator[Event]) -> Iterator[Record]:
    first = next(events, None)
    if first is None or first[1] != "start_map":
        raise CaptureFormatError(f"{path}: not a HAR file (not a JSON object)")
    entries = False
    counter = _Counter()
    for prefix, event, _ in events:
        if prefix == _ENTRIES and event == "start_array":
            entries = True
            yield from _entries(path, events, counter)
    if not entries:
        raise CaptureFormatError(f"{path}: not a HAR file (no log.entries list)")


class _Counter:
    __slots__ = ("index", "websockets")

    def __init__(self) -> None:
        self.index = -1  # of the entry being read
        self.websockets = 0


def _entries(path: Path, events: Iterator[Event], counter: _Counter) -> Iterator[Record]:
    for prefix, event, value in events:
        if prefix == _ENTRIES and event == "end_array":
            return
        counter.index += 1
        if event != "start_map":
            _build(events, event, value)  # not an object: not an entry, skipped
            continue
        try:
            yield from _entry(events, counter)
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as error:
            raise CaptureFormatError(
                f"{path}: log.entries[{counter.index}] is not a valid WebSocket entry ({error})"
            ) from None


def _entry(events: Iterator[Event], counter: _Counter) -> Iterator[Record]:
    """One entry's records, its messages streamed as they are read (see ``read_har``)."""
    entry: dict[str, Any] = {}
    conn_id: str | None = None
    started = last = 0.0
    for prefix, event, key in events:
        if prefix == _ENTRY and event == "end_map":
            break
        _, event, value = next(events)
        if key != "_webSocketMessages" or event != "start_array":
            entry[key] = _build(events, event, value, skip=True)
            continue
        if "request" not in entry or "response" not in entry:
            entry[key] = _build(events, event, value)  # messages first: held to the end
            continue
        entry[key] = []
        counter.websockets += 1
        conn_id = str(entry.get("_wsproxy_conn", counter.websockets))
        connection = _connection(entry, conn_id)
        yield connection
        started = last = connection.time
        for prefix, event, value in events:
            if prefix == _MESSAGES and event == "end_array":
                break
            frame = _frame(_build(events, event, value), conn_id, last)
            last = max(last, frame.time)
            yield frame
    if not _is_websocket(entry):
        yield _http(entry)
        return
    if conn_id is None:  # no messages, or before the request: the records come now
        counter.websockets += 1
        conn_id = str(entry.get("_wsproxy_conn", counter.websockets))
        records: list[Record] = [_connection(entry, conn_id)]  # whole: a bad one fails first
        started = last = records[0].time
        for item in entry.get("_webSocketMessages") or []:
            frame = _frame(item, conn_id, last)
            last = max(last, frame.time)
            records.append(frame)
        yield from records
    yield _close(entry, conn_id, started, last)


def _connection(entry: dict[str, Any], conn_id: str) -> Connection:
    request, response = entry.get("request", {}), entry.get("response", {})
    request_headers = _pairs(request.get("headers"))
    response_headers = _pairs(response.get("headers"))
    extensions = _header(response_headers, "Sec-WebSocket-Extensions")
    return Connection(
        conn=conn_id,
        time=_parse_time(str(entry.get("startedDateTime", ""))),
        url=_ws_url(str(request.get("url", ""))),
        upstream=entry.get("serverIPAddress"),
        request_headers=request_headers,
        status=int(response.get("status", 101) or 101),
        reason=str(response.get("statusText", "")),
        response_headers=response_headers,
        subprotocol=_header(response_headers, "Sec-WebSocket-Protocol"),
        extensions=[extensions] if extensions else [],
    )


def _frame(item: dict[str, Any], conn_id: str, last: float) -> Frame:
    opcode = int(item.get("opcode", TEXT))
    original = item.get("_original")
    return Frame(
        conn=conn_id,
        time=float(item.get("time", last)),
        direction="client" if item.get("type") == "send" else "server",
        opcode=opcode,
        payload=_content(item.get("data"), opcode),
        verdict=str(item.get("_verdict", "forwarded")),
        by=item.get("_by"),
        original=None if original is None else _content(original, opcode),
    )


def _close(entry: dict[str, Any], conn_id: str, started: float, last: float) -> Close:
    close = entry.get("_wsproxy_close")
    if isinstance(close, dict):
        record = jsonl.decode(close)
        if isinstance(record, Close):
            return record
    duration = float(entry.get("time", 0) or 0) / 1000
    return Close(conn_id, max(last, started + duration), client=CloseSide(), server=CloseSide())


def _size(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _http(entry: dict[str, Any]) -> Http:
    """A HAR entry that is not a WebSocket (ours, a browser's) as an ``Http`` record."""
    request, response = entry.get("request") or {}, entry.get("response") or {}
    content = response.get("content") or {}
    timings = entry.get("timings") or {}
    wait = timings.get("wait")
    conn = entry.get("_wsproxy_conn", entry.get("connection"))
    status = response.get("status")
    return Http(
        conn=None if conn is None else str(conn),
        time=_parse_time(str(entry.get("startedDateTime", ""))),
        method=str(request.get("method", "")),
        url=str(request.get("url", "")),
        status=int(status) if isinstance(status, int | float) and status > 0 else None,
        reason=str(response.get("statusText", "")),
        http_version=str(request.get("httpVersion", "")),
        upstream=entry.get("serverIPAddress"),
        request_headers=_pairs(request.get("headers")),
        response_headers=_pairs(response.get("headers")),
        request_size=_size((request.get("postData") or {}).get("_size", request.get("bodySize"))),
        response_size=_size(content.get("size")),
        wait=float(wait) / 1000 if isinstance(wait, int | float) and wait >= 0 else None,
        duration=max(0.0, _float(entry.get("time"), 0.0) / 1000),
        answered_by=entry.get("_wsproxy_answered_by"),
        error=entry.get("_wsproxy_error") or response.get("_error"),
    )


def main(argv: list[str]) -> int:
    """``wsproxy har JOURNAL [-o OUT.har]``: a JSONL capture (or a crashed run's journal)
    as a HAR file."""
    from wsproxy.capture.commands import convert_journal
    from wsproxy.capture.reader import detect_format

    def not_har(journal: Path) -> None:
        if detect_format(journal) == "har":
            raise CaptureFormatError(
                f"{journal}: already a HAR file; 'wsproxy har' turns a JSONL capture "
                "(such as FILE.har.jsonl) into HAR"
            )

    return convert_journal(
        argv,
        name="har",
        suffix=".har",
        description="Turn a JSONL capture (e.g. FILE.har.jsonl left by a crashed run) into HAR.",
        convert=journal_to_har,
        unit="entries",
        check=not_har,
    )
