"""A deadline that moves whenever data moves: the proxy's notion of "idle".

One timer per exchange instead of one per read: every copy loop calls ``touch`` when bytes
move (either way), and ``expired`` completes once nothing moved for ``seconds``. ``None`` or
0 means never, as ``--idle-timeout 0`` promises.
"""

from __future__ import annotations

import asyncio


class Watchdog:
    def __init__(self, seconds: float | None) -> None:
        self._loop = asyncio.get_running_loop()
        self.expired: asyncio.Future[None] = self._loop.create_future()
        self.seconds: float | None = None
        self._last = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self.set_timeout(seconds)

    def set_timeout(self, seconds: float | None) -> None:
        """Start counting ``seconds`` of silence from now (``None``/0: stop counting)."""
        self.seconds = seconds or None
        self.touch()
        self._arm()

    def touch(self) -> None:
        self._last = self._loop.time()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        self.cancel()
        if self.seconds is not None and not self.expired.done():
            self._timer = self._loop.call_at(self._last + self.seconds, self._check)

    def _check(self) -> None:
        self._timer = None
        assert self.seconds is not None
        if self._loop.time() - self._last >= self.seconds:
            self.expired.set_result(None)
        else:
            self._arm()
