"""What a capture writer offers the relay's shell (``proxy/session.py``) and the plain HTTP
relay (``proxy/http_relay.py``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from wsproxy.model import Flow, HttpExchange
from wsproxy.sansio.records import FrameRecord


class CaptureSink(Protocol):
    """Where a capture writer gets a WebSocket's traffic; the shell stamps each record."""

    def handshake(self, flow: Flow) -> None: ...

    def frame(self, flow: Flow, record: FrameRecord, timestamp: float) -> None: ...

    def frames(self, flow: Flow, records: Sequence[FrameRecord], timestamp: float) -> None:
        """A run of frames recorded at one instant (one read's): ``frame`` for each, at the
        cost of one call."""

    def close(self, flow: Flow) -> None: ...

    def sync(self) -> None:
        """Write what was recorded so far: called before the frames go out (write-ahead)."""

    def congested(self, resume: Callable[[], None]) -> bool:
        """Whether the writer is behind; ``resume`` is then called (from any thread) once it
        caught up."""

    def wants_http(
        self, url: str, method: str = "GET", headers: Sequence[tuple[str, str]] = ()
    ) -> bool:
        """Whether this plain HTTP exchange is recorded (``--capture-http``, the filter)."""

    def http(self, exchange: HttpExchange) -> None:
        """One plain HTTP exchange, once it ended (called on the event loop)."""
