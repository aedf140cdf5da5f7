"""mitmproxy flow files (``-w FILE.mitm``): what ``mitmproxy -r``, ``mitmweb -r`` and
``mitmdump -r`` open, written and read through mitmproxy's own ``mitmproxy.io``.

The format is mitmproxy's (a stream of tnetstrings, one ``get_state()`` per flow, versioned and
migrated by mitmproxy itself), so we do not write it by hand: this module needs mitmproxy
installed (``pip install 'wsproxy[mitmproxy]'``) and uses only its public classes
(``mitmproxy.io.FlowWriter``/``FlowReader``, ``http.HTTPFlow``, ``websocket.WebSocketData``,
``connection.Client``/``Server``, ``flow.Error``). Without it, ``-w x.mitm`` is refused at start
(``require_mitmproxy``) and reading a flow file is a ``CaptureFormatError``.

One WebSocket is one ``HTTPFlow``, as mitmproxy records it (mitmproxy 6 and later): the upgrade
GET (scheme, host, port and path from the handshake URL, headers as sent upstream), the 101
response, and ``flow.websocket``: whole messages (fragments and pieces joined, see
``messages.Reassembler``; control frames are not messages, mitmproxy does not list them either),
``closed_by_client``, ``close_code``, ``close_reason`` and ``timestamp_end``. A dropped message
has mitmproxy's ``dropped`` flag, an injected one ``injected``; what mitmproxy cannot say goes
into ``flow.metadata["wsproxy"]`` (shown by mitmproxy's flow details, ignored otherwise): our
connection id, the JSONL close record, and for each changed message its verdict, ``by`` and
``original`` content. mitmproxy's ``closed_by_client`` has no value for "the proxy closed it":
such a flow says the server side did (the client's peer, from its point of view), and the close
record in the metadata says who.

Writing: like HAR, the records go to a JSONL journal beside the file (``FILE.mitm.jsonl``, see
``writer``), and ``FlowFile.update`` turns it into flows: it reads the journal from where it
stopped last time (memory: the offsets of the frames of open connections, 8 bytes a frame), and
appends each WebSocket's flow once its close record is in, then, at the end of the run, those
still open. A flow file is a plain concatenation of flows, so appending needs no rewrite, and a
crash leaves every closed WebSocket in the file plus a journal that
``wsproxy mitm FILE.mitm.jsonl`` turns into a complete one. A flow is built whole (mitmproxy's
format holds a WebSocket's messages in one record), so writing one holds its messages in memory.
Each flow goes to the file in one write; a reader that opens the file while one is being
appended sees it cut short and fails (as with a file ``mitmdump -w`` is writing): read again.

Reading (``read_flows``): any mitmproxy flow file, ours or mitmproxy's own (``mitmdump -w``);
each WebSocket flow becomes records: ``Connection``, one ``Frame`` per message (``fin`` set,
as HAR messages are read), ``Close``. Other flows (plain HTTP, TCP, DNS) are skipped.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

from wsproxy.capture import jsonl
from wsproxy.capture.files import create_private
from wsproxy.capture.har import CaptureFormatError, unreadable
from wsproxy.capture.messages import Message, Reassembler
from wsproxy.capture.records import Close, CloseSide, Connection, Frame, Record
from wsproxy.exceptions import ConfigError
from wsproxy.sansio.targets import host_port

if TYPE_CHECKING:
    from mitmproxy import http

INSTALL = "pip install 'wsproxy[mitmproxy]'"
SUFFIX = ".mitm"


def mitmproxy_missing() -> str | None:
    """Why mitmproxy's flow-file API cannot be imported, or None when it can."""
    try:
        import mitmproxy.connection
        import mitmproxy.flow
        import mitmproxy.http
        import mitmproxy.io
        import mitmproxy.websocket  # noqa: F401
    except ImportError as error:  # not installed, or hidden, or a stand-in (mitmcompat)
        return str(error)
    return None


def require_mitmproxy(what: str) -> None:
    """ConfigError unless mitmproxy can be imported, so that ``-w x.mitm`` fails at start
    (``what``: ``"-w x.mitm"``), not when the first WebSocket closes."""
    if mitmproxy_missing() is not None:
        raise ConfigError(f"{what} needs mitmproxy: {INSTALL}")


def is_flow_file(start: bytes) -> bool:
    """Whether a file starting with ``start`` is a mitmproxy flow file: a tnetstring, which
    begins with its length in ASCII digits and a colon (``1234:``); JSONL and HAR begin with
    ``{``."""
    digits = len(start) - len(start.lstrip(b"0123456789"))
    return 0 < digits <= 12 and start[digits : digits + 1] == b":"


