"""Connections to upstream servers: TCP with a timeout, TLS when the scheme says so, and a
refusal of any connection that would reach this proxy's own listener (a loop).

In upstream mode (``--mode upstream:http[s]://HOST:PORT``) every connection goes to the next
proxy instead (TLS to it for ``https://``, checked as an upstream server is): a tunnel through
its ``CONNECT`` for everything but plain ``http``, which it takes in absolute form
(``outgoing_request``). What to send and what its answers mean is ``wsproxy.sansio.chain``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wsproxy.exceptions import HttpError, UpstreamError, os_error_text
from wsproxy.modes import UpstreamProxy
from wsproxy.options import Options
from wsproxy.proxy.peer import Peer
from wsproxy.sansio.chain import ConnectHandshake, Refused, forwarded_request, refused_forward
from wsproxy.sansio.http11 import Limits, Request, Response
from wsproxy.sansio.loops import reaches_own_listener
from wsproxy.sansio.targets import format_authority, host_port
from wsproxy.tls.contexts import describe_verify_error, upstream_context
from wsproxy.tls.handshakes import connect_upstream

__all__ = [
    "Connector",
    "Upstream",
    "check_forwarded_answer",
    "next_proxy",
    "outgoing_request",
    "via_next_proxy",
]

log = logging.getLogger("wsproxy")


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


def next_proxy(options: Options) -> UpstreamProxy | None:
    """The proxy this listener's upstream connections go through, or None (direct)."""
    mode = options.mode
    return mode if isinstance(mode, UpstreamProxy) else None


def via_next_proxy(options: Options) -> str:
    """`` via upstream proxy HOST:PORT`` for a log line, or "" for direct connections."""
    chain = next_proxy(options)
    return "" if chain is None else f" via upstream proxy {host_port(chain.host, chain.port)}"


def _absolute_form(options: Options, upstream: Upstream) -> UpstreamProxy | None:
    """The next proxy when ``upstream`` is reached by sending it absolute-form requests
    (plain http; everything else goes through a CONNECT tunnel)."""
    chain = next_proxy(options)
    return chain if chain is not None and upstream.scheme == "http" else None


def outgoing_request(options: Options, upstream: Upstream, req: Request) -> Request:
    """The head to write on the connection ``Connector.open`` made for ``upstream``: as it is
    for a server or a tunnel, in absolute form (with ``--upstream-auth``) for a next proxy."""
    if _absolute_form(options, upstream) is None:
        return req
    return forwarded_request(
        req, upstream.scheme, upstream.host, upstream.port, credentials=options.upstream_auth
    )


def check_forwarded_answer(options: Options, upstream: Upstream, resp: Response) -> None:
    """UpstreamError when the next proxy itself refused an absolute-form request (407)."""
    chain = _absolute_form(options, upstream)
    if chain is None:
        return
    refused = refused_forward(
        resp,
        host_port(chain.host, chain.port),
        sent_credentials=options.upstream_auth is not None,
    )
    if refused is not None:
        raise UpstreamError(refused.reason, refused.status)


class _TlsTransportPeer(Peer):
    """A peer over asyncio's TLS transport (to an ``https://`` next proxy): there a half-close
    cannot be kept open, and asyncio warns when the protocol asks for it."""

    def eof_received(self) -> bool:
        super().eof_received()
        return False


