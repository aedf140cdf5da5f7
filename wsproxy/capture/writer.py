"""The capture sink: records every WebSocket of a run to a file, without slowing the relay.

The relay calls ``handshake``, ``frame`` and ``close`` on the event loop. They only append to a
bounded in-memory queue; a writer thread takes whatever is queued, encodes it (JSON, base64),
writes it and flushes the file once per batch. The event loop never waits for the disk and
never encodes a payload.

Durability: each batch is flushed to the OS (``write`` + ``flush``), not fsynced. Data that
reached the OS survives the proxy being SIGKILLed or crashing, which is what a capture must
survive; ``fsync`` only adds protection against power loss or a kernel crash, and costs a disk
round trip per batch (milliseconds on most disks), so it is opt-in: ``--capture-fsync``.
The thread writes a little behind the relay (it wakes as soon as a record is queued; typically
well under a millisecond, more under heavy load when it competes with the event loop for the
GIL): a SIGKILL loses only the records of that window, never what was already written.

Overload: the queue holds at most ``max_records`` records and ``max_bytes`` of payload (10,000
and 64 MiB by default; one record is always accepted into an empty queue, so a message larger
than the limit is still captured; the batch being written is outside the queue, so memory for
records peaks near twice the limit). When it is full, the frame is not recorded: a counter goes
up, the first loss is logged at WARNING at once, then a summary every few seconds and the total
at shutdown, and a ``lost`` record with the count goes into the file when the writer catches
up, so readers see the gap. Handshake and close records are never dropped (one each per
connection, small), so every connection in the file has its start and end.

HAR output (``-w FILE.har``): the records go to a JSONL journal beside it, ``FILE.har.jsonl``
(kept after the run), and the HAR is rewritten from the journal, atomically (a temporary file
then ``os.replace``), when the run ends, after a connection closes and every ``har_interval``
seconds while traffic flows, so a crash leaves the last good HAR plus a journal that
``wsproxy har FILE.har.jsonl -o FILE.har`` turns into a complete one. Rewriting reads the whole
journal, so on a large capture rewrites are spaced out (at least four times as long as the last
one took).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, BinaryIO

from wsproxy.capture import jsonl
from wsproxy.capture.records import iso_time
from wsproxy.model import Flow
from wsproxy.options import Options
from wsproxy.sansio.relay import FrameRecord

log = logging.getLogger("wsproxy")

MiB = 1024 * 1024
MAX_RECORDS = 10_000
MAX_BYTES = 64 * MiB
REPORT_INTERVAL = 5.0  # seconds between loss summaries
HAR_INTERVAL = 5.0  # seconds between HAR rewrites while traffic flows


def journal_path(path: Path) -> Path:
    """Where the JSONL journal of a HAR capture goes: ``FILE.har`` -> ``FILE.har.jsonl``."""
    return path.with_name(path.name + ".jsonl")


def _address(address: tuple[str, int] | Any) -> str | None:
    try:
        host, port = address[0], address[1]
    except (TypeError, IndexError):
        return None
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


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


# A queued item: a ready record (handshake, close) or a frame to encode in the thread.
_Item = dict[str, Any] | tuple[str, FrameRecord, float]


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
        har_interval: float = HAR_INTERVAL,
        report_interval: float = REPORT_INTERVAL,
        tool: str = "wsproxy",
    ) -> None:
        self.path = Path(path)
        self.har_path: Path | None = None
        self.journal = self.path
        if self.path.suffix.lower() == ".har":
            self.har_path = self.path
            self.journal = journal_path(self.path)
        self.filter = re.compile(filter) if filter else None
        self.fsync = fsync
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.har_interval = har_interval
        self.report_interval = report_interval
        self._file: BinaryIO = open(self.journal, "wb")  # noqa: SIM115 (closed by the thread)
        self._file.write(jsonl.dumps(jsonl.header(tool, filter)).encode() + b"\n")
        self._file.flush()
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._queued_bytes = 0
        self._stopping = False
        self._finished = False
        self.lost = 0  # records not written because the queue was full
        self._lost_written = 0
        self._lost_reported = 0
        self.written = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="wsproxy-capture", daemon=True)
        self._thread.start()

    # -- the sink, called on the event loop ---------------------------------------------------

    def wants(self, flow: Flow) -> bool:
        return self.filter is None or self.filter.search(flow.request.url) is not None

    def handshake(self, flow: Flow) -> None:
        self._put(handshake_record(flow), 0, droppable=False)

    def frame(self, flow: Flow, record: FrameRecord, timestamp: float) -> None:
        size = len(record.payload) + (len(record.original) if record.original else 0)
        self._put((flow.id, record, timestamp), size, droppable=True)

    def close(self, flow: Flow) -> None:
        self._put(close_record(flow), 0, droppable=False)

    def _put(self, item: _Item, size: int, *, droppable: bool) -> None:
        with self._cond:
            if self._stopping:
                return
            queue = self._queue
            if (
                droppable
                and queue
                and (len(queue) >= self.max_records or self._queued_bytes + size > self.max_bytes)
            ):
                self.lost += 1
                if self.lost == 1:
                    log.warning(
                        "capture: the writer cannot keep up with the traffic; frames are NOT "
                        "being recorded to %s (counted; a 'lost' record marks the gap)",
                        self.journal,
                    )
                return
            queue.append(item)
            self._queued_bytes += size
            if len(queue) == 1:
                self._cond.notify()

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
                    self._queued_bytes = 0
                    lost = self.lost
                    stopping = self._stopping
                had = bool(batch)
                closed = self._write_batch(batch)
                if lost > self._lost_written:
                    self._write_line(jsonl.lost(lost - self._lost_written, lost))
                    self._lost_written = lost
                if had or lost:
                    self._file.flush()
                    if self.fsync:
                        os.fsync(self._file.fileno())
                har_dirty = har_dirty or had
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
            self.error = error
            log.error("capture: writing %s failed, capture stopped: %s", self.journal, error)
            with self._cond:
                self._stopping = True
                self._queue.clear()
        finally:
            self._file.close()

    def _write_batch(self, batch: deque[_Item]) -> bool:
        """Encode and write ``batch``; True if it held a close record.

        Each record is written as it is encoded (the file object buffers small ones), so a
        batch of large frames never sits in memory twice.
        """
        closed = False
        write = self._file.write
        while batch:
            item = batch.popleft()
            if isinstance(item, dict):
                closed = closed or item["type"] == "close"
                write(jsonl.dumps(item).encode("utf-8") + b"\n")
            else:
                conn, r, ts = item
                for part in jsonl.frame_line(
                    conn,
                    ts,
                    r.side.value,
                    r.opcode,
                    r.fin,
                    r.rsv,
                    r.length,
                    r.payload,
                    r.compressed,
                    r.message_opcode,
                    r.verdict,
                    r.by,
                    r.original,
                ):
                    write(part)
            self.written += 1
        return closed

    def _write_line(self, obj: dict[str, Any]) -> None:
        self._file.write(jsonl.dumps(obj).encode("utf-8") + b"\n")

    def _write_har(self) -> None:
        from wsproxy.capture.har import journal_to_har

        assert self.har_path is not None
        try:
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
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        if self.har_path is not None and self.error is None:
            self._write_har()
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


def open_capture(options: Options) -> CaptureWriter | None:
    """The run's capture writer from ``Options`` (``-w``), or None without one."""
    if options.capture_path is None:
        return None
    writer = CaptureWriter(
        options.capture_path, filter=options.capture_filter, fsync=options.capture_fsync
    )
    where = f"{writer.har_path} (journal {writer.journal})" if writer.har_path else writer.journal
    log.warning("capturing WebSockets to %s", where)
    return writer