# -- records -> flows ------------------------------------------------------------------------


def _address(text: str | None) -> tuple[str, int] | None:
    """``"127.0.0.1:50312"`` or ``"[::1]:443"`` (the JSONL's addresses) as a tuple."""
    if not text:
        return None
    host, _, port = text.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _close_fields(close: Close | None) -> tuple[bool | None, int | None, str | None]:
    """mitmproxy's ``closed_by_client``, ``close_code`` and ``close_reason`` for ``close``."""
    if close is None:
        return None, None, None  # still open when the journal ended (mitmproxy: "active")
    closer, other = (
        (close.client, close.server)
        if close.closed_by == "client"
        else (close.server, close.client)
    )
    side = closer if closer.received_close else other if other.received_close else None
    if side is None:
        return close.closed_by == "client", 1006, None  # no close frame: abnormal (RFC 6455 7.4)
    return close.closed_by == "client", side.code if side.code is not None else 1005, side.reason


def _verdicts(messages: list[Message]) -> dict[str, dict[str, Any]]:
    extras: dict[str, dict[str, Any]] = {}
    for index, message in enumerate(messages):
        if message.verdict == "forwarded":
            continue
        extra: dict[str, Any] = {"verdict": message.verdict}
        if message.by is not None:
            extra["by"] = message.by
        if message.original is not None:
            extra["original"] = message.original
        extras[str(index)] = extra
    return extras


def build_flow(
    conn_id: str,
    handshake: Connection,
    messages: list[Message],
    close: Close | None,
    close_record: dict[str, Any] | None = None,
    last: float | None = None,
) -> http.HTTPFlow:
    """One WebSocket as a mitmproxy ``HTTPFlow`` (see the module doc)."""
    from mitmproxy import connection, flow, http, websocket

    url = urlsplit(handshake.url)
    secure = url.scheme in ("wss", "https")
    host = url.hostname or ""
    port = url.port or (443 if secure else 80)
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    started = handshake.time
    ended = close.time if close is not None else last
    client_address = _address(handshake.client) or ("", 0)
    upstream = _address(handshake.upstream) or (host, port)
    state = connection.ConnectionState.CLOSED
    client = connection.Client(
        peername=client_address,
        sockname=("", 0),
        state=state,
        timestamp_start=started,
        timestamp_end=ended,
        tls=secure,
        sni=host if secure else None,
    )
    server = connection.Server(
        address=upstream,
        state=state,
        timestamp_start=started,
        timestamp_tcp_setup=started,
        timestamp_end=ended,
        tls=secure,
        sni=host if secure else None,
    )
    result = http.HTTPFlow(client, server)
    result.timestamp_created = started
    result.request = http.Request(
        host=host,
        port=port,
        method=b"GET",
        scheme=b"https" if secure else b"http",
        authority=b"",
        path=_raw(path),
        http_version=b"HTTP/1.1",
        headers=tuple((_raw(n), _raw(v)) for n, v in handshake.request_headers),
        content=b"",
        trailers=None,
        timestamp_start=started,
        timestamp_end=started,
    )
    result.response = http.Response(
        http_version=b"HTTP/1.1",
        status_code=handshake.status,
        reason=_raw(handshake.reason or "Switching Protocols"),
        headers=tuple((_raw(n), _raw(v)) for n, v in handshake.response_headers),
        content=b"",
        trailers=None,
        timestamp_start=started,
        timestamp_end=started,
    )
    closed_by_client, code, reason = _close_fields(close)
    result.websocket = websocket.WebSocketData(
        messages=[
            websocket.WebSocketMessage(
                m.opcode,
                m.direction == "client",
                m.content,
                m.time,
                dropped=m.verdict == "dropped",
                injected=m.verdict == "injected",
            )
            for m in messages
        ],
        closed_by_client=closed_by_client,
        close_code=code,
        close_reason=reason,
        timestamp_end=ended,
    )
    if close is not None and close.error:
        result.error = flow.Error(close.error, close.time)
    extra: dict[str, Any] = {"conn": conn_id}
    if close_record is not None:
        extra["close"] = close_record
    verdicts = _verdicts(messages)
    if verdicts:
        extra["messages"] = verdicts
    result.metadata["wsproxy"] = extra
    return result


# -- the journal -> the flow file ------------------------------------------------------------


