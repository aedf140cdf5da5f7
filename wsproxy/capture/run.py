"""The run's capture: one sink for the server from every ``-w`` of the command line."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from wsproxy.capture.formats import capture_format
from wsproxy.exceptions import StartupError, os_error_text
from wsproxy.model import Flow, HttpExchange
from wsproxy.options import Options
from wsproxy.sansio.relay import FrameRecord

if TYPE_CHECKING:
    from wsproxy.capture.writer import CaptureWriter

log = logging.getLogger("wsproxy")


class CaptureFanout:
    """Several capture writers (``-w a.jsonl -w b.har``) as one sink for the server.

    They share one filter (``open_capture`` gives each the run's ``--capture-filter``), so
    they all answer ``wants`` alike; each is asked, to pick a flow's frames for itself. A
    single ``-w`` uses its ``CaptureWriter`` directly: this loop only costs when there are
    several.
    """

    def __init__(self, writers: Sequence[CaptureWriter]) -> None:
        assert len({w.filter.text if w.filter else None for w in writers}) == 1
        self.writers = tuple(writers)

    def wants(self, flow: Flow) -> bool:
        answers = [writer.wants(flow) for writer in self.writers]
        return answers[0]

    def handshake(self, flow: Flow) -> None:
        for writer in self.writers:
            writer.handshake(flow)

    def frame(self, flow: Flow, record: FrameRecord, timestamp: float) -> None:
        for writer in self.writers:
            writer.frame(flow, record, timestamp)

    def frames(self, flow: Flow, records: Sequence[FrameRecord], timestamp: float) -> None:
        for writer in self.writers:
            writer.frames(flow, records, timestamp)

    def close(self, flow: Flow) -> None:
        for writer in self.writers:
            writer.close(flow)

    def wants_http(
        self, url: str, method: str = "GET", headers: Sequence[tuple[str, str]] = ()
    ) -> bool:
        return any(writer.wants_http(url, method, headers) for writer in self.writers)

    def http(self, exchange: HttpExchange) -> None:
        for writer in self.writers:  # --capture-http's default differs by format
            if writer.wants_http(exchange.url):
                writer.http(exchange)

    def sync(self) -> None:
        for writer in self.writers:
            writer.sync()

    def congested(self, resume: Callable[[], None]) -> bool:
        """Congested while any writer is; ``resume`` runs once the last of them caught up."""
        behind = [False]
        waiting = [0]
        lock = threading.Lock()

        def one_resumed() -> None:
            with lock:
                waiting[0] -= 1
                last = waiting[0] == 0 and behind[0]
            if last:
                resume()

        for writer in self.writers:
            with lock:
                waiting[0] += 1
            if not writer.congested(one_resumed):
                with lock:
                    waiting[0] -= 1
        with lock:
            behind[0] = waiting[0] > 0
        return behind[0]

    def finish(self) -> None:
        for writer in self.writers:
            writer.finish()

    async def aclose(self) -> None:
        import asyncio

        await asyncio.gather(*(writer.aclose() for writer in self.writers))


def capture_http(options: Options, path: Path) -> bool:
    """Whether ``-w path`` records plain HTTP: ``--capture-http`` / ``--no-capture-http``, else
    on for a HAR (a page session: DevTools shows every request) and off for JSONL (a WebSocket
    journal, kept small)."""
    if options.capture_http is not None:
        return options.capture_http
    return capture_format(path) == "har"


def open_capture(options: Options) -> CaptureWriter | CaptureFanout | None:
    """The run's capture sink from ``Options`` (``-w``, repeatable), or None without one.

    A file that cannot be created is a ``StartupError``; those opened before it are finished.
    The writers (and the filter language and decoders they use) are imported only for a run
    that captures.
    """
    if not options.capture_paths:
        return None
    from wsproxy.capture.writer import CaptureWriter

    writers: list[CaptureWriter] = []
    try:
        for path in options.capture_paths:
            try:
                writer = CaptureWriter(
                    path,
                    filter=options.capture_filter,
                    fsync=options.capture_fsync,
                    overflow=options.capture_overflow,
                    http=capture_http(options, path),
                )
            except OSError as error:
                target = error.filename or path  # FILE, or a HAR's or .mitm's journal
                raise StartupError(
                    f"cannot write the capture {target}: {os_error_text(error)}"
                ) from None
            writers.append(writer)
            where = writer.journal if writer.har_path is None else writer.har_path
            more = f" (journal {writer.journal})" if writer.har_path else ""
            what = "WebSockets and plain HTTP" if writer.capture_http else "WebSockets"
            log.warning("capturing %s to %s%s", what, where, more)
    except BaseException:
        for writer in writers:
            writer.finish()
        raise
    return writers[0] if len(writers) == 1 else CaptureFanout(writers)
