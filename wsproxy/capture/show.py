"""``wsproxy show FILE [FILE ...]``: captures as readable lines, in the style of ``-v``'s log.

::

    10:36:48.966665 [3] client -> server TEXT F len=5 'hello'
    10:36:48.967001 [3] server -> client TEXT Fz len=7 'HELLO' (modified by upper, was 'hello')

Flags after the opcode: ``F`` final frame, ``1`` RSV1 set, ``z`` compressed message. Times are
local. The file is streamed (see ``reader``), so memory stays flat whatever its size.

A frame recorded in pieces (a large one) is shown by its first piece, marked
``[from byte 0, more follows]``; with ``--full`` every piece is printed as it is read, each with
where it starts, so a whole 100 MiB frame goes by without being held. ``--filter EXPR`` takes a
filter expression (``wsproxy.filters``): a connection by its recorded handshake, each frame by
its message (a frame in pieces by its first piece). ``--grep`` looks at each
piece on its own (a match cut in two by a piece boundary is not found) and prints the pieces
that match.

Several files (``wsproxy show capture.w*.jsonl``) are merged into one stream by time
(``merge``); a connection id two files share is shown as ``ID@N`` for the file at place N,
and every option works on the merged stream.

``--decode`` shows each message decoded (``wsproxy.decoders``), as ``-v`` does: the decoder
is chosen from the connection's URL and subprotocol in its open record, else by sniffing;
the capture itself keeps the raw bytes.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TextIO

from wsproxy import logformat
from wsproxy.capture.har import CaptureFormatError
from wsproxy.capture.merge import MergedCaptures
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
)
from wsproxy.decoders.base import Hints
from wsproxy.decoders.connection import StreamDecoding
from wsproxy.filtering import RecordView, Selection, UrlView, hints_of
from wsproxy.filters import Filter, FilterError, compile_filter


def parse_when(text: str) -> float:
    """Epoch seconds, or an ISO-8601 time (local time when it has no offset)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (ISO-8601 or epoch)") from None


def parse_regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as error:
        raise argparse.ArgumentTypeError(f"bad regex {text!r}: {error}") from None


def parse_filter(text: str) -> Filter:
    try:
        return compile_filter(text)
    except FilterError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def clock(ts: float, date: bool = False) -> str:
    try:
        when = datetime.fromtimestamp(ts)
    except (OverflowError, OSError, ValueError):  # a time no clock shows: say it as it is
        return f"@{ts}"
    return when.strftime("%Y-%m-%d %H:%M:%S.%f" if date else "%H:%M:%S.%f")


def frame_line(frame: Frame, full: bool = False, summary: str | None = None) -> str:
    """A frame's line; ``summary`` (a decoded message's) in place of its preview."""
    width = 0 if full else logformat.PREVIEW_WIDTH
    kind = logformat.payload_kind(frame.opcode, frame.message_opcode)
    shown = (
        logformat.preview(frame.payload, kind, width)
        if summary is None
        else logformat.decoded_preview(summary, width)
    )
    line = logformat.frame_line(
        from_client=frame.direction == "client",
        opcode=frame.opcode,
        flags=logformat.frame_flags(fin=frame.fin, rsv=frame.rsv, compressed=frame.compressed),
        length=frame.length,
        shown=shown,
    )
    line = f"{clock(frame.time)} [{frame.conn}] {line}"
    if frame.more or frame.offset:
        more = ", more follows" if frame.more else ""
        line += f" [from byte {frame.offset}{more}]"
    if frame.verdict == "modified":
        original = frame.original
        was = "" if original is None else f", was {logformat.preview(original, kind, width)}"
        line += f" (modified by {frame.by or '?'}{was})"
    elif frame.verdict == "dropped":
        line += f" (dropped by {frame.by or '?'})"
    elif frame.verdict == "injected":
        line += " (injected)"
    return line


def _side(name: str, side: CloseSide) -> str:
    if not side.received_close:
        return f"{name} no close frame"
    code = "(no code)" if side.code is None else str(side.code)
    return f"{name} close {code}" + (f" {side.reason!r}" if side.reason else "")


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def http_line(record: Http) -> str:
    """``10:36:48.966665 [c2] GET http://host/app.js 200 5.1 KiB 3.2 ms``: one exchange."""
    status = "-" if record.status is None else str(record.status)
    if record.answered_by == "proxy":
        status += " (answered by the proxy)"
    line = (
        f"{clock(record.time)} [{record.conn or '-'}] {record.method} {record.url} {status} "
        f"{_size(record.response_size)} {record.duration * 1000:.1f} ms"
    )
    if record.error:
        line += f"; error: {record.error}"
    return line


