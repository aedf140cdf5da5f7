"""SOCKS5 mode: the negotiation of ``wsproxy.sansio.socks5`` carried out over a client's
peer, then the tunnel served as after an HTTP CONNECT (``Tunnels.enter``: TLS intercepted,
HTTP and WebSocket upgrades, ``--ignore-hosts`` piped untouched).

**When the success reply goes out: after the upstream TCP connection is up.** A SOCKS
client, unlike one of an HTTP proxy, has no answer to read later that could say a server
was down, so the reply says it: 05 connection refused, 03 network unreachable, 04 host
unreachable (a name that does not resolve too), 06 for ``--connect-timeout`` (TTL expired,
the code SOCKS servers use for a timeout), 02 for this proxy's own listener (a loop), 01 for
anything else. curl and browsers report these codes by name. The connection is not wasted:
``HandOver`` gives it to the first request inside the tunnel (with TLS on top for https and
wss), or to the ``--ignore-hosts`` pipe, and closes it if the tunnel never used it. The one
name never connected to is ``wsproxy.invalid``: its CA page is served inside the tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from wsproxy.exceptions import os_error_text
from wsproxy.options import Options
from wsproxy.proxy.access import AccessPolicy
from wsproxy.proxy.peer import Peer
from wsproxy.proxy.tunnel import Tunnels
from wsproxy.proxy.upstream import Connector, Upstream
from wsproxy.sansio.loops import reaches_own_listener
from wsproxy.sansio.socks5 import (
    Authenticate,
    Connect,
    Established,
    Fail,
    Negotiation,
    Output,
    Reply,
    Send,
    reply_for_errno,
)
from wsproxy.sansio.targets import host_port
from wsproxy.tls.magic import MAGIC_HOST

__all__ = ["HandOver", "Socks5Front"]

log = logging.getLogger("wsproxy")


@dataclass
class _Parked:
    """The upstream connection of the SOCKS5 tunnel this task serves, until a request of
    that tunnel takes it."""

    host: str
    port: int
    peer: Peer | None


# Which connection is parked for the tunnel this handler task serves. A context variable,
# because the request loop inside the tunnel asks for upstream connections by ``Upstream``
# alone (as for every other listener), and each client connection is served by one task.
_PARKED: contextvars.ContextVar[_Parked | None] = contextvars.ContextVar("parked", default=None)


class HandOver:
    """Opens upstream connections for the request loop inside SOCKS5 tunnels: the first to
    the tunnel's own host and port is the one its CONNECT opened, the rest are new."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector

    async def open(self, upstream: Upstream) -> Peer:
        parked = _PARKED.get()
        if (
            parked is None
            or parked.peer is None
            or (upstream.host, upstream.port)
            != (
                parked.host,
                parked.port,
            )
        ):
            return await self.connector.open(upstream)
        peer, parked.peer = parked.peer, None
        if peer.ended.done():  # the server closed it meanwhile: a fresh one instead
            peer.close()
            return await self.connector.open(upstream)
        if upstream.tls:
            await self.connector.secure(peer, upstream)
        return peer

    @contextlib.contextmanager
    def parked(self, host: str, port: int, peer: Peer) -> Iterator[None]:
        """``peer`` waits for the tunnel's first request while the block runs; closed after
        it unless a request took it."""
        holder = _Parked(host, port, peer)
        token = _PARKED.set(holder)
        try:
            yield
        finally:
            _PARKED.reset(token)
            if holder.peer is not None:
                holder.peer.close()