class _Conn:
    __slots__ = ("close", "handshake", "last", "offsets")

    def __init__(self) -> None:
        self.handshake: dict[str, Any] | None = None
        self.close: dict[str, Any] | None = None
        self.offsets = array("q")  # where its data frame lines start in the journal
        self.last = 0.0


class FlowFile:
    """Keeps a flow file up to date from its JSONL journal (see the module doc): ``update``
    appends the flows of the WebSockets closed since the last call; ``update(final=True)``
    also those still open, then closes the file."""

    def __init__(self, path: Path | str, journal: Path | str) -> None:
        require_mitmproxy(f"-w {path}")
        self.path, self.journal = Path(path), Path(journal)
        self._file: BinaryIO | None = create_private(self.path)  # 0600, like every capture
        self._scanned = 0  # journal bytes read so far (whole lines only)
        self._conns: dict[str, _Conn] = {}  # not written yet
        self.flows = 0

    def update(self, final: bool = False) -> int:
        """Append what is ready; returns the number of flows written."""
        if self._file is None:
            return 0
        written = 0
        with open(self.journal, "rb") as journal:
            self._scan(journal)
            for conn_id in list(self._conns):
                conn = self._conns[conn_id]
                if conn.close is None and not final:
                    continue
                del self._conns[conn_id]
                if conn.handshake is None:
                    continue  # no handshake, no request to show (never written by wsproxy)
                self._write(self._flow(journal, conn_id, conn))
                written += 1
        if final:
            self._file.close()
            self._file = None
        return written

    def _scan(self, journal: BinaryIO) -> None:
        journal.seek(self._scanned)
        offset = self._scanned
        for line in journal:
            if not line.endswith(b"\n"):
                break  # being written (or cut short by a crash): read again next time
            start, offset = offset, offset + len(line)
            try:
                obj = json.loads(line)
                kind, conn_id = obj.get("type"), obj.get("conn")
            except (ValueError, AttributeError):
                continue  # not a record: the readers skip it too
            if conn_id is None:
                continue
            conn = self._conns.get(str(conn_id))
            if conn is None:
                conn = self._conns[str(conn_id)] = _Conn()
            with contextlib.suppress(TypeError, ValueError):
                conn.last = max(conn.last, float(obj.get("ts", 0.0)))
            if kind == "handshake":
                conn.handshake = obj
            elif kind == "close":
                conn.close = obj
            elif kind == "frame" and obj.get("opcode") in ("TEXT", "BINARY", "CONT"):
                conn.offsets.append(start)
        self._scanned = offset

    def _flow(self, journal: BinaryIO, conn_id: str, conn: _Conn) -> http.HTTPFlow:
        assert conn.handshake is not None
        handshake = jsonl.decode(conn.handshake)
        close = jsonl.decode(conn.close) if conn.close is not None else None
        assert isinstance(handshake, Connection)
        assert close is None or isinstance(close, Close)
        assembler = Reassembler()
        messages: list[Message] = []
        for offset in conn.offsets:
            journal.seek(offset)
            record = jsonl.decode_line(journal.readline())
            if isinstance(record, Frame):
                message = assembler.feed(record)
                if message is not None:
                    messages.append(message)
        return build_flow(conn_id, handshake, messages, close, conn.close, conn.last)

    def _write(self, flow: http.HTTPFlow) -> None:
        from mitmproxy.io import FlowWriter

        assert self._file is not None
        buffer = io.BytesIO()
        writer: Any = FlowWriter  # its __init__ has no annotations (mypy --strict would refuse)
        writer(buffer).add(flow)
        self._file.write(buffer.getbuffer())  # one write: a crash leaves whole flows
        self._file.flush()
        self.flows += 1


def journal_to_flows(journal: Path | str, out: Path | str) -> int:
    """Write the flow file ``out`` (atomically) from a JSONL capture; returns the number of
    flows."""
    journal, out = Path(journal), Path(out)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        flows = FlowFile(tmp, journal)
        count = flows.update(final=True)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return count


# -- reading ---------------------------------------------------------------------------------


def _ws_url(request: http.Request) -> str:
    url = request.url
    for plain, ws in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(plain):
            return ws + url[len(plain) :]
    return url


def _format(address: Any) -> str | None:
    try:
        host, port = str(address[0]), int(address[1])
    except (TypeError, IndexError, ValueError):
        return None
    if not host:
        return None
    return host_port(host, port)