def record_line(record: Record, full: bool = False) -> str:
    if isinstance(record, Frame):
        return frame_line(record, full)
    if isinstance(record, Http):
        return http_line(record)
    if isinstance(record, Connection):
        extra = [f"client {record.client}"] if record.client else []
        if record.subprotocol:
            extra.append(f"subprotocol {record.subprotocol}")
        extra += [f"extensions {', '.join(record.extensions)}"] if record.extensions else []
        more = f" ({'; '.join(extra)})" if extra else ""
        return f"{clock(record.time, True)} [{record.conn}] WebSocket open {record.url}{more}"
    if isinstance(record, Close):
        counts = record.counts
        details = counts or record.closed_by or record.client.received_close
        if not (details or record.server.received_close):  # a HAR from another tool
            return f"{clock(record.time)} [{record.conn}] WebSocket ended"
        summary = ", ".join(
            [_side("client", record.client), _side("server", record.server)]
            + ([f"closed by {record.closed_by}"] if record.closed_by else [])
        )
        if counts:
            c, s = counts.get("client", {}), counts.get("server", {})
            summary += f"; {c.get('messages', 0)}/{s.get('messages', 0)} messages"
        if record.error:
            summary += f"; error: {record.error}"
        return f"{clock(record.time)} [{record.conn}] WebSocket closed: {summary}"
    if isinstance(record, Lost):
        return (
            f"{clock(record.time)} !! {record.count} frame record(s) lost here "
            f"({record.total} in all): the writer could not keep up"
        )
    if isinstance(record, Stopped):
        return f"{clock(record.time)} !! capture stopped here: {record.error}"
    return f"{clock(record.time, True)} capture (version {record.version}, {record.tool})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsproxy show",
        description="Print a capture (.jsonl, .har or .mitm) as readable lines.",
    )
    add = parser.add_argument
    add(
        "files",
        nargs="+",
        metavar="FILE",
        help="a capture: wsproxy .jsonl, a HAR (wsproxy, Chrome, mitmproxy) or a .mitm flow "
        "file; several are merged by time (an id two files share is shown as ID@N, N the "
        "file's place in the list)",
    )
    add(
        "--conn",
        action="append",
        default=[],
        metavar="ID",
        help="only this connection (as shown: c2, w1-c2, c2@2)",
    )
    add("--direction", choices=("client", "server"), help="only frames this side sent")
    add(
        "--grep",
        type=parse_regex,
        metavar="REGEX",
        help="only frames whose text payload matches",
    )
    add(
        "--filter",
        type=parse_filter,
        metavar="EXPR",
        help="only what this filter expression matches (README: 'Filter expressions'): "
        "connections by their handshake, frames by their message",
    )
    add("--since", type=parse_when, metavar="TIME", help="from this time (ISO-8601 or epoch)")
    add("--until", type=parse_when, metavar="TIME", help="up to this time")
    add("-f", "--follow", action="store_true", help="keep reading a file being written")
    add("--full", action="store_true", help="whole payloads instead of previews")
    add(
        "--decode",
        action="store_true",
        help="each message decoded (Socket.IO, GraphQL, JSON-RPC, JSON...) in place of its "
        "preview, as -v shows it",
    )
    return parser


