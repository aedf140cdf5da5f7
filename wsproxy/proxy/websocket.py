"""The WebSocket opening handshake on both legs, then the session until it closes.

The client's upgrade is checked (``sansio.handshake``), passed to the ``handshake_request``
hook, and sent upstream with only the extensions the proxy can decode. One opening handshake
per (client, host, port) at a time (``turns``, RFC 6455 4.1). An upstream answer that is not
101 is relayed as it is; a 101 is checked against what was offered (502 when it does not fit),
passed to ``handshake_response``, and answered to the client. Then the session runs, and its
close is summed up in the log, on the flow, in the capture and for the plugins.

With ``--no-websocket`` (mitmproxy's ``websocket=false``) the upgrade goes upstream with the
client's own offer, the upstream's 101 comes back as it is, and from then on the bytes are
copied both ways unchanged: no frame is parsed, no plugin is called, nothing is captured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from wsproxy import logformat
from wsproxy.decoders.base import Hints
from wsproxy.exceptions import HandshakeError, HttpError, UpstreamError
from wsproxy.model import Flow, HandshakeRequest, HandshakeResponse
from wsproxy.options import Options
from wsproxy.plugins import PluginChain
from wsproxy.proxy.heads import read_head
from wsproxy.proxy.http_relay import PlainHttp
from wsproxy.proxy.peer import Peer
from wsproxy.proxy.pipe import pipe
from wsproxy.proxy.session import CaptureSink, WebSocketSession
from wsproxy.proxy.turns import ClientGone, HandshakeTurns
from wsproxy.proxy.upstream import Upstream
from wsproxy.sansio import deflate
from wsproxy.sansio.handshake import (
    ClientHandshake,
    check_client_request,
    check_upstream_response,
    response_to_client,
    upstream_request_headers,
)
from wsproxy.sansio.http11 import (
    Headers,
    Limits,
    Request,
    Response,
    serialize_request,
    serialize_response,
)
from wsproxy.sansio.loops import append_via
from wsproxy.sansio.relay import Relay

__all__ = ["Capture", "HandshakeWatch", "WebSockets", "close_summary"]

if TYPE_CHECKING:
    from wsproxy.filtering import Selection
    from wsproxy.metrics import Metrics

log = logging.getLogger("wsproxy")

OpenUpstream = Callable[[Upstream], Awaitable[Peer]]


class Capture(CaptureSink, Protocol):
    """A capture writer, as the server sees it: it also picks which flows it records."""

    def wants(self, flow: Flow) -> bool: ...


@dataclass
class _Upgrade:
    """One upgrade on its way upstream: what the client sent and what goes on."""

    flow: Flow
    client_key: str  # the client's Sec-WebSocket-Key, answered in its Sec-WebSocket-Accept
    headers: Headers  # of the request to the upstream
    upstream: Upstream
    path: str
    offer: list[str]  # the Sec-WebSocket-Extensions values offered upstream


class WebSockets:
    """Opens WebSocket sessions and runs them; ``sessions`` are the open ones."""

    def __init__(
        self,
        options: Options,
        *,
        limits: Limits,
        via: str,
        open_upstream: OpenUpstream,
        plain: PlainHttp,
        turns: HandshakeTurns,
        chain: PluginChain | None = None,
        capture: Capture | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.options = options
        self.metrics = metrics
        self.limits = limits
        self.via = via
        self.open_upstream = open_upstream
        self.plain = plain
        self.turns = turns
        self.chain = chain
        self.capture = capture
        self.sessions: set[WebSocketSession] = set()

    async def open(
        self, peer: Peer, conn_id: str, req: Request, upstream: Upstream, path: str
    ) -> WebSocketSession | None:
        """The opening handshake on both sides; returns the session to run, or None when the
        upstream refused and its answer was relayed (or the WebSocket was passed through)."""
        if self.options.no_websocket:
            await self._pass_through(peer, conn_id, req, upstream, path)
            return None
        handshake = check_client_request(req)
        upgrade = await self._upgrade(peer, conn_id, req, handshake, upstream, path)
        watcher = _HandshakeWatcher.of(self.capture, upgrade.flow)
        try:
            server, resp = await self._exchange(
                peer, upgrade.upstream, upgrade.path, upgrade.headers
            )
            if resp.status != 101:
                log.info("[%s] upstream answered %d: relayed", conn_id, resp.status)
                if watcher is not None:
                    watcher.refused(resp)
                if self.metrics is not None:
                    self.metrics.refused(resp.status)
                try:
                    await self.plain.relay_answer(peer, server, resp, "GET")
                finally:
                    server.close()
                return None
            params = await self._accept(upgrade, server, resp)
        except BaseException as error:
            if watcher is not None:
                watcher.failed(error)
            if self.metrics is not None:
                self.metrics.failed(_failure_kind(error))
            raise
        via = append_via(resp.headers.get_all("Via"), self.via)
        answer = response_to_client(resp, upgrade.client_key, via=via)
        peer.write(serialize_response(answer))
        flow, chain = upgrade.flow, self.chain
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
            view=self._view(flow),
            hints=Hints(subprotocol=flow.subprotocol, path=upgrade.path),
            counts=self.metrics.session_opened() if self.metrics is not None else None,
        )
        if log.isEnabledFor(logging.INFO):
            log.info(
                "[%s] WebSocket open %s%s%s",
                conn_id,
                upgrade.upstream.authority,
                upgrade.path,
                logformat.negotiated(flow.subprotocol, flow.extensions),
            )
        return session

    def _view(self, flow: Flow) -> Selection | None:
        """``--view-filter``'s choice of this flow's frame lines (with ``-v`` only)."""
        text = self.options.view_filter
        if text is None or self.options.verbosity <= 0:
            return None
        from wsproxy.filtering import select  # the filter language: only for runs that use it
        from wsproxy.filters import compile_filter

        return select(compile_filter(text), flow)

    async def _upgrade(
        self,
        peer: Peer,
        conn_id: str,
        req: Request,
        handshake: ClientHandshake,
        upstream: Upstream,
        path: str,
    ) -> _Upgrade:
        """The request for the upstream, after the ``handshake_request`` hook."""
        headers = upstream_request_headers(
            req,
            extensions=None,
            host=upstream.authority,
            via=append_via(req.headers.get_all("Via"), self.via),
        )
        flow = Flow(
            conn_id,
            peer.address,
            HandshakeRequest(upstream.scheme, upstream.host, upstream.port, path, headers),
        )
        chain = self.chain
        if chain is not None and chain.has("handshake_request"):
            if chain.inline("handshake_request"):
                await chain.handshake_request(flow)  # plain functions: never suspends
            else:
                await _while_connected(peer, chain.handshake_request(flow))
            _raise_if_refused(flow)
            request = flow.request
            # A hook that keeps the address keeps the name it is reached under (SNI, Host).
            name = upstream.name if request.host == upstream.host else None
            upstream = Upstream(request.scheme, request.host, request.port, name)
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
        return _Upgrade(flow, handshake.key, headers, upstream, path, offer)

    async def _pass_through(
        self, peer: Peer, conn_id: str, req: Request, upstream: Upstream, path: str
    ) -> None:
        """``--no-websocket``: the upgrade as the client offered it, the upstream's answer as
        it is, then the bytes both ways untouched until either side closes."""
        headers = upstream_request_headers(
            req,
            extensions=None,
            host=upstream.authority,
            via=append_via(req.headers.get_all("Via"), self.via),
        )
        server, resp = await self._exchange(peer, upstream, path, headers)
        try:
            if resp.status != 101:
                log.info("[%s] upstream answered %d: relayed", conn_id, resp.status)
                await self.plain.relay_answer(peer, server, resp, "GET")
                return
            resp.headers.set("Via", append_via(resp.headers.get_all("Via"), self.via))
            peer.write(serialize_response(resp))
            log.info(
                "[%s] WebSocket %s%s passed through untouched (--no-websocket): frames are "
                "not parsed",
                conn_id,
                upstream.authority,
                path,
            )
            await pipe(peer, server, self.options.close_timeout)
            log.info("[%s] WebSocket pass-through ended", conn_id)
        finally:
            server.close()

    async def _exchange(
        self, peer: Peer, upstream: Upstream, path: str, headers: Headers
    ) -> tuple[Peer, Response]:
        """Send the upgrade upstream in this client's turn; the upstream and its answer."""
        upstream_req = Request("GET", path, "HTTP/1.1", headers)
        turn = (peer.address[0], upstream.host, upstream.port)
        async with self.turns.turn(turn, peer.ended):
            server = await self.open_upstream(upstream)
            try:
                server.write(serialize_request(upstream_req))
                try:
                    resp = await read_head(
                        server,
                        self.limits,
                        response=True,
                        timeout=self.options.handshake_timeout,
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
        return server, resp

    async def _accept(
        self, upgrade: _Upgrade, server: Peer, resp: Response
    ) -> deflate.DeflateParams | None:
        """Check the upstream's 101 against the offer, then the ``handshake_response`` hook;
        returns the negotiated permessage-deflate parameters."""
        flow, offer = upgrade.flow, upgrade.offer
        key = upgrade.headers.get("Sec-WebSocket-Key") or upgrade.client_key
        try:
            subprotocol, extensions = check_upstream_response(
                resp, key, flow.request.subprotocols, offer
            )
            params = deflate.negotiate(offer, extensions)
        except HandshakeError as error:
            server.abort()
            raise HandshakeError(502, f"upstream handshake failed: {error.reason}") from None
        flow.response = HandshakeResponse(resp.status, resp.reason, resp.headers)
        flow.subprotocol = subprotocol
        flow.extensions = extensions
        chain = self.chain
        if chain is not None and chain.has("handshake_response"):
            await chain.handshake_response(flow)
            if flow.refused is not None:
                server.abort()
                _raise_if_refused(flow)
        return params

    async def run(self, session: WebSocketSession) -> None:
        """Run an open session to its end, with the capture and the plugins' hooks."""
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
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "[%s] WebSocket closed: client %s, server %s; %s",
                    session.conn_id,
                    close_summary(relay.client.received_code, relay.client.close_received),
                    close_summary(relay.server.received_code, relay.server.close_received),
                    logformat.message_counts(relay.client.messages, relay.server.messages),
                )
            if self.metrics is not None and session.counts is not None:
                self.metrics.session_closed(
                    session.counts,
                    [
                        (leg.side.value, leg.received_code, leg.close_received)
                        for leg in (relay.client, relay.server)
                    ],
                )
            if flow is not None:
                await self._closed(session, flow)

    async def _closed(self, session: WebSocketSession, flow: Flow) -> None:
        """The flow's close information, to the capture and the plugins."""
        _fill_close_info(flow, session.relay)
        if session.capture is not None:
            session.capture.close(flow)
        chain = self.chain
        if chain is not None:
            if flow.error is not None and chain.has("error"):
                await chain.error(flow, flow.error)
            if chain.has("closed"):
                await chain.closed(flow)


