"""``Tee``: the web UI's sink beside the run's own capture, each record handed to both."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from wsproxy.model import Flow, HttpExchange
from wsproxy.sansio.records import FrameRecord


class UiSink(Protocol):
    """What ``Tee`` hands everything to: ``LiveState``, or a worker's bridge to it
    (``wsproxy.web.worker.BridgeSink``)."""

    def handshake(self, flow: Flow) -> None: ...

    def handshake_started(self, flow: Flow) -> None: ...

    def handshake_failed(self, flow: Flow, status: int | None, error: str) -> None: ...

    def frame(self, flow: Flow, record: FrameRecord, timestamp: float) -> None: ...

    def close(self, flow: Flow) -> None: ...

    def http(self, exchange: HttpExchange) -> None: ...


class Tee:
    """``LiveState`` (or a worker's bridge) beside the run's ``-w`` capture: the UI sees
    every connection, the capture only those it wants; only the capture can slow the relay
    (as it would alone)."""

    def __init__(self, live: UiSink, capture: Any) -> None:
        self.live = live
        self.capture = capture
        self._captured: set[str] = set()

    def wants(self, flow: Flow) -> bool:
        if self.capture.wants(flow):
            self._captured.add(flow.id)
        return True

    def handshake(self, flow: Flow) -> None:
        self.live.handshake(flow)
        if flow.id in self._captured:
            self.capture.handshake(flow)

    def handshake_started(self, flow: Flow) -> None:
        self.live.handshake_started(flow)

    def handshake_failed(self, flow: Flow, status: int | None, error: str) -> None:
        self.live.handshake_failed(flow, status, error)

    def frame(self, flow: Flow, record: FrameRecord, timestamp: float) -> None:
        self.live.frame(flow, record, timestamp)
        if flow.id in self._captured:
            self.capture.frame(flow, record, timestamp)

    def frames(self, flow: Flow, records: Sequence[FrameRecord], timestamp: float) -> None:
        for record in records:
            self.live.frame(flow, record, timestamp)
        if flow.id in self._captured:
            self.capture.frames(flow, records, timestamp)

    def close(self, flow: Flow) -> None:
        self.live.close(flow)
        if flow.id in self._captured:
            self._captured.discard(flow.id)
            self.capture.close(flow)

    def sync(self) -> None:
        self.capture.sync()

    def congested(self, resume: Callable[[], None]) -> bool:
        return bool(self.capture.congested(resume))

    def wants_http(
        self, url: str, method: str = "GET", headers: Sequence[tuple[str, str]] = ()
    ) -> bool:
        return True

    def http(self, exchange: HttpExchange) -> None:
        if self.capture.wants_http(exchange.url, exchange.method, exchange.request_headers):
            self.capture.http(exchange)
        self.live.http(exchange)

    async def aclose(self) -> None:
        await self.capture.aclose()