def show(argv: Sequence[str], out: TextIO | None = None) -> int:
    """Exit status: 0, 1 when a file cannot be read (the others are still shown, see
    ``merge``) or a ``--conn`` is not in any, 2 for bad flags (argparse's)."""
    out = sys.stdout if out is None else out
    args = build_parser().parse_args(argv)
    captures = MergedCaptures(args.files, follow=args.follow, on_error=_warn)
    grep: re.Pattern[str] | None = args.grep
    conns = set(args.conn)
    seen: dict[str, None] = {}  # every connection id, in file order
    continuing: set[tuple[str, str, bool]] = set()  # frames in pieces, their first one seen
    chosen = _Chosen(args.filter)
    decoding: dict[str, StreamDecoding] | None = {} if args.decode else None
    try:
        for record in captures:
            if isinstance(record, Header):
                continue
            conn = getattr(record, "conn", None)
            if conn is not None:
                seen.setdefault(conn)
            if isinstance(record, Connection):
                chosen.open(record)
            if decoding is not None and isinstance(record, Connection):
                decoding[record.conn] = StreamDecoding(_hints(record))
            if not _in_range(record, args, conns):
                continue
            if not isinstance(record, Frame):
                if grep is None and args.direction is None and chosen.shows(record):
                    print(record_line(record, args.full), file=out)
                continue
            summary = None if decoding is None else _decoded(decoding, record)
            if not _frame_shown(record, args, continuing, chosen):
                if summary is not None and record.offset:  # its frame's line came earlier
                    print(f"{clock(record.time)} [{record.conn}] message: {summary}", file=out)
                continue
            print(frame_line(record, args.full, summary), file=out, flush=args.follow)
    except CaptureFormatError as error:
        print(f"wsproxy show: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 0
    if captures.failed:  # said; a --conn may have been in the file that failed
        return 1
    return 0 if _all_found(args, seen) else 1


def _warn(error: CaptureFormatError) -> None:
    print(f"wsproxy show: {error}", file=sys.stderr, flush=True)


def _all_found(args: argparse.Namespace, seen: dict[str, None]) -> bool:
    """Whether every ``--conn`` was in the captures; a line on stderr naming those missing."""
    missing = [conn for conn in args.conn if conn not in seen]
    if missing:
        files: list[str] = args.files
        if len(files) == 1:
            problem = f"{files[0]}: {no_connection(missing, list(seen))}"
        else:
            problem = no_connection(missing, list(seen), "these captures")
        print(f"wsproxy show: {problem}", file=sys.stderr)
    return not missing


def _hints(record: Connection) -> Hints:
    """A decoder's hints from an open record: the subprotocol and the URL's path and query."""
    _scheme, _, rest = record.url.partition("://")
    slash = rest.find("/")
    return Hints(subprotocol=record.subprotocol or None, path=rest[slash:] if slash >= 0 else "/")


def _decoded(decoding: dict[str, StreamDecoding], record: Frame) -> str | None:
    """The summary of the message this data frame record ends, if it decodes."""
    if record.opcode >= 0x8:
        return None
    stream = decoding.get(record.conn)
    if stream is None:  # a capture (a HAR from another tool) without the open record
        stream = decoding[record.conn] = StreamDecoding(Hints())
    decoded = stream.frame(
        record.payload,
        from_client=record.direction == "client",
        text=record.message_opcode == 0x1,
        last=record.fin and not record.more,
        whole=record.verdict == "injected",
    )
    return None if decoded is None else decoded.summary


def _in_range(record: Record, args: argparse.Namespace, conns: set[str]) -> bool:
    """Whether ``record`` is of a chosen connection (--conn) and within --since/--until."""
    conn = getattr(record, "conn", None)
    if conns and (conn is not None or isinstance(record, Http)) and conn not in conns:
        return False
    if args.since is not None and record.time < args.since:
        return False
    return args.until is None or record.time <= args.until


def _frame_shown(
    record: Frame,
    args: argparse.Namespace,
    continuing: set[tuple[str, str, bool]],
    chosen: _Chosen,
) -> bool:
    """Whether a frame record gets a line: its direction, --filter, --grep, and for a frame
    recorded in pieces only its first piece (every piece with --full or --grep)."""
    grep: re.Pattern[str] | None = args.grep
    if args.direction is not None and record.direction != args.direction:
        return False
    key = (record.conn, record.direction, record.verdict == "injected")
    piece = record.opcode < 0x8 and key in continuing
    if record.more:
        continuing.add(key)
    elif record.opcode < 0x8:  # a ping between two pieces does not end the frame
        continuing.discard(key)
    if piece and not args.full and grep is None:
        return False  # the frame was shown by its first piece
    if not chosen.keeps(record):
        return False
    return grep is None or (
        record.is_text and grep.search(record.payload.decode("utf-8", "replace")) is not None
    )


class _Chosen:
    """``--filter``: each connection's selection, made from its handshake record."""

    def __init__(self, filter: Filter | None) -> None:
        self.filter = filter
        self.selections: dict[str, Selection] = {}

    def open(self, record: Connection) -> None:
        if self.filter is None:
            return
        flow = UrlView(
            record.url,
            status=record.status,
            request_headers=record.request_headers,
            response_headers=record.response_headers,
        )
        hints = hints_of(record.subprotocol, record.url)
        self.selections[record.conn] = Selection(self.filter, flow, hints)

    def _selection(self, conn: str) -> Selection:
        """A frame or close of a connection whose handshake is not in the file (a journal
        cut at its start): known by nothing but its frames."""
        assert self.filter is not None
        if conn not in self.selections:
            self.selections[conn] = Selection(self.filter, UrlView(""), Hints())
        return self.selections[conn]

    def shows(self, record: Record) -> bool:
        """Whether a record other than a frame gets a line."""
        if self.filter is None or isinstance(record, Lost | Stopped):
            return True
        if isinstance(record, Http):
            view = UrlView(
                record.url,
                method=record.method,
                status=record.status,
                request_headers=record.request_headers,
                response_headers=record.response_headers,
                is_websocket=False,
            )
            return self.filter.bind(view).verdict is True
        if isinstance(record, Connection | Close):
            return self._selection(record.conn).verdict is not False
        return True

    def keeps(self, frame: Frame) -> bool:
        if self.filter is None:
            return True
        view = RecordView(
            from_client=frame.direction == "client",
            opcode=frame.opcode,
            message_opcode=frame.message_opcode,
            payload=frame.payload,
            length=frame.length,
            compressed=frame.compressed,
        )
        selection = self._selection(frame.conn)
        injected = frame.verdict == "injected"
        return selection.keeps(view, offset=frame.offset, more=frame.more, injected=injected)


def no_connection(missing: Sequence[str], seen: Sequence[str], where: str = "this capture") -> str:
    """``no connection c99 in this capture (it has: 1, 2, 3)``: for show and replay."""
    which = ", ".join(missing)
    has = ", ".join(seen[:10]) + (", …" if len(seen) > 10 else "") if seen else "none"
    plural = "s" if len(missing) > 1 else ""
    it = "it has" if where == "this capture" else "they have"
    return f"no connection{plural} {which} in {where} ({it}: {has})"