class HandshakeWatch(Protocol):
    """What a sink that shows upgrades still under way offers (the web UI's ``LiveState``);
    a plain capture has neither method and is never asked."""

    def handshake_started(self, flow: Flow) -> None: ...

    def handshake_failed(self, flow: Flow, status: int | None, error: str) -> None: ...


class _HandshakeWatcher:
    """Tells a ``HandshakeWatch`` sink about one upgrade: sent upstream, then refused or
    failed (an open one reaches the sink as its ``handshake``)."""

    def __init__(self, sink: HandshakeWatch, flow: Flow) -> None:
        self.sink = sink
        self.flow = flow
        self.done = False

    @classmethod
    def of(cls, capture: object, flow: Flow) -> _HandshakeWatcher | None:
        """None (no cost) unless the sink watches handshakes; else it is told the upgrade
        goes upstream now."""
        if capture is None or not hasattr(capture, "handshake_started"):
            return None
        watcher = cls(cast(HandshakeWatch, capture), flow)
        watcher.sink.handshake_started(flow)
        return watcher

    def refused(self, resp: Response) -> None:
        """The upstream answered with another status than 101 (relayed to the client)."""
        self.done = True
        self.flow.response = HandshakeResponse(resp.status, resp.reason, resp.headers)
        reason = f" {resp.reason}" if resp.reason else ""
        self.sink.handshake_failed(
            self.flow, resp.status, f"upstream refused the upgrade: {resp.status}{reason}"
        )

    def failed(self, error: BaseException) -> None:
        if self.done:
            return
        self.done = True
        self.sink.handshake_failed(self.flow, *_failure(error))


