"""Transparent mode (Linux): connections a firewall rule (iptables/nftables ``REDIRECT``)
sent to this listener, served as if the client had asked for a tunnel to where it connected.

The original destination comes from netfilter's connection tracking (``SO_ORIGINAL_DST``,
read by ``wsproxy.sansio.origdst``); from there on it is ``Tunnels.enter``: a ClientHello is
intercepted, anything else is served as HTTP, an ``--ignore-hosts`` match is piped. A
connection that was not redirected (no NAT record, or its original destination is one of
this proxy's own listeners) would only come back here: it is refused with the reason logged.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from ipaddress import ip_address
from typing import Any

from wsproxy.exceptions import HttpError
from wsproxy.options import Options
from wsproxy.proxy.peer import Peer
from wsproxy.proxy.tunnel import Tunnels
from wsproxy.sansio.loops import reaches_own_listener
from wsproxy.sansio.origdst import (
    IP6T_SO_ORIGINAL_DST,
    SO_ORIGINAL_DST,
    SOCKADDR_IN6_SIZE,
    SOCKADDR_IN_SIZE,
    SOL_IP,
    SOL_IPV6,
    OriginalDestinationError,
    parse_sockaddr,
)
from wsproxy.sansio.targets import host_port
from wsproxy.tls.handshakes import is_client_hello

__all__ = ["NotRedirected", "Redirected", "original_destination"]

log = logging.getLogger("wsproxy")


class NotRedirected(Exception):
    """The kernel knows no original destination for this connection (says why)."""


def original_destination(sock: Any) -> tuple[str, int]:
    """Where the client connected before the redirect: ``(host, port)``.

    An IPv6 connection asks ``IP6T_SO_ORIGINAL_DST``, an IPv4 one (also on a dual-stack
    socket, as an IPv4-mapped address) ``SO_ORIGINAL_DST``.
    """
    local = ip_address(str(sock.getsockname()[0]).split("%", 1)[0])
    ipv6 = sock.family == socket.AF_INET6 and getattr(local, "ipv4_mapped", None) is None
    level, option, size = (
        (SOL_IPV6, IP6T_SO_ORIGINAL_DST, SOCKADDR_IN6_SIZE)
        if ipv6
        else (SOL_IP, SO_ORIGINAL_DST, SOCKADDR_IN_SIZE)
    )
    try:
        raw = sock.getsockopt(level, option, size)
    except OSError as error:
        if error.errno == errno.ENOENT:
            raise NotRedirected("netfilter has no NAT record of it") from None
        if error.errno in (errno.ENOPROTOOPT, errno.EOPNOTSUPP):
            raise NotRedirected("this system has no SO_ORIGINAL_DST (Linux only)") from None
        raise NotRedirected(error.strerror or str(error)) from None
    try:
        return parse_sockaddr(raw)
    except OriginalDestinationError as error:
        raise NotRedirected(str(error)) from None


class Redirected:
    """Serves the connections of one transparent-mode listener."""

    def __init__(
        self, options: Options, tunnels: Tunnels, listening: Callable[[], list[Any]]
    ) -> None:
        self.options = options
        self._tunnels = tunnels
        self._listening = listening  # every listener of the process (a loop reaches any)

    async def serve(self, peer: Peer, conn_id: str) -> None:
        assert peer.transport is not None
        local = peer.transport.get_extra_info("sockname")
        try:
            host, port = original_destination(peer.transport.get_extra_info("socket"))
        except NotRedirected as error:
            reason = (
                f"no original destination ({error}): the connection was not redirected here "
                "by a firewall rule (transparent mode serves only REDIRECTed connections)"
            )
            await self._refuse(peer, conn_id, 400, reason)
            return
        where = host_port(host, port)
        if reaches_own_listener((host, port), local, self._listening()):
            reason = (
                f"loop detected: the original destination {where} is this proxy's own "
                "listener (connected to directly, not redirected)"
            )
            await self._refuse(peer, conn_id, 508, reason)
            return
        log.info("[%s] %s redirected, original destination %s", conn_id, peer.address[0], where)
        await self._tunnels.enter(peer, conn_id, host, port, redirected=True)

    async def _refuse(self, peer: Peer, conn_id: str, status: int, reason: str) -> None:
        """Refuse a connection that was not redirected: an HTTP client gets ``status``, a TLS
        client a closed connection (it would not read an HTTP answer); both are logged. One
        that sends nothing (a port probe) is only noted in the debug log."""
        try:
            async with asyncio.timeout(self.options.handshake_timeout):
                first = await peer.read()
        except TimeoutError:
            first = b""
        if not first:
            log.debug("[%s] %s sent nothing: %s", conn_id, peer.address[0], reason)
            return
        if is_client_hello(first):
            log.warning("[%s] %s TLS refused: %s", conn_id, peer.address[0], reason)
            peer.abort()
            return
        raise HttpError(status, reason)
