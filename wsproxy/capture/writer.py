"""The capture sink: records every WebSocket of a run to a file, without slowing the relay.

The relay calls ``handshake``, ``frame`` and ``close`` on the event loop. They only append to a
bounded in-memory queue; a writer thread takes whatever is queued, encodes it (JSON, base64),
writes it and flushes the file once per batch. The event loop never waits for the disk and
never encodes a payload.

Durability: a frame that was forwarded is in the file, even if the proxy is SIGKILLed right
after. While the writer thread is idle (its queue empty), records of small frames are encoded on
the event loop and written to the file in one ``os.write`` per batch, *before* the relay writes
the frames to the peers: the session calls ``sync`` at the start of each flush (write-ahead).
That write goes to the OS page cache and takes microseconds; should ``SLOW_STREAK`` of them in a
row take longer than ``SLOW_WRITE`` (a slow or stalled disk; one alone is more often the
scheduler's doing on a busy machine, which taking the slow path for seconds would only make
dearer), write-ahead is switched off for ``SLOW_PAUSE`` seconds and everything goes through
the queue, so a slow disk slows capture, never the relay. Frames
over ``INLINE_MAX`` bytes, and every record while the thread is busy, go through the queue; the
thread writes them a little behind the relay (it wakes as soon as a record is queued), so those
few records can be missing after a SIGKILL. Data that reached the OS survives the proxy being
SIGKILLed; ``fsync`` only adds protection against power loss or a kernel crash and costs a disk
round trip per batch, so it is opt-in: ``--capture-fsync`` (write-ahead is off with it).
Write-ahead is also off for a capture that is not a regular file, such as a named pipe: a write
to a pipe blocks while its reader is slow, and that must not happen on the event loop.

Backpressure: a WebSocket can send faster than the thread encodes (large frames come in
pieces of 256 KiB, see ``jsonl``), so when the queue holds more than ``high_water`` bytes of
payload (8 MiB) ``congested`` tells the session to stop reading from the peers of captured
connections, and calls it back when the thread has taken the queue. Records then wait in the
sockets' buffers, not in the proxy: capture memory stays near twice ``high_water`` (the queue
and the batch being written), and records are not lost to a writer that is merely slower than
the network. A stalled disk therefore stalls captured connections too, for as long as it stalls
(the write-ahead pause above still keeps the event loop itself from waiting for it). Many small
frames weigh little but cost the thread per record, so more than ``high_water_records`` (2,000)
queued records congest too: a session stops reading at the end of the chunk it is relaying
(256 KiB at most, about 3,700 small frames), so the hard limits below stay out of reach unless
several connections overshoot at the same instant. That is ``overflow="wait"``, the default
(``--capture-overflow wait``); with ``overflow="drop"`` (``--capture-overflow drop``)
``congested`` always says no: the relay never waits for the capture, and when the writer falls
behind, records are dropped as below.

Overload: the queue holds at most ``max_records`` records and ``max_bytes`` of payload (10,000
and 64 MiB by default; one record is always accepted into an empty queue, so a message larger
than the limit is still captured; the batch being written is outside the queue, so memory for
records peaks near twice the limit). When it is full, the frame is not recorded: a counter goes
up, the first loss is logged at WARNING at once, then a summary every few seconds and the total
at shutdown, and a ``lost`` record with the count goes into the file when the writer catches
up, so readers see the gap. Handshake and close records are never dropped (one each per
connection, small), so every connection in the file has its start and end.

A full disk (``ENOSPC``, or any other write error): the capture stops, the relay does not. The
file is cut back to its last whole line (``linefile``: the kernel may have taken half of the
last one) and ends with a ``stopped`` record if that fits; every line written before stays.
One error in the log names the file and the cause; from then on records are not queued and
captured connections are never held for the capture.

HAR output (``-w FILE.har``): the records go to a JSONL journal beside it, ``FILE.har.jsonl``
(kept after the run), and the HAR is rewritten from the journal, atomically (a temporary file
then ``os.replace``), when the run ends, after a connection closes and every ``har_interval``
seconds while traffic flows, so a crash leaves the last good HAR plus a journal that
``wsproxy har FILE.har.jsonl -o FILE.har`` turns into a complete one. Rewriting reads the whole
journal, so on a large capture rewrites are spaced out (at least four times as long as the last
one took).

Plain HTTP (``--capture-http``, on by default for HAR files: see ``open_capture``): the relay
hands over each exchange when it ended (``http``), as an ``http`` record queued like a frame
(its kept body bytes count as payload), encoded in the thread.

mitmproxy output (``-w FILE.mitm``): the same journal, ``FILE.mitm.jsonl``, and at the same
moments ``mitmflows.FlowFile`` appends to the flow file the flows of the WebSockets that
closed (at the end of the run, also those still open); see ``mitmflows``.

Several ``-w`` files: one writer each, behind a ``CaptureFanout`` (each encodes and writes on
its own; they share nothing but the filter). Every file is created 0600 (see ``files``).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from wsproxy.capture import jsonl, jsonlframes
from wsproxy.capture.files import create_private
from wsproxy.capture.formats import JOURNALED, capture_format, journal_path
from wsproxy.capture.linefile import LineFile
from wsproxy.filtering import Selection, UrlView, select
from wsproxy.filters import compile_url_filter
from wsproxy.model import Flow, HttpExchange
from wsproxy.sansio.relay import FrameRecord

if TYPE_CHECKING:
    from wsproxy.capture.mitmflows import FlowFile

log = logging.getLogger("wsproxy")

MiB = 1024 * 1024
MAX_RECORDS = 10_000
MAX_BYTES = 64 * MiB
HIGH_WATER = 8 * MiB  # queued payload above which captured connections stop reading
HIGH_WATER_RECORDS = 2_000  # ... or queued records
OVERFLOW = ("wait", "drop")  # what a writer behind the traffic does: congest, or drop records
REPORT_INTERVAL = 5.0  # seconds between loss summaries
INLINE_MAX = 64 * 1024  # larger frame payloads are always encoded in the writer thread
SLOW_WRITE = 0.005  # seconds: write-aheads slower than this mean the disk is struggling...
SLOW_STREAK = 3  # ... when this many come in a row
SLOW_PAUSE = 10.0  # seconds without write-ahead after a slow one
HAR_INTERVAL = 5.0  # seconds between HAR rewrites while traffic flows


def _describe(error: BaseException) -> str:
    """``ENOSPC: No space left on device``; any other exception as its type and text."""
    if isinstance(error, OSError) and error.errno:
        return f"{errno.errorcode.get(error.errno, error.errno)}: {os.strerror(error.errno)}"
    return f"{type(error).__name__}: {error}"


# A queued item: a ready record (handshake, close), a run of frames of one connection (those
# of one read, recorded at one instant) or an HTTP exchange, to encode in the thread.
_Item = dict[str, Any] | tuple[str, Sequence[FrameRecord], float] | HttpExchange


def _item_parts(item: _Item) -> Iterator[bytes]:
    """One queued item as the pieces of its JSONL line(s), newlines included, made as they are
    taken (a large frame's lines are encoded one after the other, never all at once)."""
    if isinstance(item, dict):
        yield jsonl.encode(item)
        yield b"\n"
        return
    if isinstance(item, HttpExchange):
        yield from jsonl.http_line(item)
        return
    conn, records, ts = item
    for r in records:
        yield from jsonlframes.frame_line(conn, ts, r)


def _sizes(records: Sequence[FrameRecord]) -> tuple[int, int]:
    """The payload bytes of ``records`` (content and original content), and the most of one."""
    total = largest = 0
    for r in records:
        size = len(r.payload) if r.original is None else len(r.payload) + len(r.original)
        total += size
        if size > largest:
            largest = size
    return total, largest


class CaptureWriter:
    """Writes a capture file (``.jsonl``, or ``.har`` with a journal); see the module doc."""

    def __init__(
        self,
        path: Path | str,
        *,
        filter: str | None = None,
        fsync: bool = False,
        max_records: int = MAX_RECORDS,
        max_bytes: int = MAX_BYTES,
        high_water: int = HIGH_WATER,
        high_water_records: int = HIGH_WATER_RECORDS,
        overflow: Literal["wait", "drop"] = "wait",
        har_interval: float = HAR_INTERVAL,
        report_interval: float = REPORT_INTERVAL,
        tool: str = "wsproxy",
        write_ahead: bool = True,
        http: bool = False,
    ) -> None:
        self.path = Path(path)
        self.har_path: Path | None = None  # the file made from the journal: .har or .mitm
        self.journal = self.path
        self._flows: FlowFile | None = None
        if capture_format(self.path) in JOURNALED:
            self.har_path = self.path
            self.journal = journal_path(self.path)
        if capture_format(self.path) == "mitm":
            from wsproxy.capture.mitmflows import FlowFile

            self._flows = FlowFile(self.path, self.journal)
        # --capture-filter: an expression, or a plain URL regex as it always was.
        self.filter = compile_url_filter(filter) if filter else None
        self._selections: dict[str, Selection] = {}  # flows whose frames are picked one by one
        self.capture_http = http  # plain HTTP exchanges too
        self.fsync = fsync
        self.write_ahead = write_ahead and not fsync
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.high_water = high_water
        self.high_water_records = high_water_records
        if overflow not in OVERFLOW:
            raise ValueError(f"overflow must be one of {OVERFLOW}, not {overflow!r}")
        self.overflow = overflow
        self.har_interval = har_interval
        self.report_interval = report_interval
        # Mode 0600 from creation: a capture holds cookies and payloads (see files.py).
        self._file: BinaryIO = create_private(self.journal)  # closed by the thread
        if not stat.S_ISREG(os.fstat(self._file.fileno()).st_mode):
            # A FIFO (or a terminal): a write blocks for as long as its reader is slow, so
            # never on the event loop; the thread writes everything.
            self.write_ahead = False
        self._out = LineFile(self._file.fileno())  # whole lines, even on a full disk
        self._out.write(jsonl.encode(jsonl.header(tool, filter)) + b"\n")
        self._out.flush()
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._queued_bytes = 0
        self._queued_records = 0  # a run of frames is one item, and as many records
        self._waiting: list[Callable[[], None]] = []  # to call when the thread takes the queue
        self.congestions = 0  # times a session was told to stop reading
        self._stopping = False
        self._finished = False
        self.lost = 0  # records not written because the queue was full
        self._lost_written = 0
        self._lost_reported = 0
        self.written = 0
        self.written_inline = 0  # write-ahead batches
        self.error: BaseException | None = None
        # Write-ahead on the event loop (see the module doc): encoded lines waiting for ``sync``.
        self._inline: list[bytes] = []
        self._busy = False  # the thread is between taking a batch and flushing it
        self._journal_grew = False  # write-ahead lines went into the journal
        self._closed_inline = False  # ... and one of them was a close record
        self._inline_paused_until = 0.0
        self._slow_writes = 0  # write-aheads in a row slower than SLOW_WRITE
        self._thread = threading.Thread(target=self._run, name="wsproxy-capture", daemon=True)
        self._thread.start()

    # -- the sink, called on the event loop ---------------------------------------------------

    def wants(self, flow: Flow) -> bool:
        """Whether ``flow`` is captured, asked once its handshake is done; with message
        operators in the filter, only its matching frames will be (``frame``)."""
        if self.filter is None:
            return True
        selection = select(self.filter, flow)
        if selection.verdict is None:
            self._selections[flow.id] = selection
        return selection.verdict is not False

    def handshake(self, flow: Flow) -> None:
        self._put(jsonl.handshake_record(flow), 0, droppable=False)
        self.sync()

    def frame(self, flow: Flow, record: FrameRecord, timestamp: float) -> None:
        self.frames(flow, [record], timestamp)

    def frames(self, flow: Flow, records: Sequence[FrameRecord], timestamp: float) -> None:
        """A run of ``flow``'s frames recorded at ``timestamp`` (one read's): one item, one
        lock and, while the thread is idle, one encoding pass (``jsonlframes.frames_bytes``)."""
        selection = self._selections.get(flow.id)
        if selection is not None:
            records = [r for r in records if selection.keeps_record(r)]
        if not records:
            return
        size, largest = _sizes(records)
        self._put((flow.id, records, timestamp), size, droppable=True, largest=largest)

    def close(self, flow: Flow) -> None:
        self._selections.pop(flow.id, None)
        self._put(jsonl.close_record(flow), 0, droppable=False)
        self.sync()

    def wants_http(
        self, url: str, method: str = "GET", headers: Sequence[tuple[str, str]] = ()
    ) -> bool:
        """Whether a plain HTTP exchange is captured: when the filter matches it from its
        request alone (message operators have no message to look at here)."""
        if not self.capture_http:
            return False
        if self.filter is None:
            return True
        view = UrlView(url, method=method, request_headers=headers, is_websocket=False)
        return self.filter.bind(view).verdict is True

    def http(self, exchange: HttpExchange) -> None:
        size = len(exchange.request_body.kept) + len(exchange.response_body.kept)
        self._put(exchange, size, droppable=True)
        self.sync()

    @property
    def backlog(self) -> int:
        """Records queued, not yet taken by the writer thread (the metrics' capture backlog)."""
        return self._queued_records

    def congested(self, resume: Callable[[], None]) -> bool:
        """Whether the queue holds more than ``high_water`` bytes or ``high_water_records``
        records (never with ``overflow="drop"``); if so ``resume`` is called, from the writer
        thread, once the thread has taken the queue (see the module doc)."""
        if not self._over_high_water():  # read without the lock: a hint, re-checked
            return False
        with self._cond:
            if not self._over_high_water() or self._stopping:
                return False
            self._waiting.append(resume)
            self.congestions += 1
            return True

    def _over_high_water(self) -> bool:
        return self.overflow == "wait" and (
            self._queued_bytes > self.high_water or self._queued_records > self.high_water_records
        )

    def sync(self) -> None:
        """Write the write-ahead lines of this batch: called before the relay's output goes out."""
        if not self._inline:
            return
        with self._cond:
            self._write_inline()

    def _write_inline(self) -> None:
        """With the lock held: one ``os.writev`` of the waiting lines (the thread is idle)."""
        started = time.monotonic()
        try:
            for line in self._inline:
                self._out.write(line)
            self._out.flush()
        except OSError as error:
            self._fail(error)
            return
        finally:
            self._inline.clear()
        self.written_inline += 1
        self._journal_grew = True  # the thread keeps the HAR up to date
        took = time.monotonic() - started
        if took <= SLOW_WRITE:
            self._slow_writes = 0
            return
        self._slow_writes += 1
        if self._slow_writes >= SLOW_STREAK:
            self._slow_writes = 0
            self._inline_paused_until = time.monotonic() + SLOW_PAUSE
            log.warning(
                "capture: %d writes in a row to %s were slow (the last took %.0f ms): writing "
                "through the queue for %.0f s",
                SLOW_STREAK,
                self.journal,
                took * 1000,
                SLOW_PAUSE,
            )

    def _encode_inline(self, item: _Item) -> bytes:
        if isinstance(item, tuple):
            conn, records, ts = item
            return jsonlframes.frames_bytes(conn, ts, records)
        return b"".join(_item_parts(item))

    def _put(self, item: _Item, size: int, *, droppable: bool, largest: int | None = None) -> None:
        """Queue ``item`` (``size`` bytes of payload, ``largest`` in its largest frame), or
        encode it for the write-ahead while the thread is idle."""
        count = len(item[1]) if isinstance(item, tuple) else 1
        with self._cond:
            if self._stopping:
                return
            if (
                not self._queue
                and not self._busy
                and self.write_ahead
                and (size if largest is None else largest) <= INLINE_MAX
                and time.monotonic() >= self._inline_paused_until
            ):
                self._inline.append(self._encode_inline(item))
                self.written += count
                if isinstance(item, dict) and item["type"] == "close":
                    self._closed_inline = True
                    self._cond.notify()  # a closed connection: the HAR is rewritten soon
                return
            if self._inline:
                self._write_inline()  # keep the file in order: earlier lines first
            queue = self._queue
            if droppable and queue:
                item, count, size = self._room_for(item, count, size)
                if not count:
                    return
            queue.append(item)
            self._queued_bytes += size
            self._queued_records += count
            if len(queue) == 1:
                self._cond.notify()

    def _room_for(self, item: _Item, count: int, size: int) -> tuple[_Item, int, int]:
        """With the lock held and the queue not empty: what of ``item`` fits in the queue's
        limits (of a run of frames, the first ones that fit); the rest is counted lost."""
        records_left = self.max_records - self._queued_records
        bytes_left = self.max_bytes - self._queued_bytes
        if count <= records_left and size <= bytes_left:
            return item, count, size
        kept, kept_size = 0, 0
        if isinstance(item, tuple):
            conn, records, ts = item
            for record in records[: max(records_left, 0)]:
                record_size, _ = _sizes((record,))
                if kept_size + record_size > bytes_left:
                    break
                kept += 1
                kept_size += record_size
            item = (conn, records[:kept], ts)
        first = self.lost == 0
        self.lost += count - kept
        if first:
            log.warning(
                "capture: the writer cannot keep up with the traffic; frames are NOT "
                "being recorded to %s (counted; a 'lost' record marks the gap)",
                self.journal,
            )
        return item, kept, kept_size

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        last_report = time.monotonic()
        har_due = time.monotonic() + self.har_interval
        har_dirty = False
        har_gap = self.har_interval
        try:
            while True:
                with self._cond:
                    if not self._queue and not self._stopping:
                        self._cond.wait(timeout=1.0)
                    batch = self._queue
                    self._queue = deque()
                    self._queued_bytes = self._queued_records = 0
                    waiting, self._waiting = self._waiting, []
                    lost = self.lost
                    stopping = self._stopping
                    if batch or lost > self._lost_written:
                        self._busy = True
                    grew, closed_inline = self._journal_grew, self._closed_inline
                    self._journal_grew = self._closed_inline = False
                had = bool(batch)
                for resume in waiting:
                    resume()  # the sessions read again while this batch is written
                try:
                    closed = self._write_batch(batch) or closed_inline
                    if lost > self._lost_written:
                        self._write_line(jsonl.lost(lost - self._lost_written, lost))
                        self._lost_written = lost
                    if had or lost:
                        self._out.flush()
                        if self.fsync:
                            os.fsync(self._file.fileno())
                finally:
                    with self._cond:
                        self._busy = False
                har_dirty = har_dirty or had or grew
                now = time.monotonic()
                if lost > self._lost_reported and now - last_report >= self.report_interval:
                    log.warning(
                        "capture: %d frame record(s) lost in the last %.0f s (%d in all): the "
                        "writer cannot keep up with the traffic",
                        lost - self._lost_reported,
                        now - last_report,
                        lost,
                    )
                    self._lost_reported = lost
                    last_report = now
                if stopping and not had:
                    break
                if self.har_path is not None and har_dirty and (closed or now >= har_due):
                    if closed and now < har_due - har_gap + 1.0:
                        continue  # a close less than a second after the last rewrite: wait
                    started = time.monotonic()
                    self._write_har()
                    har_dirty = False
                    took = time.monotonic() - started
                    har_gap = max(self.har_interval, 4 * took)
                    har_due = time.monotonic() + har_gap
        except BaseException as error:  # a full disk must not go unnoticed
            self._fail(error)
            with self._cond:
                self._stopping = True
                self._queue.clear()
                self._queued_bytes = self._queued_records = 0
                waiting, self._waiting = self._waiting, []
            for resume in waiting:
                resume()  # capture stopped: nothing to wait for
        finally:
            self._file.close()

    def _write_batch(self, batch: deque[_Item]) -> bool:
        """Encode and write ``batch``; True if it held a close record.

        Each record is handed to the ``LineFile`` as it is encoded (it gathers up to 256 KiB
        per write), so a batch of large frames never sits in memory twice.
        """
        closed = False
        write = self._out.write
        while batch:
            item = batch.popleft()
            if type(item) is tuple:
                conn, records, ts = item
                self.written += len(records)
                if _sizes(records)[1] <= jsonl.PIECE:
                    write(jsonlframes.frames_bytes(conn, ts, records))  # short lines, one pass
                    continue
            elif isinstance(item, dict):
                closed = closed or item["type"] == "close"
                self.written += 1
            else:
                self.written += 1
            for part in _item_parts(item):
                write(part)
        return closed

    def _write_line(self, obj: dict[str, Any]) -> None:
        self._out.write(jsonl.encode(obj) + b"\n")

    def _fail(self, error: BaseException) -> None:
        """Stop capturing after a write failed: the file ends with its last whole line (see
        ``linefile``), then a ``stopped`` record if it fits; one error in the log. The relay
        goes on without capture."""
        if self.error is not None:
            return
        self.error = error
        self._stopping = True
        why = _describe(error)
        final = self._out.write_final(jsonl.encode(jsonl.stopped(why)) + b"\n")
        log.error(
            "capture: writing %s failed (%s): capture stopped, the proxy goes on relaying "
            "without it; the file ends with %s",
            self.journal,
            why,
            "a 'stopped' record" if final else "the last whole record",
        )

    def _write_har(self, final: bool = False) -> None:
        from wsproxy.capture.har import journal_to_har

        assert self.har_path is not None
        try:
            if self._flows is not None:
                self._flows.update(final)  # appends the flows of closed WebSockets
            else:
                journal_to_har(self.journal, self.har_path)
        except Exception as error:  # the journal is intact: the HAR can be made later
            log.error("capture: writing %s failed: %s", self.har_path, error)

    # -- shutdown ----------------------------------------------------------------------------

    def finish(self) -> None:
        """Write everything queued, the final HAR if any, report losses; blocks until done."""
        if self._finished:
            return
        self._finished = True
        with self._cond:
            if self._inline:
                self._write_inline()
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        if self.har_path is not None and self.error is None:
            self._write_har(final=True)
        if self.lost:
            log.warning(
                "capture: %d frame record(s) were lost in all (the writer could not keep up); "
                "'lost' records in %s mark where",
                self.lost,
                self.journal,
            )

    async def aclose(self) -> None:
        """``finish`` without blocking the event loop."""
        import asyncio

        await asyncio.to_thread(self.finish)
