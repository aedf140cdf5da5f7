"""RFC 6455 4.1's one-CONNECTING rule: one opening handshake per (client, host, port) at a time.

Waiting for a turn is not a failure: a client waits as long as it keeps its connection open
(the handshake timeout starts when its turn comes), so forty programs behind 127.0.0.1 opening
WebSockets to one slow server all connect, one after the other. ``enabled=False``
(``--parallel-handshakes``) lets them all go at once, for load tests.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class ClientGone(Exception):
    """The client closed its connection while it waited for its turn."""


Key = tuple[str, str, int]  # (client address, upstream host, upstream port)


class _Queue:
    """One key's turn: whether someone holds it, and who waits for it, first come first."""

    __slots__ = ("held", "waiters")

    def __init__(self) -> None:
        self.held = False
        self.waiters: deque[asyncio.Future[None]] = deque()


class HandshakeTurns:
    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._queues: dict[Key, _Queue] = {}

    @property
    def active(self) -> int:
        """How many (client, host, port) keys have a handshake holding or waiting for a turn."""
        return len(self._queues)

    def turn(self, key: Key, client_gone: asyncio.Future[None]) -> _Turn:
        """``async with`` it to hold the turn for ``key``; raises ClientGone if
        ``client_gone`` completes first."""
        return _Turn(self, key, client_gone)

    async def _take(self, key: Key, client_gone: asyncio.Future[None]) -> _Queue:
        """Wait for the turn of ``key``; its queue, to give the turn back to."""
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue()
        if not queue.held:
            queue.held = True
            return queue
        # Waiting costs one future and a callback: no task, no asyncio.wait.
        waiter = asyncio.get_running_loop().create_future()
        queue.waiters.append(waiter)

        def gone(_: asyncio.Future[None]) -> None:
            if not waiter.done():
                waiter.set_exception(ClientGone())

        client_gone.add_done_callback(gone)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give(key, queue)  # won the turn just as we gave up: pass it on
            elif waiter in queue.waiters:  # else ``_give`` passed over it already
                queue.waiters.remove(waiter)
            raise
        finally:
            client_gone.remove_done_callback(gone)
        return queue

    def _give(self, key: Key, queue: _Queue) -> None:
        """The holder is done: the turn goes to the first who still waits, or the key goes."""
        while queue.waiters:
            waiter = queue.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # held stays True: the turn passes on
                return
        queue.held = False
        if self._queues.get(key) is queue:
            del self._queues[key]


class _Turn:
    """``async with turns.turn(key, gone)``: the turn held inside the block."""

    __slots__ = ("_client_gone", "_key", "_queue", "_turns")

    def __init__(self, turns: HandshakeTurns, key: Key, client_gone: asyncio.Future[None]) -> None:
        self._turns = turns
        self._key = key
        self._client_gone = client_gone
        self._queue: _Queue | None = None  # while the turn is held

    async def __aenter__(self) -> None:
        if self._turns.enabled:
            self._queue = await self._turns._take(self._key, self._client_gone)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        queue, self._queue = self._queue, None
        if queue is not None:
            self._turns._give(self._key, queue)