class PluginRefusal(HandshakeError):
    """A plugin refused the upgrade (``flow.refuse``)."""


def _failure_kind(error: BaseException) -> str:
    """An upgrade's failure as the handshakes metric labels it."""
    if isinstance(error, UpstreamError):
        return f"failed_{error.kind}"
    if isinstance(error, PluginRefusal):
        return "failed_plugin"
    if isinstance(error, TimeoutError):
        return "failed_timeout"
    return "failed_other"


def _failure(error: BaseException) -> tuple[int | None, str]:
    """The status the client is answered with (None when there is none) and why."""
    if isinstance(error, UpstreamError):
        return error.status, error.reason
    if isinstance(error, HttpError):
        return error.status, error.reason
    if isinstance(error, ClientGone):
        return None, f"the client left: {error}"
    if isinstance(error, asyncio.CancelledError):
        return None, "the proxy stopped during the handshake"
    return None, str(error) or type(error).__name__


async def _while_connected(peer: Peer, hooks: Coroutine[Any, Any, None]) -> None:
    """Run async handshake hooks unless the client leaves first (while a person looks at its
    paused upgrade, say): they are then cancelled, and nothing waits for a client gone."""
    task = asyncio.ensure_future(hooks)
    try:
        await asyncio.wait({task, peer.ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientGone("left while a plugin held its upgrade request")
    task.result()


def _raise_if_refused(flow: Flow) -> None:
    """A plugin refused the handshake: answer the client with its status."""
    if flow.refused is not None:
        status, reason = flow.refused
        raise PluginRefusal(status, reason)


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


def close_summary(code: int | None, received: bool) -> str:
    """How one side's close reads in the log: ``close 1000``, ``no close frame``..."""
    if not received:
        return "no close frame"
    return f"close {code}" if code is not None else "close (no code)"
