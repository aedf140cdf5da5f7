"""What a capture writer offers the relay's shell (``proxy/session.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from wsproxy.model import Flow
from wsproxy.sansio.records import FrameRecord


class CaptureSink(Protocol):
    """Where a capture writer gets a WebSocket's traffic; the shell stamps each record."""

    def handshake(self, flow: Flow) -> None: ...

    def frame(self, flow: Flow, record: FrameRecord, timestamp: float) -> None: ...

    def close(self, flow: Flow) -> None: ...

    def sync(self) -> None:
        """Write what was recorded so far: called before the frames go out (write-ahead)."""

    def congested(self, resume: Callable[[], None]) -> bool:
        """Whether the writer is behind; ``resume`` is then called (from any thread) once it
        caught up."""
