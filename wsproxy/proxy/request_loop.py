"""The HTTP phase of one client connection (or tunnel): read each request head, check it,
and route it: CONNECT to a tunnel, an upgrade to a WebSocket, anything else relayed as plain
HTTP, the CA page at ``http://wsproxy.invalid/`` served here.

Regular mode takes every way a client asks an HTTP proxy for a WebSocket: ``CONNECT`` and
then the upgrade inside the tunnel, or an absolute-form ``GET http://`` / ``ws://`` /
``https://`` / ``wss://``. Reverse mode sends everything to one upstream.
"""

from __future__ import annotations

import logging
from ipaddress import ip_address
from typing import TYPE_CHECKING

from wsproxy.exceptions import HttpError
from wsproxy.modes import Reverse
from wsproxy.options import Options
from wsproxy.proxy.access import AccessPolicy
from wsproxy.proxy.heads import read_head
from wsproxy.proxy.http_relay import PlainHttp
from wsproxy.proxy.peer import Peer
from wsproxy.proxy.tunnel import OpenUpstream, Tunnel, Tunnels
from wsproxy.proxy.upstream import Upstream, via_next_proxy
from wsproxy.proxy.websocket import WebSockets
from wsproxy.sansio.handshake import is_upgrade_request
from wsproxy.sansio.http11 import Limits, Request, simple_response
from wsproxy.sansio.loops import carries_via
from wsproxy.sansio.targets import Target, check_request, host_port, parse_target
from wsproxy.tls.magic import MAGIC_HOST, render

if TYPE_CHECKING:
    from wsproxy.tls.ca import CertAuthority

__all__ = ["RequestLoop", "redirected_name", "route"]

log = logging.getLogger("wsproxy")


class RequestLoop:
    """Serves the requests of client connections, one ``serve`` call per connection."""

    def __init__(
        self,
        options: Options,
        *,
        ca: CertAuthority | None,
        limits: Limits,
        via: str,
        access: AccessPolicy,
        open_upstream: OpenUpstream,
        plain: PlainHttp,
        websockets: WebSockets,
    ) -> None:
        self.options = options
        self.ca = ca
        self.limits = limits
        self.via = via
        self.access = access
        self.plain = plain
        self.websockets = websockets
        self.tunnels = Tunnels(options, ca, open_upstream, self.serve)

    async def serve(self, peer: Peer, conn_id: str, tunnel: Tunnel | None = None) -> None:
        """Requests of one client connection (or tunnel), until it closes or upgrades."""
        first = True
        while True:
            peer.begin_request()
            head = await self._next_head(peer, first=first)
            if head is None or not await self._one_request(peer, conn_id, head, tunnel):
                return
            first = False

    async def _next_head(self, peer: Peer, *, first: bool) -> Request | None:
        """The next request head; None when the client closed or stayed idle too long."""
        timeout = self.options.handshake_timeout if first else self.options.idle_timeout
        try:
            head = await read_head(peer, self.limits, timeout=timeout)
        except TimeoutError:
            if first:
                raise HttpError(408, "no complete request head in time") from None
            return None
        assert head is None or isinstance(head, Request)
        return head

    async def _one_request(
        self, peer: Peer, conn_id: str, head: Request, tunnel: Tunnel | None
    ) -> bool:
        """Answer one request; returns whether the connection goes on to the next one."""
        check_request(head)
        if carries_via(head.headers.get_all("Via"), self.via):
            raise HttpError(508, "loop detected: the request already passed this proxy (Via)")
        reverse = self.options.reverse
        if tunnel is None and reverse is None:
            self.access.check_proxy_auth(head.headers.get("Proxy-Authorization"))
        target = parse_target(head, default_port=tunnel.default_port if tunnel else 80)
        if head.method == "CONNECT":
            if tunnel is not None or reverse is not None:
                raise HttpError(405, "CONNECT is only accepted by a regular-mode proxy")
            assert target.host is not None and target.port is not None
            await self.tunnels.connect(peer, conn_id, target.host, target.port)
            return False
        if target.host == MAGIC_HOST and self.ca is not None and reverse is None:
            status, ctype, body = render(target.path, self.ca)
            peer.write(simple_response(status, "", body, headers=[("Content-Type", ctype)]))
            return False
        upstream, path = route(head, target, tunnel, reverse)
        if log.isEnabledFor(logging.INFO):  # -q: not even the line's parts are made
            log.info(
                "[%s] %s %s %s://%s%s%s",
                conn_id,
                peer.address[0],
                head.method,
                upstream.scheme,
                upstream.authority,
                path,
                via_next_proxy(self.options),
            )
        if is_upgrade_request(head):
            session = await self.websockets.open(peer, conn_id, head, upstream, path)
            del head  # an open WebSocket keeps nothing of the HTTP phase alive
            if session is not None:
                await self.websockets.run(session)
            return False
        return await self.plain.exchange(peer, head, upstream, path, conn_id)


def route(
    req: Request, target: Target, tunnel: Tunnel | None, reverse: Reverse | None
) -> tuple[Upstream, str]:
    """Where a request goes. Reverse mode: its upstream, whatever the request names (an
    absolute-form target's authority is ignored, as a server does with its Host; RFC 9112
    3.2.2). In a tunnel: the tunnel's host. Otherwise the absolute-form target."""
    upgrade = is_upgrade_request(req)
    if reverse is not None:
        scheme = reverse.scheme if upgrade else ("https" if reverse.tls else "http")
        return Upstream(scheme, reverse.host, reverse.port), target.path
    if tunnel is not None:
        if target.form == "absolute" and (target.host, target.port) != (
            tunnel.host,
            tunnel.port,
        ):
            raise HttpError(
                400,
                f"a request inside the tunnel to {host_port(tunnel.host, tunnel.port)} names "
                f"another server ({host_port(target.host or '', target.port or 0)})",
            )
        scheme = ("wss" if upgrade else "https") if tunnel.tls else "ws" if upgrade else "http"
        name = redirected_name(target, tunnel) if tunnel.redirected else None
        return Upstream(scheme, tunnel.host, tunnel.port, name), target.path
    if target.form == "absolute":
        assert target.scheme and target.host and target.port
        scheme = target.scheme
        if upgrade:
            scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
        elif scheme in ("ws", "wss"):
            scheme = "http" if scheme == "ws" else "https"
        return Upstream(scheme, target.host, target.port), target.path
    raise HttpError(400, "a proxy request needs an absolute URL (GET http://host/...) or CONNECT")


def redirected_name(target: Target, tunnel: Tunnel) -> str | None:
    """The server's name for a request on a redirected connection (transparent mode), which
    goes to the original destination whatever it names: routing by Host would let any client
    reach any server through the proxy (an open relay).

    A Host that is an IP address must be that destination's: 400 otherwise. A Host that is a
    name is taken as it is, without resolving it: a lookup could give another address than
    the one the client connected to (a second answer, from another resolver or another
    moment), and the connection goes to the address either way. Over TLS the name is the
    SNI's, which the client checked our certificate against; over plain HTTP, Host's.
    """
    host = target.host
    if host is not None:
        try:
            address = ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            if address != ip_address(tunnel.host.split("%", 1)[0]):
                raise HttpError(
                    400,
                    f"Host {host} is another address than the original destination "
                    f"{host_port(tunnel.host, tunnel.port)}: a redirected connection goes "
                    "only where the client connected",
                )
            host = None  # the address itself: no name to add
    return tunnel.server_name if tunnel.tls else host
