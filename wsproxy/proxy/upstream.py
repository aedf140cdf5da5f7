"""Connections to upstream servers: TCP with a timeout, TLS when the scheme says so, and a
refusal of any connection that would reach this proxy's own listener (a loop)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wsproxy.exceptions import HttpError, UpstreamError
from wsproxy.options import Options
from wsproxy.proxy.peer import Peer
from wsproxy.sansio.loops import reaches_own_listener
from wsproxy.sansio.targets import format_authority, host_port
from wsproxy.tls import upstream_context
from wsproxy.tls.handshakes import connect_upstream

__all__ = ["Connector", "Upstream"]


@dataclass(frozen=True)
class Upstream:
    """Where a request goes: scheme decides TLS, host and port the TCP connection.

    ``name`` is the server's name when ``host`` is only its address (a redirected connection
    goes to the address the client connected to, under the name its SNI or Host gave): TLS
    sends it as SNI and checks the certificate against it, and the Host header carries it.
    None means ``host`` is the name too (every mode but transparent).
    """

    scheme: str
    host: str
    port: int
    name: str | None = None

    @property
    def tls(self) -> bool:
        return self.scheme in ("https", "wss")

    @property
    def authority(self) -> str:
        return format_authority(self.server_name, self.port, self.scheme)

    @property
    def server_name(self) -> str:
        """The name TLS verifies and Host carries: ``name``, else ``host``."""
        return self.name or self.host


class Connector:
    """Opens upstream connections; ``listening`` names the proxy's own listening sockets."""

    def __init__(self, options: Options, listening: Callable[[], list[Any]]) -> None:
        self.options = options
        self._listening = listening
        self._ssl: ssl.SSLContext | None = None

    async def open(self, upstream: Upstream) -> Peer:
        """A connected peer (TLS done when ``upstream.tls``); UpstreamError when it fails."""
        loop = asyncio.get_running_loop()
        where = host_port(upstream.host, upstream.port)
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                _, peer = await loop.create_connection(Peer, upstream.host, upstream.port)
        except TimeoutError:
            raise UpstreamError(f"timed out connecting to {where}", 504) from None
        except OSError as error:
            reason = error.strerror or str(error)
            raise UpstreamError(f"cannot connect to {where}: {reason}", 502) from None
        self._refuse_own_address(peer, where)
        if upstream.tls:
            await self.secure(peer, upstream)
        return peer

    async def secure(self, peer: Peer, upstream: Upstream) -> None:
        """TLS with ``upstream`` over ``peer``, a TCP connection to it already up (this
        method's, or the one a SOCKS5 CONNECT opened before its reply)."""
        await connect_upstream(
            peer,
            self._context(),
            upstream.server_name,
            where=host_port(upstream.host, upstream.port),
            timeout=self.options.handshake_timeout,
        )

    def _refuse_own_address(self, peer: Peer, where: str) -> None:
        """A connection that reached this proxy's own listener would loop: 508 at once."""
        assert peer.transport is not None
        remote = peer.transport.get_extra_info("peername")
        local = peer.transport.get_extra_info("sockname")
        # IPv6 socket names are (host, port, flowinfo, scope_id): the check takes host and port.
        listening = [(str(name[0]), int(name[1])) for name in self._listening()]
        if remote and local and reaches_own_listener(remote[:2], local[:2], listening):
            peer.abort()
            raise HttpError(508, f"loop detected: {where} is this proxy's own listening address")

    def _context(self) -> ssl.SSLContext:
        """The upstream SSL context, built on first use (loading CA files takes time)."""
        if self._ssl is None:
            self._ssl = upstream_context(
                self.options.upstream_ca, insecure=self.options.ssl_insecure
            )
        return self._ssl
