"""CONNECT: a tunnel to one host and port, inside which the client speaks HTTP (TLS
intercepted when its first bytes are a ClientHello), or bytes copied unchanged both ways for
an ``--ignore-hosts`` match."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from wsproxy.options import Options
from wsproxy.proxy.peer import Peer
from wsproxy.proxy.upstream import Upstream
from wsproxy.sansio.clienthello import Hello, Incomplete, Malformed, scan_client_hello
from wsproxy.sansio.targets import default_port, host_port
from wsproxy.tls import MAGIC_HOST, CertAuthority
from wsproxy.tls.alerts import HandshakeFailureLog
from wsproxy.tls.handshakes import accept_client, is_client_hello

__all__ = ["ESTABLISHED", "Tunnel", "Tunnels"]

log = logging.getLogger("wsproxy")

ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


@dataclass(frozen=True)
class Tunnel:
    """A CONNECT tunnel: requests inside it go to this host and port.

    A ``redirected`` one (transparent mode) was named by no one: ``host`` is the address the
    client connected to, and ``server_name`` the name its ClientHello asked for (SNI), if any.
    """

    host: str
    port: int
    tls: bool
    server_name: str | None = None
    redirected: bool = False

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
        self._tls_failures = HandshakeFailureLog(MAGIC_HOST)

    async def connect(self, peer: Peer, conn_id: str, host: str, port: int) -> None:
        """An HTTP CONNECT: 200, then whatever the client speaks inside the tunnel."""
        log.info("[%s] %s CONNECT %s", conn_id, peer.address[0], host_port(host, port))
        await self.enter(peer, conn_id, host, port, established=ESTABLISHED)

    async def enter(
        self,
        peer: Peer,
        conn_id: str,
        host: str,
        port: int,
        *,
        established: bytes = b"",
        redirected: bool = False,
    ) -> None:
        """A connection bound for ``host:port`` (a CONNECT tunnel, a SOCKS5 CONNECT, a
        redirected connection): ``established`` is written first (the mode's answer, if it
        has one), then the client's first bytes decide: a ClientHello is intercepted, anything
        else is served as HTTP; an ``--ignore-hosts`` match is piped untouched.

        ``redirected`` (transparent mode): ``host`` is an address, so the ClientHello's SNI
        names the server: ``--ignore-hosts`` is matched on it too, and the upstream TLS
        connection goes to ``host`` under that name."""
        if self._ignored(host, port):
            await self._pipe_to(peer, conn_id, host, port, established)
            return
        if established:
            peer.write(established)
        async with asyncio.timeout(self.options.handshake_timeout):
            first = await peer.read()
            if not first:
                return
            tls = is_client_hello(first)
            server_name = None
            if tls and redirected:
                server_name = await self._server_name(peer, conn_id, first)  # puts it back
            else:
                peer.unread(first)
        if server_name is not None and self._ignored(server_name, port):
            await self._pipe_to(peer, conn_id, host, port, b"", server_name)
            return
        if not tls:
            await self._serve(peer, conn_id, Tunnel(host, port, tls=False, redirected=redirected))
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
            tunnel = Tunnel(host, port, tls=True, server_name=server_name, redirected=redirected)
            await self._serve(peer, conn_id, tunnel)

    def _ignored(self, host: str, port: int) -> bool:
        return any(pattern.search(f"{host}:{port}") for pattern in self._ignore)

    async def _pipe_to(
        self,
        peer: Peer,
        conn_id: str,
        host: str,
        port: int,
        established: bytes,
        server_name: str | None = None,
    ) -> None:
        """Bytes copied unchanged between the client and ``host:port`` (``--ignore-hosts``)."""
        upstream = await self._open(Upstream("tcp", host, port))
        where = host_port(host, port)
        sni = f" (SNI {server_name})" if server_name else ""
        log.info("[%s] piping to %s%s untouched (--ignore-hosts)", conn_id, where, sni)
        if established:
            peer.write(established)
        await self.pipe(peer, upstream)

    async def _server_name(self, peer: Peer, conn_id: str, first: bytes) -> str | None:
        """The SNI host name of the ClientHello that starts with ``first`` (read whole, then
        put back for the TLS layer); None without one, or when the hello cannot be read (the
        TLS handshake then says what is wrong with it)."""
        hello = first
        while isinstance(scan := scan_client_hello(hello), Incomplete):
            more = await peer.read()
            if not more:
                break
            hello += more
        peer.unread(hello)
        if isinstance(scan, Malformed):
            log.debug("[%s] no server name read: %s", conn_id, scan.reason)
        return scan.server_name if isinstance(scan, Hello) else None

    async def pipe(self, a: Peer, b: Peer) -> None:
        """Copy bytes both ways unchanged (ignored hosts), with backpressure, until both end."""
        for src, dst in ((a, b), (b, a)):
            src.on_data = dst.write
            src.on_eof = lambda _reason, dst=dst: dst.write_eof()
            dst.on_pause_writing = src.pause_reading
            dst.on_resume_writing = src.resume_reading
            pending = src.take_buffer()
            if pending:
                dst.write(pending)
            if src.at_eof:
                dst.write_eof()
        await asyncio.wait([a.closed, b.closed], return_when=asyncio.FIRST_COMPLETED)
        await asyncio.wait([a.closed, b.closed], timeout=self.options.close_timeout)
        a.close()
        b.close()
