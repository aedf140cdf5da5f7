"""The proxy: wires listening, the request loop, tunnels, upstream connections, plain HTTP and
WebSocket sessions together, and shuts them down.

Each job has its module: ``listener`` (accept, admission, what ended a connection),
``request_loop`` (the HTTP phase and routing), ``tunnel`` (CONNECT), ``socks`` (SOCKS5 mode),
``upstream`` (connections to servers), ``http_relay`` (plain HTTP) and ``websocket`` (the
opening handshake and the session). All protocol decisions come from ``wsproxy.sansio``;
these modules only do the I/O.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import TYPE_CHECKING, Any

from wsproxy.exceptions import HttpError, WsproxyError
from wsproxy.modes import Regular, Reverse, Socks5, Transparent, UpstreamProxy
from wsproxy.options import Options
from wsproxy.plugins import PluginChain
from wsproxy.proxy.access import AccessPolicy
from wsproxy.proxy.http_relay import PlainHttp
from wsproxy.proxy.listener import Listener
from wsproxy.proxy.peer import Peer
from wsproxy.proxy.pool import UpstreamPool
from wsproxy.proxy.request_loop import RequestLoop
from wsproxy.proxy.session import WebSocketSession
from wsproxy.proxy.turns import HandshakeTurns
from wsproxy.proxy.upstream import Connector, Upstream
from wsproxy.proxy.websocket import Capture, WebSockets
from wsproxy.sansio.http11 import Limits
from wsproxy.sansio.targets import host_port

if TYPE_CHECKING:
    from wsproxy.metrics import Metrics
    from wsproxy.proxy.socks import HandOver, Socks5Front
    from wsproxy.proxy.transparent import Redirected
    from wsproxy.tls.ca import CertAuthority

__all__ = ["BindError", "Capture", "Front", "ProxyServer", "Upstream", "WsproxyError"]


class Front:
    """One listener and what serves its connections: the listener's mode decides how a
    connection's first bytes are read (an HTTP request, a SOCKS greeting, a redirected
    connection), its options where its upstream connections go."""

    def __init__(
        self,
        options: Options,
        server: ProxyServer,
        access: AccessPolicy,
    ) -> None:
        self.options = options
        socks = isinstance(options.mode, Socks5)
        self.listener = Listener(
            options,
            access,
            self._serve,
            handlers=server.handlers,
            per_client=server.per_client,
            ids=server.connection_ids,
            http_refusals=not socks,  # a SOCKS5 client reads a SOCKS reply, not HTTP
            metrics=server.metrics,
        )
        self.upstreams = Connector(options, server.addresses)
        # In a SOCKS5 tunnel the first request takes the connection its CONNECT opened. SOCKS
        # and transparent mode are loaded by their own listeners only (a lean start).
        handover: HandOver | None = None
        open_upstream = self.upstreams.open
        if socks:
            from wsproxy.proxy.socks import HandOver

            handover = HandOver(self.upstreams)
            open_upstream = handover.open
        # Plain HTTP reuses upstream connections; WebSockets and tunnels open their own.
        self.pool = UpstreamPool(
            open_upstream,
            max_per_host=options.pool_max_per_host,
            max_idle=options.pool_max_idle,
            idle_timeout=options.pool_idle_timeout,
        )
        self.plain = PlainHttp(options, server.limits, self.pool, server.via, None)
        self.websockets = WebSockets(
            options,
            limits=server.limits,
            via=server.via,
            open_upstream=open_upstream,
            plain=self.plain,
            turns=server.turns,
            chain=server.chain,
            capture=None,
            metrics=server.metrics,
        )
        self.requests = RequestLoop(
            options,
            ca=server.ca,
            limits=server.limits,
            via=server.via,
            access=access,
            open_upstream=open_upstream,
            plain=self.plain,
            websockets=self.websockets,
        )
        self.socks: Socks5Front | None = None
        self.redirected: Redirected | None = None
        if handover is not None:
            from wsproxy.proxy.socks import Socks5Front

            tunnels = self.requests.tunnels
            self.socks = Socks5Front(options, access, tunnels, handover, server.addresses)
        elif isinstance(options.mode, Transparent):
            from wsproxy.proxy.transparent import Redirected

            self.redirected = Redirected(options, self.requests.tunnels, server.addresses)

    def where(self) -> str:
        """The listening address as a log line names it."""
        return host_port(self.options.listen_host, self.listener.port)

    async def _serve(self, peer: Peer, conn_id: str) -> None:
        mode = self.options.mode
        if isinstance(mode, Regular | Reverse | UpstreamProxy):
            await self.requests.serve(peer, conn_id)
        elif self.socks is not None:
            await self.socks.serve(peer, conn_id)
        elif self.redirected is not None:
            await self.redirected.serve(peer, conn_id)
        else:
            raise HttpError(501, f"{mode} mode is not built yet")


class ProxyServer:
    """Listens on every address of the run, and runs one handler task per client connection."""

    def __init__(
        self,
        options: Options,
        ca: CertAuthority | None = None,
        chain: PluginChain | None = None,
        capture: Capture | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.options = options
        self.metrics = metrics
        self.ca = ca
        self.chain = chain
        self.limits = Limits(
            max_line=options.max_request_line,
            max_head_size=options.max_head_size,
            max_headers=options.max_headers,
        )
        self.turns = HandshakeTurns(enabled=not options.parallel_handshakes)
        # This process's Via pseudonym (RFC 9110 7.6.3): random, so only its own loops match.
        self.via = f"wsproxy-{os.urandom(4).hex()}"
        # Admission counts every listener's connections together.
        self.handlers: set[asyncio.Task[None]] = set()
        self.per_client: dict[str, int] = {}
        self.connection_ids = itertools.count(1)
        access = AccessPolicy(options.allow_clients, options.proxyauth)
        self.fronts = [
            Front(options.for_listen(listen), self, access) for listen in options.all_listens()
        ]
        self.capture = capture

    def addresses(self) -> list[Any]:
        """Every listening socket's address (an upstream connection reaching one loops)."""
        return [address for front in self.fronts for address in front.listener.addresses()]

    @property
    def sessions(self) -> set[WebSocketSession]:
        """The open WebSocket sessions."""
        return set().union(*(front.websockets.sessions for front in self.fronts))

    @property
    def _handlers(self) -> set[asyncio.Task[None]]:
        return self.handlers

    @property
    def _per_client(self) -> dict[str, int]:
        return self.per_client

    @property
    def capture_writers(self) -> object:
        return self.metrics.capture if self.metrics is not None else None

    @capture_writers.setter
    def capture_writers(self, writers: object) -> None:
        """The run's capture writer(s) as opened (before a companion wraps them): the
        metrics read their backlog and losses."""
        if self.metrics is not None:
            self.metrics.capture = writers

    @property
    def capture(self) -> Capture | None:
        return self._capture

    @capture.setter
    def capture(self, capture: Capture | None) -> None:
        """The run's capture, for connections accepted from now on (set between ``bind`` and
        ``start``: captures are opened only once the port is ours, so a taken port leaves an
        existing capture file as it was)."""
        self._capture = capture
        for front in self.fronts:
            front.plain.capture = capture
            front.websockets.capture = capture

    async def bind(self) -> None:
        """Listen on every address without accepting yet; a ``BindError`` names the one that
        could not be had (the others are closed again)."""
        for front in self.fronts:
            try:
                await front.listener.bind()
            except OSError as error:
                self.close_listeners()
                where = host_port(front.options.listen_host, front.options.listen_port)
                raise BindError(where, str(front.options.mode), error) from None

    async def start(self) -> None:
        """Accept connections (binding first unless ``bind`` did)."""
        await self.bind()
        for front in self.fronts:
            await front.listener.start()

    @property
    def port(self) -> int:
        """The first listener's port (the one of a single-listener run)."""
        return self.fronts[0].listener.port

    def close_listeners(self) -> None:
        for front in self.fronts:
            front.listener.close()

    def close_pools(self) -> None:
        for front in self.fronts:
            front.pool.close()

    async def shutdown(self) -> None:
        """Stop listening; every open WebSocket gets close 1001 on both sides; idle upstream
        connections are closed."""
        self.close_listeners()
        self.close_pools()
        sessions = self.sessions
        for session in list(sessions):
            session.shutdown(1001, "proxy shutting down")
        if sessions:
            await asyncio.wait(
                [asyncio.ensure_future(s.run()) for s in sessions],
                timeout=self.options.close_timeout + 1,
            )
        await self.fronts[0].listener.cancel_handlers(timeout=2)
        self.close_pools()  # what exchanges that ended meanwhile released


class BindError(OSError):
    """A listener's address could not be had."""

    def __init__(self, where: str, mode: str, error: OSError) -> None:
        super().__init__(error.errno, error.strerror or str(error))
        self.where = where
        self.mode = mode
        self.error = error
