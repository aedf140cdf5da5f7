"""CONNECT: a tunnel to one host and port, inside which the client speaks HTTP (TLS
intercepted when its first bytes are a ClientHello), or bytes copied unchanged both ways for
an ``--ignore-hosts`` match (or, with ``--allow-hosts``, for every host that does not match)."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wsproxy.options import Options
from wsproxy.proxy.peer import Peer
from wsproxy.proxy.pipe import pipe
from wsproxy.proxy.upstream import Upstream, via_next_proxy
from wsproxy.sansio.clienthello import Hello, Incomplete, Malformed, scan_client_hello
from wsproxy.sansio.targets import default_port, host_port
from wsproxy.tls.alerts import HandshakeFailureLog
from wsproxy.tls.handshakes import accept_client, is_client_hello
from wsproxy.tls.magic import MAGIC_HOST

if TYPE_CHECKING:
    from wsproxy.tls.ca import CertAuthority

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
        self._allow = [re.compile(pattern) for pattern in options.allow_hosts]
        self._tls_failures = HandshakeFailureLog(MAGIC_HOST)

    async def connect(self, peer: Peer, conn_id: str, host: str, port: int) -> None:
        """An HTTP CONNECT: 200, then whatever the client speaks inside the tunnel."""
        if log.isEnabledFor(logging.INFO):
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
        else is served as HTTP; a host not to intercept
        (``--ignore-hosts``, ``--allow-hosts``) is piped untouched.

        ``redirected`` (transparent mode): ``host`` is an address, so the ClientHello's SNI
        names the server: ``--ignore-hosts`` is matched on it too, and the upstream TLS
        connection goes to ``host`` under that name."""
        if not redirected and self.untouched(port, host):
            await self._pipe_to(peer, conn_id, host, port, established)
            return
        if established:
            peer.write(established)
        deadline = peer.deadline(self.options.handshake_timeout)
        first = await peer.read(deadline)
        if not first:
            return
        tls = is_client_hello(first)
        server_name = None
        if tls and redirected:
            server_name = await self._server_name(peer, conn_id, first, deadline)  # puts it back
        else:
            peer.unread(first)
        names = (host,) if server_name is None else (host, server_name)
        if redirected and self.untouched(port, *names):
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

    async def _pipe_to(
        self,
        peer: Peer,
        conn_id: str,
        host: str,
        port: int,
        established: bytes,
        server_name: str | None = None,
    ) -> None:
        """Bytes copied unchanged between the client and ``host:port`` (a host not to
        intercept)."""
        upstream = await self._open(Upstream("tcp", host, port))
        where = host_port(host, port)
        sni = f" (SNI {server_name})" if server_name else ""
        why = "not matched by --allow-hosts" if self._allow else "--ignore-hosts"
        hop = via_next_proxy(self.options)
        log.info("[%s] %s%s: tunnelled untouched (%s)%s", conn_id, where, sni, why, hop)
        if established:
            peer.write(established)
        await self.pipe(peer, upstream)

    async def _server_name(
        self, peer: Peer, conn_id: str, first: bytes, deadline: float | None
    ) -> str | None:
        """The SNI host name of the ClientHello that starts with ``first`` (read whole, then
        put back for the TLS layer); None without one, or when the hello cannot be read (the
        TLS handshake then says what is wrong with it)."""
        hello = first
        while isinstance(scan := scan_client_hello(hello), Incomplete):
            more = await peer.read(deadline)
            if not more:
                break
            hello += more
        peer.unread(hello)
        if isinstance(scan, Malformed):
            log.debug("[%s] no server name read: %s", conn_id, scan.reason)
        return scan.server_name if isinstance(scan, Hello) else None

    def untouched(self, port: int, *names: str) -> bool:
        """Whether a connection to ``port`` on the server these names give (a CONNECT host;
        in transparent mode the original address and the SNI name) is piped as it is: one
        ``NAME:PORT`` matches ``--ignore-hosts``, or ``--allow-hosts`` is given and none
        matches it."""
        if not self._allow and not self._ignore:
            return False
        wheres = [f"{name}:{port}" for name in names]
        if self._allow:
            return not any(p.search(where) for p in self._allow for where in wheres)
        return any(p.search(where) for p in self._ignore for where in wheres)

    async def pipe(self, a: Peer, b: Peer) -> None:
        """Copy bytes both ways unchanged (hosts not intercepted), until both end."""
        await pipe(a, b, self.options.close_timeout)