class Connector:
    """Opens upstream connections; ``listening`` names the proxy's own listening sockets."""

    def __init__(self, options: Options, listening: Callable[[], list[Any]]) -> None:
        self.options = options
        self._listening = listening
        self._ssl: ssl.SSLContext | None = None
        self._limits = Limits(
            max_line=options.max_request_line,
            max_head_size=options.max_head_size,
            max_headers=options.max_headers,
        )

    async def open(self, upstream: Upstream) -> Peer:
        """A connected peer (TLS done when ``upstream.tls``); UpstreamError when it fails."""
        where = host_port(upstream.host, upstream.port)
        chain = next_proxy(self.options)
        if chain is None:
            peer = await self._connect(upstream.host, upstream.port, where)
        else:
            peer = await self._open_next_proxy(chain)
            if _absolute_form(self.options, upstream) is not None:
                return peer  # plain http: the requests say where (outgoing_request)
            await self._tunnel(peer, chain, upstream)
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

    async def _connect(self, host: str, port: int, where: str, factory: type[Peer] = Peer) -> Peer:
        """TCP to ``host:port`` (``where`` names it in errors), refused when it loops."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                _, peer = await loop.create_connection(factory, host, port)
        except TimeoutError:
            raise UpstreamError(f"timed out connecting to {where}", 504) from None
        except OSError as error:  # "Connection refused", not asyncio's "Connect call failed"
            raise UpstreamError(f"cannot connect to {where}: {os_error_text(error)}", 502) from None
        self._refuse_own_address(peer, where)
        return peer

    async def _open_next_proxy(self, chain: UpstreamProxy) -> Peer:
        """A connection to the next proxy, TLS to it done for ``upstream:https://``."""
        where = f"upstream proxy {host_port(chain.host, chain.port)}"
        peer = await self._connect(
            chain.host, chain.port, where, _TlsTransportPeer if chain.tls else Peer
        )
        if chain.tls:
            await self._tls_to_next_proxy(peer, chain.host, where)
        return peer

    async def _tls_to_next_proxy(self, peer: Peer, host: str, where: str) -> None:
        """TLS to the next proxy by asyncio's own TLS transport, so that the peer's TLS layer
        stays free for the origin's TLS inside the tunnel (wss and https through it)."""
        assert peer.transport is not None
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                peer.transport,
                peer,
                self._context(),
                server_hostname=host,
                ssl_handshake_timeout=self.options.handshake_timeout,
            )
        except TimeoutError:
            peer.abort()
            raise UpstreamError(f"TLS handshake with {where} timed out", 504) from None
        except (ssl.SSLError, ConnectionError) as error:
            peer.abort()
            raise UpstreamError(
                f"TLS with {where} failed: {describe_verify_error(error)}", 502, "tls"
            ) from None
        if transport is None:  # the connection closed during the handshake
            peer.abort()
            raise UpstreamError(
                f"{where} closed the connection during the TLS handshake", 502, "tls"
            )
        peer.transport = transport

    async def _tunnel(self, peer: Peer, chain: UpstreamProxy, upstream: Upstream) -> None:
        """``CONNECT upstream`` through the next proxy; UpstreamError when it refuses."""
        handshake = ConnectHandshake(
            host_port(chain.host, chain.port),
            upstream.host,
            upstream.port,
            credentials=self.options.upstream_auth,
            limits=self._limits,
        )
        peer.write(handshake.request())
        try:
            async with asyncio.timeout(self.options.handshake_timeout):
                outcome = None
                while outcome is None:
                    data = await peer.read()
                    outcome = handshake.receive(data) if data else handshake.receive_eof()
        except TimeoutError:
            peer.abort()
            raise UpstreamError(
                f"upstream proxy {handshake.proxy} did not answer CONNECT {handshake.target} "
                "in time",
                504,
            ) from None
        except OSError as error:  # a reset, or its TLS failed
            peer.abort()
            raise UpstreamError(
                f"upstream proxy {handshake.proxy} failed during CONNECT {handshake.target}: "
                f"{error.strerror or error}",
                502,
            ) from None
        if isinstance(outcome, Refused):
            peer.abort()
            raise UpstreamError(outcome.reason, outcome.status)
        peer.unread(outcome.leftover)
        log.debug("tunnel to %s open via upstream proxy %s", handshake.target, handshake.proxy)

    def _refuse_own_address(self, peer: Peer, where: str) -> None:
        """A connection that reached this proxy's own listener would loop: 508 at once."""
        assert peer.transport is not None
        remote = peer.address  # the peer name, read when the connection was made
        # IPv6 socket names are (host, port, flowinfo, scope_id): the check takes host and port.
        listening = [(str(name[0]), int(name[1])) for name in self._listening()]
        if not remote[0] or all(port != remote[1] for _, port in listening):
            return  # no listener on that port: the local address is not even asked
        local = peer.transport.get_extra_info("sockname")
        if local and reaches_own_listener(remote, local[:2], listening):
            peer.abort()
            raise HttpError(508, f"loop detected: {where} is this proxy's own listening address")

    def _context(self) -> ssl.SSLContext:
        """The upstream SSL context, built on first use (loading CA files takes time)."""
        if self._ssl is None:
            self._ssl = upstream_context(
                self.options.upstream_ca, insecure=self.options.ssl_insecure
            )
        return self._ssl
