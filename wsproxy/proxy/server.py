"""The proxy's front end: accepts connections, speaks HTTP/1.1, and starts WebSocket sessions.

Regular mode takes every way a client asks an HTTP proxy for a WebSocket: ``CONNECT`` and then
the upgrade inside the tunnel (TLS intercepted when the first bytes are a ClientHello), or an
absolute-form ``GET http://`` / ``ws://`` / ``https://`` / ``wss://``. Requests that are not
upgrades are relayed as plain HTTP, bodies streamed. Reverse mode sends everything to one
upstream. All protocol decisions come from ``wsproxy.sansio``; this module only does the I/O.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import ssl
import time
from dataclasses import dataclass
from typing import Protocol

from wsproxy.exceptions import HandshakeError, HttpError, UpstreamError, WsproxyError
from wsproxy.model import Flow, HandshakeRequest, HandshakeResponse
from wsproxy.options import Options
from wsproxy.plugins import PluginChain
from wsproxy.proxy.accept import AcceptWatch
from wsproxy.proxy.access import AccessPolicy
from wsproxy.proxy.http_relay import PlainHttp
from wsproxy.proxy.peer import Peer
from wsproxy.proxy.session import CaptureSink, WebSocketSession
from wsproxy.proxy.turns import ClientGone, HandshakeTurns
from wsproxy.sansio import deflate
from wsproxy.sansio.handshake import (
    check_client_request,
    check_upstream_response,
    is_upgrade_request,
    response_to_client,
    upstream_request_headers,
)
from wsproxy.sansio.http11 import (
    HeadParser,
    Limits,
    Request,
    Response,
    serialize_request,
    serialize_response,
    simple_response,
)
from wsproxy.sansio.loops import append_via, carries_via, reaches_own_listener
from wsproxy.sansio.relay import Relay
from wsproxy.sansio.targets import check_request, default_port, format_authority, parse_target
from wsproxy.tls import MAGIC_HOST, CertAuthority, render, upstream_context
from wsproxy.tls.alerts import HandshakeFailureLog
from wsproxy.tls.handshakes import accept_client, connect_upstream, is_client_hello

log = logging.getLogger("wsproxy")


@dataclass(frozen=True)
class Upstream:
    """Where a request goes: scheme decides TLS, host and port the TCP connection."""

    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme in ("https", "wss")

    @property
    def authority(self) -> str:
        return format_authority(self.host, self.port, self.scheme)


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


class Capture(CaptureSink, Protocol):
    """A capture writer, as the server sees it: it also picks which flows it records."""

    def wants(self, flow: Flow) -> bool: ...


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
        self.capture = capture
        self.limits = Limits(
            max_line=options.max_request_line,
            max_head_size=options.max_head_size,
            max_headers=options.max_headers,
        )
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.sessions: set[WebSocketSession] = set()
        self.turns = HandshakeTurns(enabled=not options.parallel_handshakes)
        # This process's Via pseudonym (RFC 9110 7.6.3): random, so only its own loops match.
        self.via = f"wsproxy-{secrets.token_hex(4)}"
        self.plain = PlainHttp(options, self.limits, self._open, self.via)
        self._ignore = [re.compile(pattern) for pattern in options.ignore_hosts]
        self._tls_failures = HandshakeFailureLog(MAGIC_HOST)
        self._accepts = AcceptWatch()
        self._per_client: dict[str, int] = {}
        self._access = AccessPolicy(options.allow_clients, options.proxyauth)
        self._upstream_ssl: ssl.SSLContext | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._accepts.install(loop)  # out of file descriptors: one warning per burst
        self._server = await loop.create_server(
            self._accepts.watching(self._new_peer),
            self.options.listen_host,
            self.options.listen_port,
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def shutdown(self) -> None:
        """Stop listening; every open WebSocket gets close 1001 on both sides."""
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.shutdown(1001, "proxy shutting down")
        if self.sessions:
            await asyncio.wait(
                [asyncio.ensure_future(s.run()) for s in self.sessions],
                timeout=self.options.close_timeout + 1,
            )
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=2)

    def _new_peer(self) -> Peer:
        peer = Peer()
        task = asyncio.get_running_loop().create_task(self._handle(peer))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        return peer

    # -- one client connection ----------------------------------------------------------------

    async def _handle(self, peer: Peer) -> None:
        await asyncio.sleep(0)  # let connection_made run
        conn_id = f"c{next(self._ids)}"
        client = peer.address[0]
        self._per_client[client] = self._per_client.get(client, 0) + 1
        try:
            if not self._access.allows(client):
                raise HttpError(
                    403,
                    f"client {client} is not on loopback or a private network "
                    "(allow it with --allow-clients)",
                )
            if len(self._handlers) > self.options.max_connections:
                raise HttpError(503, f"over --max-connections {self.options.max_connections}")
            if self._per_client[client] > self.options.max_connections_per_client:
                limit = self.options.max_connections_per_client
                raise HttpError(503, f"over --max-connections-per-client {limit}")
            await self._serve(peer, conn_id, None)
        except HttpError as error:
            log.warning("[%s] %s %s: %s", conn_id, peer.address[0], error.status, error.reason)
            self._answer(peer, conn_id, error.status, error.reason, error.headers)
        except UpstreamError as error:
            log.warning("[%s] upstream: %s (%s)", conn_id, error.reason, error.status)
            self._answer(peer, conn_id, error.status, error.reason)
        except TimeoutError as error:
            detail = f": {error}" if error.args else ""
            log.info("[%s] %s: timed out%s", conn_id, peer.address[0], detail)
            if peer.answering:
                peer.abort()
        except ClientGone:
            log.info("[%s] %s: left while waiting for its handshake turn", conn_id, client)
        except (ConnectionError, ssl.SSLError) as error:
            log.info("[%s] %s: connection ended: %s", conn_id, peer.address[0], error)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.error("[%s] internal error", conn_id, exc_info=log.isEnabledFor(logging.DEBUG))
            self._answer(peer, conn_id, 500, "internal proxy error")
        finally:
            peer.close()
            left = self._per_client[client] - 1
            if left:
                self._per_client[client] = left
            else:
                del self._per_client[client]

    @staticmethod
    def _answer(
        peer: Peer,
        conn_id: str,
        status: int,
        reason: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        """One request, one answer: a status line unless the answer to it has begun; then
        the only honest thing left is to abort the client connection."""
        if peer.answering:
            log.info("[%s] the response had begun: aborting the client connection", conn_id)
            peer.abort()
        else:
            peer.write(simple_response(status, reason, headers=headers))

    async def _read_head(
        self, peer: Peer, *, response: bool = False, timeout: float | None
    ) -> Request | Response | None:
        """One head from ``peer``; None when it closes before sending a byte."""
        parser = HeadParser(self.limits, is_response=response)
        seen = False
        async with asyncio.timeout(timeout or None):
            while True:
                data = await peer.read()
                if not data:
                    if seen:
                        raise HttpError(502 if response else 400, "connection closed mid-head")
                    return None
                seen = True
                head = parser.feed(data)
                if head is not None:
                    peer.unread(parser.leftover)
                    return head

    async def _serve(self, peer: Peer, conn_id: str, tunnel: Tunnel | None) -> None:
        """Requests of one client connection (or tunnel), until it closes or upgrades."""
        first = True
        while True:
            timeout = self.options.handshake_timeout if first else self.options.idle_timeout
            peer.begin_request()
            try:
                head = await self._read_head(peer, timeout=timeout)
            except TimeoutError:
                if first:
                    raise HttpError(408, "no complete request head in time") from None
                return
            if head is None:
                return
            first = False
            assert isinstance(head, Request)
            check_request(head)
            if carries_via(head.headers.get_all("Via"), self.via):
                raise HttpError(508, "loop detected: the request already passed this proxy (Via)")
            reverse = self.options.reverse
            if tunnel is None and reverse is None:
                self._access.check_proxy_auth(head.headers.get("Proxy-Authorization"))
            target = parse_target(head, default_port=tunnel.default_port if tunnel else 80)
            if head.method == "CONNECT":
                if tunnel is not None or reverse is not None:
                    raise HttpError(405, "CONNECT is only accepted by a regular-mode proxy")
                assert target.host is not None and target.port is not None
                await self._connect(peer, conn_id, target.host, target.port)
                return
            if target.host == MAGIC_HOST and self.ca is not None and reverse is None:
                status, ctype, body = render(target.path, self.ca)
                peer.write(simple_response(status, "", body, headers=[("Content-Type", ctype)]))
                return
            upstream, path = self._route(head, tunnel)
            log.info(
                "[%s] %s %s %s://%s%s",
                conn_id,
                peer.address[0],
                head.method,
                upstream.scheme,
                upstream.authority,
                path,
            )
            if is_upgrade_request(head):
                session = await self._websocket(peer, conn_id, head, upstream, path)
                del head  # an open WebSocket keeps nothing of the HTTP phase alive
                if session is not None:
                    await self._run_session(session)
                return
            if not await self.plain.exchange(peer, head, upstream, path):
                return

    def _route(self, req: Request, tunnel: Tunnel | None) -> tuple[Upstream, str]:
        """Where a request goes. Reverse mode: its upstream, whatever the request names (an
        absolute-form target's authority is ignored, as a server does with its Host; RFC 9112
        3.2.2). In a tunnel: the tunnel's host. Otherwise the absolute-form target."""
        target = parse_target(req, default_port=tunnel.default_port if tunnel else 80)
        upgrade = is_upgrade_request(req)
        reverse = self.options.reverse
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
                    f"a request inside the tunnel to {tunnel.host}:{tunnel.port} names "
                    f"another server ({target.host}:{target.port})",
                )
            scheme = ("wss" if upgrade else "https") if tunnel.tls else "ws" if upgrade else "http"
            return Upstream(scheme, tunnel.host, tunnel.port), target.path
        if target.form == "absolute":
            assert target.scheme and target.host and target.port
            scheme = target.scheme
            if upgrade:
                scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
            elif scheme in ("ws", "wss"):
                scheme = "http" if scheme == "ws" else "https"
            return Upstream(scheme, target.host, target.port), target.path
        raise HttpError(
            400, "a proxy request needs an absolute URL (GET http://host/...) or CONNECT"
        )

    # -- CONNECT -----------------------------------------------------------------------------

    async def _connect(self, peer: Peer, conn_id: str, host: str, port: int) -> None:
        log.info("[%s] %s CONNECT %s:%d", conn_id, peer.address[0], host, port)
        if any(pattern.search(f"{host}:{port}") for pattern in self._ignore):
            upstream = await self._open(Upstream("tcp", host, port))
            peer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await self._pipe(peer, upstream)
            return
        peer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
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

    async def _pipe(self, a: Peer, b: Peer) -> None:
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

    # -- upstream connections ----------------------------------------------------------------

    async def _open(self, upstream: Upstream) -> Peer:
        loop = asyncio.get_running_loop()
        where = f"{upstream.host}:{upstream.port}"
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
            await connect_upstream(
                peer,
                self._upstream_context(),
                upstream.host,
                where=where,
                timeout=self.options.handshake_timeout,
            )
        return peer

    def _refuse_own_address(self, peer: Peer, where: str) -> None:
        """A connection that reached this proxy's own listener would loop: 508 at once."""
        assert peer.transport is not None
        remote = peer.transport.get_extra_info("peername")
        local = peer.transport.get_extra_info("sockname")
        listening = [sock.getsockname() for sock in self._server.sockets] if self._server else []
        if remote and local and reaches_own_listener(remote, local, listening):
            peer.abort()
            raise HttpError(508, f"loop detected: {where} is this proxy's own listening address")

    def _upstream_context(self) -> ssl.SSLContext:
        if self._upstream_ssl is None:
            self._upstream_ssl = upstream_context(
                self.options.upstream_ca, insecure=self.options.ssl_insecure
            )
        return self._upstream_ssl

    # -- WebSocket ---------------------------------------------------------------------------

    async def _websocket(
        self, peer: Peer, conn_id: str, req: Request, upstream: Upstream, path: str
    ) -> WebSocketSession | None:
        """The opening handshake on both sides; returns the session to run, or None when the
        upstream refused and its answer was relayed."""
        handshake = check_client_request(req)
        headers = upstream_request_headers(req, extensions=None)
        headers.set("Host", upstream.authority)
        headers.set("Via", append_via(req.headers.get_all("Via"), self.via))
        flow = Flow(
            conn_id,
            peer.address,
            HandshakeRequest(upstream.scheme, upstream.host, upstream.port, path, headers),
        )
        chain = self.chain
        if chain is not None and chain.has("handshake_request"):
            await chain.handshake_request(flow)
            if flow.refused is not None:
                status, reason = flow.refused
                raise HandshakeError(status, reason)
            request = flow.request
            upstream = Upstream(request.scheme, request.host, request.port)
            path = request.path
        # Only extensions the proxy can decode may be negotiated: anything else would leave it
        # unable to read the frames. Today that is permessage-deflate alone, and not even that
        # with --no-compression.
        offer: list[str] = []
        if not self.options.no_compression:
            deflate.validate_offer(flow.request.extensions)
            offer = deflate.only_permessage_deflate(flow.request.extensions)
        headers.remove("Sec-WebSocket-Extensions")
        for value in offer:
            headers.add("Sec-WebSocket-Extensions", value)
        protocols = flow.request.subprotocols
        key = headers.get("Sec-WebSocket-Key") or handshake.key
        upstream_req = Request("GET", path, "HTTP/1.1", headers)
        turn = (peer.address[0], upstream.host, upstream.port)
        async with self.turns.turn(turn, peer.ended):
            server = await self._open(upstream)
            try:
                server.write(serialize_request(upstream_req))
                try:
                    resp = await self._read_head(
                        server, response=True, timeout=self.options.handshake_timeout
                    )
                except TimeoutError:
                    raise UpstreamError(
                        f"{upstream.authority} did not answer the upgrade in time", 504
                    ) from None
                if resp is None:
                    raise UpstreamError(f"{upstream.authority} closed without answering", 502)
            except BaseException:
                server.abort()
                raise
        assert isinstance(resp, Response)
        if resp.status != 101:
            log.info("[%s] upstream answered %d: relayed", conn_id, resp.status)
            try:
                await self.plain.relay_answer(peer, server, resp, "GET")
            finally:
                server.close()
            return None
        try:
            subprotocol, extensions = check_upstream_response(resp, key, protocols, offer)
            params = deflate.negotiate(offer, extensions)
        except HandshakeError as error:
            server.abort()
            raise HandshakeError(502, f"upstream handshake failed: {error.reason}") from None
        flow.response = HandshakeResponse(resp.status, resp.reason, resp.headers)
        flow.subprotocol = subprotocol
        flow.extensions = extensions
        if chain is not None and chain.has("handshake_response"):
            await chain.handshake_response(flow)
            if flow.refused is not None:
                server.abort()
                status, reason = flow.refused
                raise HandshakeError(status, reason)
        answer = response_to_client(resp, handshake.key)
        answer.headers.set("Via", append_via(resp.headers.get_all("Via"), self.via))
        peer.write(serialize_response(answer))
        capture = self.capture if self.capture is not None and self.capture.wants(flow) else None
        session = WebSocketSession(
            conn_id,
            peer,
            server,
            self.options,
            chain=chain,
            flow=flow if chain is not None or capture is not None else None,
            deflate_params=params,
            capture=capture,
        )
        log.info("[%s] WebSocket open %s%s", conn_id, upstream.authority, path)
        return session

    async def _run_session(self, session: WebSocketSession) -> None:
        chain, flow, relay = self.chain, session.flow, session.relay
        self.sessions.add(session)
        try:
            if session.capture is not None and flow is not None:
                session.capture.handshake(flow)
            if chain is not None and flow is not None and chain.has("opened"):
                await chain.opened(flow)
            session.start(session.client.take_buffer(), session.server.take_buffer())
            await session.run()
        finally:
            self.sessions.discard(session)
            log.info(
                "[%s] WebSocket closed: client %s, server %s; %d/%d messages",
                session.conn_id,
                _close_summary(relay.client.received_code, relay.client.close_received),
                _close_summary(relay.server.received_code, relay.server.close_received),
                relay.client.messages,
                relay.server.messages,
            )
            if flow is not None:
                _fill_close_info(flow, relay)
                if session.capture is not None:
                    session.capture.close(flow)
            if chain is not None and flow is not None:
                if flow.error is not None and chain.has("error"):
                    await chain.error(flow, flow.error)
                if chain.has("closed"):
                    await chain.closed(flow)


def _fill_close_info(flow: Flow, relay: Relay) -> None:
    flow.ended = time.time()
    for leg, info, counts in (
        (relay.client, flow.client_close, flow.client_counts),
        (relay.server, flow.server_close, flow.server_counts),
    ):
        info.code = leg.received_code
        info.reason = leg.received_reason
        info.received_close = leg.close_received
        counts.messages = leg.messages
        counts.frames = leg.frames
        counts.bytes = leg.reader.bytes_received
    flow.closed_by = relay.closed_by
    violation = relay.client.violation or relay.server.violation
    if violation is not None and flow.error is None:
        flow.error = f"protocol error: {violation.reason} ({violation.code})"


def _close_summary(code: int | None, received: bool) -> str:
    if not received:
        return "no close frame"
    return f"close {code}" if code is not None else "close (no code)"


__all__ = ["ProxyServer", "Upstream", "WsproxyError"]
