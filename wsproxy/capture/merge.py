"""Several captures read as one stream ordered by time: ``wsproxy show a b c``,
``wsproxy-web -r a -r b`` (the files of ``--workers``, or of several runs, seen together).

Each file is read as it would be alone (``reader.read_capture``: streamed, one record at a
time) and their records are merged by ``time`` with ``heapq.merge``, which holds one record per
file: memory follows the number of files, not their size. Equal times keep the order the files
were given in. A record whose time goes back inside one file (the clock was stepped) is not
moved: each file's records always come in that file's order.

Connection ids are per run: ``c1`` of two runs are two connections. The first file whose
records name an id keeps it; the same id seen later in another file is shown as ``ID@N``, N
that file's place (from 1) in the list: ``c1`` of the second file becomes ``c1@2`` (and
``--conn c1@2`` selects it). Ids that are unique already (``w1-c3``, ``w2-c3``: the workers of
one run) are not changed. Records are renamed as they pass, so everything downstream that
keeps per-connection state (decoding, ``--filter``) keys it by the id shown.

A file that cannot be read, or is not a capture, is reported to ``on_error`` and left out (the
others are still merged); one that fails part way ends there. Without ``on_error`` the error is
raised.

``merge_journals`` does the same to JSONL lines, for ``wsproxy har a b -o all.har`` and
``wsproxy mitm``, whose converters read one journal.
"""

from __future__ import annotations

import heapq
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from wsproxy.capture.har import CaptureFormatError
from wsproxy.capture.reader import FOLLOW_POLL, follow_capture, read_capture
from wsproxy.capture.records import Close, Connection, Frame, Http, Record

OnError = Callable[[CaptureFormatError], None]


def _when(record: Record) -> float:
    """The merge key: the record's time; a time that is no number (a damaged capture) sorts
    first, so that the record goes out as soon as it is its file's next."""
    return record.time if not math.isnan(record.time) else -math.inf


class ConnIds:
    """The id each file's connections are shown by (see the module doc)."""

    def __init__(self, count: int) -> None:
        self._shown: list[dict[str, str]] = [{} for _ in range(count)]  # per file: id -> shown
        self._origin: dict[str, tuple[int, str]] = {}  # shown -> (file index, id in the file)

    def shown(self, index: int, conn: str) -> str:
        mine = self._shown[index]
        name = mine.get(conn)
        if name is None:
            name = conn
            tries = 0
            while name in self._origin:  # another file's: qualify by this file's place
                name = f"{conn}@{index + 1}" + (f".{tries}" if tries else "")
                tries += 1
            mine[conn] = name
            self._origin[name] = (index, conn)
        return name

    def origin(self, shown: str) -> tuple[int, str] | None:
        """The file (its index) and the id in it of a connection shown as ``shown``."""
        return self._origin.get(shown)


class MergedCaptures:
    """The records of ``paths``, one stream by time, ids made distinct; iterate once."""

    def __init__(
        self, paths: Sequence[Path | str], *, follow: bool = False, on_error: OnError | None = None
    ) -> None:
        self.paths = [Path(path) for path in paths]
        self.follow = follow
        self.on_error = on_error
        self.ids = ConnIds(len(self.paths))
        self.failed: list[CaptureFormatError] = []  # the files left out or cut short, in order

    def origin(self, shown: str) -> tuple[Path, str] | None:
        """The file and the id in it of the connection shown as ``shown`` (once it has been
        read): what ``wsproxy replay FILE --conn ID`` takes."""
        found = self.ids.origin(shown)
        return None if found is None else (self.paths[found[0]], found[1])

    def __iter__(self) -> Iterator[Record]:
        merged = self._follow_merge() if self.follow else self._merge()
        ids = self.ids
        for index, record in merged:
            if isinstance(record, Connection | Frame | Close | Http) and record.conn is not None:
                record.conn = ids.shown(index, record.conn)
            yield record

    def _failed(self, error: CaptureFormatError) -> None:
        self.failed.append(error)
        if self.on_error is None:
            raise error
        self.on_error(error)

    def _records(self, index: int) -> Iterator[tuple[int, Record]]:
        """One file's records, tagged with its index; an error ends them (``on_error``)."""
        try:
            for record in read_capture(self.paths[index]):
                yield index, record
        except CaptureFormatError as error:
            self._failed(error)

    def _merge(self) -> Iterator[tuple[int, Record]]:
        streams = [self._records(index) for index in range(len(self.paths))]
        # heapq.merge is stable: of equal keys, the earlier stream's record goes first.
        return heapq.merge(*streams, key=lambda item: _when(item[1]))

    def _polled(self, index: int) -> Iterator[Record | None]:
        """One followed file: records, and None at the end written so far."""
        try:
            yield from follow_capture(self.paths[index])
        except CaptureFormatError as error:
            self._failed(error)

    def _follow_merge(self) -> Iterator[tuple[int, Record]]:
        """``--follow`` over several files: no file may be waited on, so each is polled. What
        the files hold so far is merged by time; a file at its end is looked at again every
        ``FOLLOW_POLL`` seconds, and its new records join the merge from then on (a record that
        a writer flushes late can come after a later one of another file)."""
        streams = {index: self._polled(index) for index in range(len(self.paths))}
        heads: dict[int, Record] = {}  # the next record of each file that has one
        idle: set[int] = set()  # files at their end so far

        def pull(index: int) -> None:
            try:
                record = next(streams[index])
            except StopIteration:  # failed (reported), or a bug: a followed file never ends
                del streams[index]
                idle.discard(index)
                return
            if record is None:
                idle.add(index)
            else:
                idle.discard(index)
                heads[index] = record

        for index in list(streams):
            pull(index)
        polled = time.monotonic()
        while streams or heads:
            if idle and time.monotonic() - polled >= FOLLOW_POLL:
                for index in sorted(idle):
                    pull(index)
                polled = time.monotonic()
            if not heads:
                time.sleep(FOLLOW_POLL)
                continue
            index = min(heads, key=lambda i: (_when(heads[i]), i))
            yield index, heads.pop(index)
            pull(index)


def _ts(obj: dict[str, Any]) -> float:
    ts = obj.get("ts")
    if isinstance(ts, int | float) and not isinstance(ts, bool) and not math.isnan(ts):
        return float(ts)
    return -math.inf


def merge_journals(paths: Sequence[Path], out: BinaryIO) -> None:
    """Several JSONL captures written to ``out`` as one (``wsproxy har a b -o all.har``): their
    lines merged by ``ts`` as ``MergedCaptures`` merges records, ids renamed the same way, and
    the first file's header line only. One line per file is held."""
    ids = ConnIds(len(paths))

    def lines(index: int) -> Iterator[tuple[float, int, dict[str, Any]]]:
        with open(paths[index], "rb") as file:
            file.readline()  # the header: checked by the caller, written once below
            for line in file:
                if not line.endswith(b"\n"):
                    return  # the last line, cut short by a crash
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue  # not a record: the readers skip it too
                if isinstance(obj, dict):
                    yield _ts(obj), index, obj

    with open(paths[0], "rb") as first:
        out.write(first.readline())
    merged = heapq.merge(*(lines(index) for index in range(len(paths))), key=lambda x: x[0])
    for _, index, obj in merged:
        conn = obj.get("conn")
        if conn is not None:
            obj["conn"] = ids.shown(index, str(conn))
        out.write(json.dumps(obj).encode() + b"\n")
