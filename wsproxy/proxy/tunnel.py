"""CONNECT: a tunnel to one host and port, inside which the client speaks HTTP (TLS
intercepted when its first bytes are a ClientHello), or bytes copied unchanged both ways for
an ``--ignore-hosts`` match (or, with ``--allow-hosts``, for every host that does not match)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from wsproxy.options import Options
from wsproxy.proxy.peer import Peer
from wsproxy.proxy.pipe import pipe
from wsproxy.proxy.upstream import Upstream, via_next_proxy
from wsproxy.sansio.targets import default_port, host_port
from wsproxy.tls import MAGIC_HOST, CertAuthority
from wsproxy.tls.alerts import HandshakeFailureLog
from wsproxy.tls.handshakes import accept_client, is_client_hello

__all__ = ["ESTABLISHED", "Tunnel", "Tunnels"]

log = logging.getLogger("wsproxy")

ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


@dataclass(frozen=True)
class Tunnel:
    """A CONNECT tunnel: requests inside it go to this host and port."""

    host: str
    port: int
    tls: bool

    @property
    def default_port(self) -> int:
        """The port an origin-form request's Host without one means (RFC 7230 5.4)."""
        return default_port("https" if self.tls else "http")


# The request loop, run inside a tunnel.
Serve = Callable[[Peer, str, Tunnel], Awaitable[None]]
OpenUpstream = Callable[[Upstream], Awaitable[Peer]]


class Tunnels:
    """Answers CONNECT requests; ``serve`` is the request loop to run inside a tunnel."""

    def __init__(
        self,
        options: Options,
        ca: CertAuthority | None,
        open_upstream: OpenUpstream,
        serve: Serve,
    ) -> None:
        self.options = options
        self.ca = ca
        self._open = open_upstream
        self._serve = serve
        self._ignore = [re.compile(pattern) for pattern in options.ignore_hosts]
        self._allow = [re.compile(pattern) for pattern in options.allow_hosts]
        self._tls_failures = HandshakeFailureLog(MAGIC_HOST)

    async def connect(self, peer: Peer, conn_id: str, host: str, port: int) -> None:
        """An HTTP CONNECT: 200, then whatever the client speaks inside the tunnel."""
        log.info("[%s] %s CONNECT %s", conn_id, peer.address[0], host_port(host, port))
        await self.enter(peer, conn_id, host, port, established=ESTABLISHED)

    async def enter(
        self, peer: Peer, conn_id: str, host: str, port: int, *, established: bytes = b""
    ) -> None:
        """A connection bound for ``host:port`` (a CONNECT tunnel, a SOCKS5 CONNECT, a
        redirected connection): ``established`` is written first (the mode's answer, if it
        has one), then the client's first bytes decide: a ClientHello is intercepted, anything
        else is served as HTTP; a host not to intercept is piped untouched."""
        if self.untouched(host, port):
            log.info(
                "[%s] %s: tunnelled untouched%s",
                conn_id,
                host_port(host, port),
                via_next_proxy(self.options),
            )
            upstream = await self._open(Upstream("tcp", host, port))
            if established:
                peer.write(established)
            await self.pipe(peer, upstream)
            return
        if established:
            peer.write(established)
        async with asyncio.timeout(self.options.handshake_timeout):
            first = await peer.read()
        if not first:
            return
        peer.unread(first)
        if not is_client_hello(first):
            await self._serve(peer, conn_id, Tunnel(host, port, tls=False))
            return
        if self.ca is None:
            raise ConnectionResetError("TLS inside CONNECT but no CA is loaded")
        if await accept_client(
            peer,
            self.ca,
            host,
            timeout=self.options.handshake_timeout,
            failures=self._tls_failures,
            conn_id=conn_id,
        ):
            await self._serve(peer, conn_id, Tunnel(host, port, tls=True))

    def untouched(self, host: str, port: int) -> bool:
        """Whether a connection to ``host:port`` is piped as it is: it matches
        ``--ignore-hosts``, or ``--allow-hosts`` is given and it matches none of them."""
        where = f"{host}:{port}"
        if self._allow:
            return not any(pattern.search(where) for pattern in self._allow)
        return any(pattern.search(where) for pattern in self._ignore)

    async def pipe(self, a: Peer, b: Peer) -> None:
        """Copy bytes both ways unchanged (hosts not intercepted), until both end."""
        await pipe(a, b, self.options.close_timeout)