class _DialFailed(Exception):
    def __init__(self, code: Reply, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Socks5Front:
    """Serves the connections of one ``--mode socks5`` listener."""

    def __init__(
        self,
        options: Options,
        access: AccessPolicy,
        tunnels: Tunnels,
        handover: HandOver,
        listening: Callable[[], Iterable[Any]],
    ) -> None:
        self.options = options
        self.access = access
        self.tunnels = tunnels
        self.handover = handover
        self._listening = listening

    async def serve(self, peer: Peer, conn_id: str) -> None:
        """One client: the negotiation, the upstream connection, the reply, the tunnel."""
        negotiation = Negotiation(require_password=self.access.requires_password)
        client = peer.address[0]
        try:
            async with asyncio.timeout(self.options.handshake_timeout or None):
                request = await self._negotiate(peer, conn_id, negotiation)
        except TimeoutError:
            limit = f"--handshake-timeout {self.options.handshake_timeout:g} s"
            self._carry_out(peer, conn_id, negotiation, negotiation.timed_out(), limit)
            return
        if request is None:
            return
        where = host_port(request.host, request.port)
        log.info("[%s] %s SOCKS5 CONNECT %s", conn_id, client, where)
        if request.host == MAGIC_HOST:  # the CA page: served inside the tunnel, no upstream
            self._established(peer, conn_id, negotiation, ("0.0.0.0", 0))
            await self.tunnels.enter(peer, conn_id, request.host, request.port)
            return
        try:
            upstream = await self._dial(request.host, request.port)
        except _DialFailed as failed:
            outputs = negotiation.connect_failed(failed.code, failed.reason)
            self._carry_out(peer, conn_id, negotiation, outputs)
            return
        assert upstream.transport is not None
        with self.handover.parked(request.host, request.port, upstream):
            bound = upstream.transport.get_extra_info("sockname")
            self._established(peer, conn_id, negotiation, bound)
            await self.tunnels.enter(peer, conn_id, request.host, request.port)

    def _established(
        self, peer: Peer, conn_id: str, negotiation: Negotiation, bound: tuple[Any, ...]
    ) -> None:
        """The success reply (naming ``bound``, the upstream socket's address), and what the
        client sent past its request back in front of the peer's buffer."""
        outputs = negotiation.connected(str(bound[0]), int(bound[1]))
        established = self._carry_out(peer, conn_id, negotiation, outputs)
        assert isinstance(established, Established)
        peer.unread(established.data)

    async def _negotiate(
        self, peer: Peer, conn_id: str, negotiation: Negotiation
    ) -> Connect | None:
        """Read until the client's CONNECT request (None: the negotiation failed)."""
        while True:
            data = await peer.read()
            outputs = negotiation.receive_data(data) if data else negotiation.receive_eof()
            last = self._carry_out(peer, conn_id, negotiation, outputs)
            if isinstance(last, Connect):
                return last
            if isinstance(last, Fail):
                return None

    def _carry_out(
        self,
        peer: Peer,
        conn_id: str,
        negotiation: Negotiation,
        outputs: list[Output],
        detail: str = "",
    ) -> Output | None:
        """Do what the negotiation asks, up to the command that needs the caller (a
        ``Connect``, ``Established`` or ``Fail``), which is returned."""
        pending = list(outputs)
        while pending:
            output = pending.pop(0)
            if isinstance(output, Send):
                peer.write(output.data)
            elif isinstance(output, Authenticate):
                ok = self.access.password_matches(output.username, output.password)
                pending += negotiation.authenticated(ok)
            elif isinstance(output, Fail):
                self._log_failure(peer, conn_id, output, detail)
                return output
            else:
                return output
        return None

    def _log_failure(self, peer: Peer, conn_id: str, failure: Fail, detail: str) -> None:
        reply = f" (reply {failure.reply:#04x})" if failure.reply is not None else ""
        extra = f" ({detail})" if detail else ""
        level = logging.INFO if failure.client_gone else logging.WARNING
        log.log(
            level, "[%s] %s SOCKS5: %s%s%s", conn_id, peer.address[0], failure.reason, extra, reply
        )

    async def _dial(self, host: str, port: int) -> Peer:
        """A TCP connection to ``host:port``; ``_DialFailed`` with the reply that says why
        not."""
        where = host_port(host, port)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.options.connect_timeout or None):
                _, peer = await loop.create_connection(Peer, host, port)
        except TimeoutError:
            limit = f"--connect-timeout {self.options.connect_timeout:g} s"
            reason = f"timed out connecting to {where} ({limit})"
            raise _DialFailed(Reply.TTL_EXPIRED, reason) from None
        except socket.gaierror as error:
            reason = f"cannot resolve {host}: {error.strerror or error}"
            raise _DialFailed(Reply.HOST_UNREACHABLE, reason) from None
        except OSError as error:
            code = reply_for_errno(error.errno)
            reason = f"cannot connect to {where}: {os_error_text(error)}"
            raise _DialFailed(code, reason) from None
        assert peer.transport is not None
        remote = peer.transport.get_extra_info("peername")
        local = peer.transport.get_extra_info("sockname")
        if remote and local and reaches_own_listener(remote, local, list(self._listening())):
            peer.abort()
            reason = f"loop: {where} is this proxy's own listening address"
            raise _DialFailed(Reply.NOT_ALLOWED, reason)
        return peer
