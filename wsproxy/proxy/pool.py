"""Idle upstream connections kept for the next plain HTTP request to the same server.

A browser opens a handful of connections per server and sends request after request on each;
without a pool the proxy would open one upstream connection per request instead. Connections
are keyed by the ``Upstream`` value (scheme, host, port and whatever else names where a
connection leads), so two requests share one only if they would have opened the same one.
Whether a connection may come back after its exchange is ``wsproxy.sansio.persistence``'s
decision; this module only keeps, checks and closes.

Bounds (memory and file descriptors): at most ``max_per_host`` idle connections per key (6,
as browsers keep per server) and ``max_idle`` in all (100, Go's ``http.Transport`` default);
the oldest one goes when a new one would pass either. Each is closed after ``idle_timeout``
seconds unused (30: under the keep-alive of nginx (75 s) and aiohttp (75 s), so the proxy
usually lets go first). While idle a connection is watched: an EOF, a reset or an unsolicited
byte from the server removes and closes it at once, so ``acquire`` rarely hands out a stale
one; the few that close in flight are for the relay's retry (see ``persistence``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from wsproxy.proxy.peer import Peer
from wsproxy.proxy.upstream import Upstream

__all__ = ["UpstreamPool"]

log = logging.getLogger("wsproxy")

OpenUpstream = Callable[[Upstream], Awaitable[Peer]]


@dataclass(eq=False)
class _Idle:
    key: Upstream
    peer: Peer
    timer: asyncio.TimerHandle | None = None


def _usable(peer: Peer) -> bool:
    """Open both ways, nothing unread, no error: the server is waiting for a request."""
    transport = peer.transport
    return (
        transport is not None
        and not transport.is_closing()
        and not peer.ended.done()
        and peer.error is None
        and not peer.buffered
        and not peer.reading_paused
    )


class UpstreamPool:
    """Hands out upstream connections, reusing idle ones; ``open_upstream`` opens new ones."""

    def __init__(
        self,
        open_upstream: OpenUpstream,
        *,
        max_per_host: int,
        max_idle: int,
        idle_timeout: float,
    ) -> None:
        self._open = open_upstream
        self.max_per_host = max_per_host
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._by_key: dict[Upstream, list[_Idle]] = {}  # oldest first
        self._order: dict[_Idle, None] = {}  # every idle connection, oldest first
        self._closed = False

    @property
    def idle(self) -> int:
        """How many connections wait in the pool."""
        return len(self._order)

    async def acquire(self, upstream: Upstream) -> tuple[Peer, bool]:
        """A connection to ``upstream`` and whether it was reused (an idle one, the most
        recently used first: the least likely to have been closed by its server)."""
        entries = self._by_key.get(upstream)
        while entries:
            entry = entries[-1]
            self._remove(entry)
            if _usable(entry.peer):
                log.debug("reusing a kept-alive connection to %s", upstream.authority)
                return entry.peer, True
            entry.peer.close()
            entries = self._by_key.get(upstream)
        return await self.open(upstream), False

    async def open(self, upstream: Upstream) -> Peer:
        """A new connection, never an idle one (for a retry)."""
        return await self._open(upstream)

    def release(self, upstream: Upstream, peer: Peer) -> None:
        """Keep ``peer`` for the next request to ``upstream`` (its exchange left it
        reusable), or close it if the pool is full of newer ones, off, or shut."""
        if self._closed or self.max_per_host <= 0 or self.max_idle <= 0 or not _usable(peer):
            peer.close()
            return
        entry = _Idle(upstream, peer)
        self._by_key.setdefault(upstream, []).append(entry)
        self._order[entry] = None
        peer.on_data = lambda _data: self._discard(entry, "the server sent data unasked")
        peer.on_eof = lambda _reason: self._discard(entry, "the server closed it")
        entry.timer = asyncio.get_running_loop().call_later(
            self.idle_timeout, self._discard, entry, f"idle for {self.idle_timeout:g} s"
        )
        siblings = self._by_key[upstream]
        if len(siblings) > self.max_per_host:
            self._discard(siblings[0], f"more than {self.max_per_host} idle for this server")
        if len(self._order) > self.max_idle:
            self._discard(next(iter(self._order)), f"more than {self.max_idle} idle in all")

    def close(self) -> None:
        """Close every idle connection; from now on released ones are closed too."""
        self._closed = True
        for entry in list(self._order):
            self._discard(entry, "shutting down")

    def _discard(self, entry: _Idle, why: str) -> None:
        if entry not in self._order:
            return
        self._remove(entry)
        log.debug("closing an idle connection to %s: %s", entry.key.authority, why)
        entry.peer.close()

    def _remove(self, entry: _Idle) -> None:
        """Out of the pool, watched no more (the caller closes it or uses it)."""
        del self._order[entry]
        siblings = self._by_key[entry.key]
        siblings.remove(entry)
        if not siblings:
            del self._by_key[entry.key]
        if entry.timer is not None:
            entry.timer.cancel()
        entry.peer.on_data = None
        entry.peer.on_eof = None
