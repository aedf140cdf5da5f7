"""RFC 6455 4.1's one-CONNECTING rule: one opening handshake per (client, host, port) at a time.

Waiting for a turn is not a failure: a client waits as long as it keeps its connection open
(the handshake timeout starts when its turn comes), so forty programs behind 127.0.0.1 opening
WebSockets to one slow server all connect, one after the other. ``enabled=False``
(``--parallel-handshakes``) lets them all go at once, for load tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field


class ClientGone(Exception):
    """The client closed its connection while it waited for its turn."""


@dataclass
class _Queue:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holding or waiting


class HandshakeTurns:
    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._queues: dict[tuple[str, str, int], _Queue] = {}

    @property
    def active(self) -> int:
        """How many (client, host, port) keys have a handshake holding or waiting for a turn."""
        return len(self._queues)

    @contextlib.asynccontextmanager
    async def turn(
        self, key: tuple[str, str, int], client_gone: Awaitable[None]
    ) -> AsyncIterator[None]:
        """Hold the turn for ``key``; raises ClientGone if ``client_gone`` completes first."""
        if not self.enabled:
            yield
            return
        queue = self._queues.setdefault(key, _Queue())
        queue.users += 1
        try:
            if queue.lock.locked():
                await self._wait(queue.lock, client_gone)
            else:
                await queue.lock.acquire()
            try:
                yield
            finally:
                queue.lock.release()
        finally:
            queue.users -= 1
            if queue.users == 0 and self._queues.get(key) is queue:
                del self._queues[key]

    @staticmethod
    async def _wait(lock: asyncio.Lock, client_gone: Awaitable[None]) -> None:
        acquire = asyncio.ensure_future(lock.acquire())
        gone = asyncio.ensure_future(client_gone)
        try:
            await asyncio.wait({acquire, gone}, return_when=asyncio.FIRST_COMPLETED)
            if gone.done():
                raise ClientGone
        except BaseException:
            if not acquire.done():
                acquire.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await acquire
            if acquire.done() and not acquire.cancelled():
                lock.release()  # won the turn just as we gave up: pass it on
            raise
