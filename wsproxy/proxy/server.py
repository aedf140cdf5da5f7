"""The proxy: wires listening, the request loop, tunnels, upstream connections, plain HTTP and
WebSocket sessions together, and shuts them down.

Each job has its module: ``listener`` (accept, admission, what ended a connection),
``request_loop`` (the HTTP phase and routing), ``tunnel`` (CONNECT), ``upstream`` (connections
to servers), ``http_relay`` (plain HTTP) and ``websocket`` (the opening handshake and the
session). All protocol decisions come from ``wsproxy.sansio``; these modules only do the I/O.
"""

from __future__ import annotations

import asyncio
import secrets

from wsproxy.exceptions import WsproxyError
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
from wsproxy.tls import CertAuthority

__all__ = ["Capture", "ProxyServer", "Upstream", "WsproxyError"]


class ProxyServer:
    """Listens, and runs one handler task per client connection."""

    def __init__(
        self,
        options: Options,
        ca: CertAuthority | None = None,
        chain: PluginChain | None = None,
        capture: Capture | None = None,
    ) -> None:
        self.options = options
        self.ca = ca
        self.chain = chain
        self.limits = Limits(
            max_line=options.max_request_line,
            max_head_size=options.max_head_size,
            max_headers=options.max_headers,
        )
        self.turns = HandshakeTurns(enabled=not options.parallel_handshakes)
        # This process's Via pseudonym (RFC 9110 7.6.3): random, so only its own loops match.
        self.via = f"wsproxy-{secrets.token_hex(4)}"
        access = AccessPolicy(options.allow_clients, options.proxyauth)
        self.listener = Listener(options, access, self._serve)
        self.upstreams = Connector(options, self.listener.addresses)
        # Plain HTTP reuses upstream connections; WebSockets and tunnels open their own.
        self.pool = UpstreamPool(
            self.upstreams.open,
            max_per_host=options.pool_max_per_host,
            max_idle=options.pool_max_idle,
            idle_timeout=options.pool_idle_timeout,
        )
        self.plain = PlainHttp(options, self.limits, self.pool, self.via, capture)
        self.websockets = WebSockets(
            options,
            limits=self.limits,
            via=self.via,
            open_upstream=self.upstreams.open,
            plain=self.plain,
            turns=self.turns,
            chain=chain,
            capture=capture,
        )
        self.requests = RequestLoop(
            options,
            ca=ca,
            limits=self.limits,
            via=self.via,
            access=access,
            open_upstream=self.upstreams.open,
            plain=self.plain,
            websockets=self.websockets,
        )

    @property
    def sessions(self) -> set[WebSocketSession]:
        """The open WebSocket sessions."""
        return self.websockets.sessions

    @property
    def _handlers(self) -> set[asyncio.Task[None]]:
        return self.listener.handlers

    @property
    def _per_client(self) -> dict[str, int]:
        return self.listener.per_client

    @property
    def capture(self) -> Capture | None:
        return self.websockets.capture

    @capture.setter
    def capture(self, capture: Capture | None) -> None:
        """The run's capture, for connections accepted from now on (set between ``bind`` and
        ``start``: captures are opened only once the port is ours, so a taken port leaves an
        existing capture file as it was)."""
        self.plain.capture = capture
        self.websockets.capture = capture

    async def bind(self) -> None:
        """Listen without accepting yet (raises OSError when the address cannot be had)."""
        await self.listener.bind()

    async def start(self) -> None:
        """Accept connections (binding first unless ``bind`` did)."""
        await self.listener.start()

    @property
    def port(self) -> int:
        return self.listener.port

    async def shutdown(self) -> None:
        """Stop listening; every open WebSocket gets close 1001 on both sides; idle upstream
        connections are closed."""
        self.listener.close()
        self.pool.close()
        for session in list(self.sessions):
            session.shutdown(1001, "proxy shutting down")
        if self.sessions:
            await asyncio.wait(
                [asyncio.ensure_future(s.run()) for s in self.sessions],
                timeout=self.options.close_timeout + 1,
            )
        await self.listener.cancel_handlers(timeout=2)
        self.pool.close()  # what exchanges that ended meanwhile released

    async def _serve(self, peer: Peer, conn_id: str) -> None:
        await self.requests.serve(peer, conn_id)