def _pairs(headers: http.Headers) -> list[tuple[str, str]]:
    """Headers in order, decoded as mitmproxy decodes them (UTF-8, surrogateescape)."""
    return [(_text(name), _text(value)) for name, value in headers.fields]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def flow_records(flow: http.HTTPFlow, default_id: str) -> Iterator[Record]:
    """One WebSocket flow as records: ``Connection``, its messages, ``Close``."""
    ws = flow.websocket
    assert ws is not None
    extra = flow.metadata.get("wsproxy")
    extra = extra if isinstance(extra, dict) else {}
    conn_id = str(extra.get("conn", default_id))
    request, response = flow.request, flow.response
    response_headers = _pairs(response.headers) if response is not None else []
    started = request.timestamp_start
    lower = {name.lower(): value for name, value in response_headers}
    extensions = lower.get("sec-websocket-extensions")
    yield Connection(
        conn=conn_id,
        time=started,
        url=_ws_url(request),
        client=_format(flow.client_conn.peername),
        upstream=_format(flow.server_conn.address),
        request_headers=_pairs(request.headers),
        status=response.status_code if response is not None else 101,
        reason=response.reason if response is not None else "",
        response_headers=response_headers,
        subprotocol=lower.get("sec-websocket-protocol"),
        extensions=[extensions] if extensions else [],
    )
    verdicts = extra.get("messages")
    verdicts = verdicts if isinstance(verdicts, dict) else {}
    last = started
    for index, message in enumerate(ws.messages):
        last = max(last, message.timestamp)
        known = verdicts.get(str(index))
        known = known if isinstance(known, dict) else {}
        verdict = "dropped" if message.dropped else "injected" if message.injected else "forwarded"
        original = known.get("original")
        yield Frame(
            conn=conn_id,
            time=message.timestamp,
            direction="client" if message.from_client else "server",
            opcode=int(message.type),
            payload=message.content,
            verdict=str(known.get("verdict", verdict)),
            by=known.get("by"),
            original=original if isinstance(original, bytes) else None,
        )
    yield _close(flow, conn_id, extra.get("close"), last)


def _close(flow: http.HTTPFlow, conn_id: str, record: Any, last: float) -> Close:
    if isinstance(record, dict):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            close = jsonl.decode(record)
            if isinstance(close, Close):
                return close
    ws = flow.websocket
    assert ws is not None
    ended = ws.timestamp_end or last
    error = flow.error.msg if flow.error is not None else None
    if ws.closed_by_client is None:
        return Close(conn_id, ended, error=error)
    side = CloseSide(ws.close_code, ws.close_reason or "", received_close=True)
    closer = "client" if ws.closed_by_client else "server"
    if closer == "client":
        return Close(conn_id, ended, closer, client=side, error=error)
    return Close(conn_id, ended, closer, server=side, error=error)


def read_flows(path: Path | str) -> Iterator[Record]:
    """The WebSocket flows of a mitmproxy flow file as records, one flow at a time."""
    path = Path(path)
    missing = mitmproxy_missing()
    if missing is not None:
        raise CaptureFormatError(
            f"{path}: reading a mitmproxy flow file needs mitmproxy: {INSTALL}"
        )
    from mitmproxy import exceptions, http
    from mitmproxy.io import FlowReader

    try:
        file = open(path, "rb")  # noqa: SIM115 (closed below, in the generator)
    except OSError as error:
        raise unreadable(path, error) from None
    with file:
        count = 0
        try:
            for flow in FlowReader(file).stream():
                if not isinstance(flow, http.HTTPFlow) or flow.websocket is None:
                    continue
                count += 1
                yield from flow_records(flow, str(count))
        except exceptions.FlowReadException as error:
            raise CaptureFormatError(
                f"{path}: not a readable mitmproxy flow file ({error})"
            ) from None
        except OSError as error:
            raise unreadable(path, error) from None


# -- wsproxy mitm ----------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """``wsproxy mitm JOURNAL [-o OUT.mitm]``: a JSONL capture (or a crashed run's journal) as a
    mitmproxy flow file."""
    from wsproxy.capture.commands import convert_journal

    return convert_journal(
        argv,
        name="mitm",
        suffix=SUFFIX,
        description="Turn a JSONL capture (e.g. FILE.mitm.jsonl left by a crashed run) into a "
        "mitmproxy flow file (mitmproxy -r, mitmweb -r, mitmdump -r).",
        convert=journal_to_flows,
        unit="WebSocket(s)",
        check=lambda _journal: require_mitmproxy("writing a mitmproxy flow file"),
    )
