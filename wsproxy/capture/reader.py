"""Read any capture as one stream of records: JSONL (ours), HAR (ours, Chrome, mitmproxy) or
a mitmproxy flow file (``mitmflows``, read one flow at a time).

JSONL is read line by line, so memory does not grow with the file: a 1 GiB capture is read with
one line in memory at a time (a line holds at most ``jsonl.PIECE`` bytes of content: a large
frame is recorded in pieces, each read as a ``Frame`` of its own; ``join_frames`` puts them
back together, holding one frame).
``follow`` keeps reading a file that is being written, like ``tail -f``: at the end it waits
for more, and a line the writer has only half written is held until its newline arrives.
HAR files are streamed too (``har.read_har``): one entry's fields and one message at a time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from wsproxy.capture import jsonl
from wsproxy.capture.har import CaptureFormatError, read_har, unreadable
from wsproxy.capture.mitmflows import is_flow_file, read_flows
from wsproxy.capture.records import Frame, Record

FOLLOW_POLL = 0.2  # seconds between looks at a followed file


def _first_line(path: Path) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.readline(1 << 20)
    except OSError as error:
        raise unreadable(path, error) from None


def _is_record(line: bytes) -> bool:
    """Whether ``line`` is a JSONL record: a JSON object with a ``type``."""
    try:
        obj = json.loads(line)
    except ValueError:
        return False
    return isinstance(obj, dict) and "type" in obj


def detect_format(path: Path) -> str:
    """ "jsonl", "har" or "mitm": by extension, else by the first line (a flow file by its
    tnetstring start); CaptureFormatError for a file that cannot be read or is none of them."""
    suffix = path.suffix.lower()
    first = _first_line(path)  # also for a known extension: a missing file fails here
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".har":
        return "har"
    if suffix == ".mitm" or is_flow_file(first):
        return "mitm"
    if _is_record(first):
        return "jsonl"
    if first.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "har"  # a JSON document: read_har says whether it is a HAR
    raise not_a_capture(path, "empty file" if not first else None)


def not_a_capture(path: Path, why: str | None = None) -> CaptureFormatError:
    return CaptureFormatError(
        f"{path}: not a capture ({why or 'not wsproxy JSONL, HAR or a mitmproxy flow file'})"
    )


def check_jsonl(path: Path) -> None:
    """CaptureFormatError unless ``path`` can be read and starts with a JSONL record."""
    first = _first_line(path)
    if not first:
        raise not_a_capture(path, "empty file")
    if not _is_record(first):
        raise not_a_capture(path, "line 1 is not a wsproxy JSONL record")


def read_jsonl(path: Path, *, follow: bool = False) -> Iterator[Record]:
    """The records of a JSONL capture. The first line must be one (so that a file of
    something else is an error, not silence); a later line that is not is skipped."""
    for record in tail_jsonl(path, follow=follow):
        if record is None:
            time.sleep(FOLLOW_POLL)
        else:
            yield record


def tail_jsonl(path: Path, *, follow: bool = False) -> Iterator[Record | None]:
    """``read_jsonl``, but with ``follow`` it yields None at the end written so far instead of
    waiting there: ``merge`` follows several files and must not wait on any one of them."""
    try:
        file = open(path, "rb")  # noqa: SIM115 (closed below, in the generator)
    except OSError as error:
        raise unreadable(path, error) from None
    with file:
        held = b""
        first = True
        while True:
            try:
                line = file.readline()
            except OSError as error:
                raise unreadable(path, error) from None
            if not line:
                if first and not follow:
                    raise not_a_capture(path, "empty file")
                if not follow:
                    return
                yield None
                continue
            if not line.endswith(b"\n") and follow:
                held += line  # the writer is mid-line: wait for the rest
                continue
                # The last line, cut short by a crash: decode_line skips it if incomplete.
            if held:
                line, held = held + line, b""
            if first and (line.endswith(b"\n") or not follow) and not _is_record(line):
                raise not_a_capture(path, "line 1 is not a wsproxy JSONL record")
            first = False
            record = jsonl.decode_line(line)
            if record is not None:
                yield record


def read_capture(path: Path | str, *, follow: bool = False) -> Iterator[Record]:
    """Every record of a capture file, in file order. A file that is missing, cannot be
    read or is not a capture is a CaptureFormatError, worded the same for every command."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "jsonl":
        return read_jsonl(path, follow=follow)
    if follow:
        raise _not_followed(path)
    return read_flows(path) if fmt == "mitm" else read_har(path)


def follow_capture(path: Path | str) -> Iterator[Record | None]:
    """``read_capture(path, follow=True)`` as ``tail_jsonl`` yields it: None at the end so far."""
    path = Path(path)
    if detect_format(path) != "jsonl":
        raise _not_followed(path)
    return tail_jsonl(path, follow=True)


def _not_followed(path: Path) -> CaptureFormatError:
    return CaptureFormatError(
        f"{path}: --follow reads JSONL captures (a HAR file is rewritten whole; for a .mitm, "
        "follow its .mitm.jsonl journal)"
    )


def join_frames(records: Iterable[Record]) -> Iterator[Record]:
    """``records`` with each frame recorded in pieces joined into one ``Frame``.

    The joined frame comes where its last piece was (its ``time`` is that piece's); other
    records pass through as they come. Pieces that do not follow on (records lost between
    them, or a file cut short) are left out: a frame is whole or absent. Memory: the frames
    being joined, one per connection and direction at most.
    """
    open_: dict[tuple[str, str, bool], tuple[Frame, list[bytes], list[bytes], int]] = {}
    for record in records:
        if not isinstance(record, Frame) or record.opcode >= 0x8:
            yield record
            continue
        key = (record.conn, record.direction, record.verdict == "injected")
        held = open_.pop(key, None)
        if held is not None and held[3] == record.offset:
            pass  # the next piece (offset 0 too after pieces with no content, original only)
        elif record.offset == 0:
            if not record.more:
                yield record  # a frame in one piece
                continue
            held = (record, [], [], 0)
        else:
            continue  # its start, or a piece before it, is missing
        first, parts, originals, _ = held
        parts.append(record.payload)
        if record.original is not None:
            originals.append(record.original)
        if record.more:
            open_[key] = (first, parts, originals, record.offset + len(record.payload))
            continue
        verdict = first.verdict
        if record.verdict != "forwarded" and verdict != "dropped":
            verdict = record.verdict
        yield replace(
            first,
            time=record.time,
            payload=b"".join(parts),
            original=b"".join(originals) if originals else None,
            verdict=verdict,
            by=first.by or record.by,
            offset=0,
            more=False,
        )
