"""Plain HTTP through the proxy: one request and its response at a time, bodies streamed.

Rules this module keeps (issue 10): memory stays at one read per direction however large a
body is (the peers' own buffers are bounded and ``drain`` waits for a slow reader); every
request gets exactly one answer — an error found before any response byte reached the client
becomes a status line, after that the client connection is aborted instead; the upstream gets
``--handshake-timeout`` to start its response once the request stopped moving, and a body that
moves no byte either way for ``--idle-timeout`` ends the exchange (0: never).

Upstream connections come from ``UpstreamPool``: a kept-alive one when there is one, and back
into it when ``persistence.Exchange`` says the exchange left it reusable. A kept-alive
connection that the server closes before answering gets the request once more, on a new
connection, when ``Exchange.replay`` allows it (idempotent methods, a body small enough to
keep); otherwise the client gets 502 saying why.

Capture (``--capture-http``): each exchange the capture wants becomes an ``HttpExchange``,
handed to the capture when it ends, however it ends: heads, the first ``BODY_KEEP`` bytes of
each body's content (counted in full, never held whole), times, and for a failure the error
and the status the proxy answered (``listener.answer`` answers the same exceptions).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wsproxy.capture.sink import CaptureSink
from wsproxy.exceptions import HttpError, UpstreamError
from wsproxy.model import BodyCapture, HttpExchange
from wsproxy.options import Options
from wsproxy.proxy.heads import read_head
from wsproxy.proxy.peer import Peer
from wsproxy.proxy.pool import UpstreamPool
from wsproxy.proxy.upstream import Upstream, check_forwarded_answer, outgoing_request
from wsproxy.proxy.watchdog import Watchdog
from wsproxy.sansio.bodies import BodyReader, Framing, body_framing
from wsproxy.sansio.handshake import strip_hop_by_hop
from wsproxy.sansio.http11 import (
    STATUS_REASONS,
    Headers,
    Limits,
    Request,
    Response,
    serialize_request,
    serialize_response,
)
from wsproxy.sansio.loops import append_via
from wsproxy.sansio.persistence import Exchange

log = logging.getLogger("wsproxy")

OnBody = Callable[[bytes], None]


class _Unanswered(UpstreamError):
    """The upstream closed the connection before any byte of an answer."""

    def __init__(self) -> None:
        super().__init__("upstream closed without answering", 502)


@dataclass
class _Progress:
    body_sent: bool = False  # the whole request body went upstream
    head: bool = False  # the final response head arrived: silence now means idle


async def _first_failure(
    goal: asyncio.Future[Any],
    tasks: list[asyncio.Future[Any]],
    watchdog: Watchdog,
    progress: _Progress,
    upstream: Upstream | None,
) -> None:
    """Wait for ``goal``; the first task to fail, or the watchdog, ends the wait with an error."""
    pending: set[asyncio.Future[Any]] = set(tasks)
    while not goal.done():
        done, pending = await asyncio.wait(
            pending | {watchdog.expired}, return_when=asyncio.FIRST_COMPLETED
        )
        pending.discard(watchdog.expired)
        for task in done:
            error = None if task is watchdog.expired else task.exception()
            if error is not None:
                raise error
        if watchdog.expired.done():
            if not progress.head and upstream is not None:
                if not progress.body_sent:
                    raise HttpError(408, f"the request body stopped for {watchdog.seconds:g} s")
                raise UpstreamError(f"{upstream.authority} did not answer in time", 504)
            raise TimeoutError(f"nothing moved for {watchdog.seconds:g} s")


async def _cancel(*tasks: asyncio.Future[Any]) -> None:
    """Cancel and reap helper tasks (their errors were raised or do not matter any more)."""
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled():
            task.exception()


class PlainHttp:
    """Relays plain HTTP exchanges for the server's request loop."""

    def __init__(
        self,
        options: Options,
        limits: Limits,
        pool: UpstreamPool,
        via: str,
        capture: CaptureSink | None = None,
    ) -> None:
        self.options = options
        self.limits = limits
        self.pool = pool
        self.via = via
        self.capture = capture

    async def exchange(
        self, client: Peer, req: Request, upstream: Upstream, path: str, conn_id: str = ""
    ) -> bool:
        """Relay one request and its response; returns whether the client connection stays."""
        framing = body_framing(req)
        headers = strip_hop_by_hop(req.headers)
        headers.set("Host", upstream.authority)
        headers.set("Via", append_via(req.headers.get_all("Via"), self.via))
        url = f"{upstream.scheme}://{upstream.authority}{path}"
        capture = self.capture
        if capture is None or not capture.wants_http(url, req.method, req.headers.items()):
            return await self._exchange(
                client, req, upstream, path, headers, framing, None, conn_id
            )
        record = HttpExchange(
            conn=conn_id,
            started=time.time(),
            client_address=client.address,
            method=req.method,
            url=url,
            http_version=req.version,
            upstream=(upstream.host, upstream.port),
            request_headers=list(headers.items()),
        )
        try:
            return await self._exchange(
                client, req, upstream, path, headers, framing, record, conn_id
            )
        except asyncio.CancelledError:
            record.error = "cancelled (the proxy is shutting down)"
            raise
        except Exception as error:
            _failed(record, error, answered=client.answering)
            raise
        finally:
            record.ended = time.time()
            capture.http(record)

    async def _exchange(
        self,
        client: Peer,
        req: Request,
        upstream: Upstream,
        path: str,
        headers: Headers,
        framing: Framing,
        record: HttpExchange | None,
        conn_id: str,
    ) -> bool:
        request = Request(req.method, path, "HTTP/1.1", headers)
        head = serialize_request(outgoing_request(self.options, upstream, request))
        server, reused = await self.pool.acquire(upstream)
        state = Exchange(req, reused=reused, request_framing=framing)
        try:
            keep = await self._attempt(client, server, upstream, head, None, framing, state, record)
        except _Unanswered as error:
            replay = state.replay()
            if replay is None and reused:
                reason = f"{error.reason} on a kept-alive connection ({state.no_retry})"
                raise UpstreamError(reason, 502) from None
            if replay is None:
                raise
            log.info(
                "[%s] %s closed a kept-alive connection before answering: %s sent again on a "
                "new connection",
                conn_id,
                upstream.authority,
                req.method,
            )
            server = await self.pool.open(upstream)
            state = Exchange(req, reused=False, request_framing=framing)
            keep = await self._attempt(
                client, server, upstream, head, replay, framing, state, record
            )
        client_close = "close" in (req.headers.get("Connection") or "").lower()
        return keep and not client_close and req.version == "HTTP/1.1"

    async def _attempt(
        self,
        client: Peer,
        server: Peer,
        upstream: Upstream,
        head: bytes,
        replay: bytes | None,
        framing: Framing,
        state: Exchange,
        record: HttpExchange | None,
    ) -> bool:
        """Send the request on ``server`` (its body from the client, or ``replay`` when it
        is sent again) and relay the response; ``server`` then goes back to the pool when
        ``state`` says it may, else it is closed. Returns whether the client may go on."""
        watchdog = Watchdog(self.options.handshake_timeout)
        progress = _Progress()
        upload: asyncio.Future[None]
        if replay is None:
            body = None if record is None else record.request_body
            upload = asyncio.ensure_future(
                self._upload(client, server, framing, watchdog, state, body)
            )
            upload.add_done_callback(lambda _: setattr(progress, "body_sent", True))
            if record is not None:
                upload.add_done_callback(lambda task: _sent(record, task))
        else:
            upload = asyncio.get_running_loop().create_future()  # the body goes with the head
            upload.set_result(None)
            progress.body_sent = True
            state.request_finished()
            if record is not None:
                record.request_sent = time.time()
        download = asyncio.ensure_future(
            self._response(client, server, state, watchdog, progress, record, upstream)
        )
        released = False
        try:
            server.write(head + (replay or b""))
            await _first_failure(download, [upload, download], watchdog, progress, upstream)
            keep = download.result()
            if not upload.done():
                keep = False  # answered before the request body ended: that body is not read
            if state.reusable:  # (so the upload is done: nothing else writes to ``server``)
                self.pool.release(upstream, server)
                released = True
        finally:
            watchdog.cancel()
            await _cancel(upload, download)
            if not released:
                server.close()
        return keep

    async def _upload(
        self,
        client: Peer,
        server: Peer,
        framing: Framing,
        watchdog: Watchdog,
        state: Exchange,
        content: BodyCapture | None,
    ) -> None:
        await self._copy_body(client, server, framing, 400, watchdog, content, state.request_body)
        state.request_finished()

    async def relay_answer(self, client: Peer, server: Peer, resp: Response, method: str) -> None:
        """Relay an upstream's answer that is not a 101 to an upgrade request."""
        watchdog = Watchdog(self.options.idle_timeout)
        progress = _Progress(head=True)
        task = asyncio.ensure_future(self.relay_response(client, server, resp, method, watchdog))
        try:
            await _first_failure(task, [task], watchdog, progress, None)
        finally:
            watchdog.cancel()
            await _cancel(task)

    async def _response(
        self,
        client: Peer,
        server: Peer,
        state: Exchange,
        watchdog: Watchdog,
        progress: _Progress,
        record: HttpExchange | None,
        upstream: Upstream,
    ) -> bool:
        """Read the response head (1xx ones relayed), then relay the response."""
        while True:
            resp = await self._read_response_head(server)
            state.response_head(resp)
            if not 100 <= resp.status < 200:
                break
            client.write(serialize_response(self._forwarded(resp)))
            watchdog.touch()
        check_forwarded_answer(self.options, upstream, resp)  # a next proxy's own 407
        progress.head = True
        watchdog.set_timeout(self.options.idle_timeout)
        if record is not None:
            record.first_byte = time.time()
            record.status, record.reason = resp.status, resp.reason
            record.response_version = resp.version
            record.response_headers = list(resp.headers.items())
            record.answered_by = "upstream"
        body = None if record is None else record.response_body
        return await self.relay_response(client, server, resp, state.method, watchdog, body, state)

    async def _read_response_head(self, server: Peer) -> Response:
        head = await read_head(server, self.limits, response=True, timeout=None)
        if head is None:
            raise _Unanswered()
        assert isinstance(head, Response)
        return head

    def _forwarded(self, resp: Response) -> Response:
        headers = strip_hop_by_hop(resp.headers)
        headers.set("Via", append_via(resp.headers.get_all("Via"), self.via))
        return Response("HTTP/1.1", resp.status, resp.reason, headers)

    async def relay_response(
        self,
        client: Peer,
        server: Peer,
        resp: Response,
        method: str,
        watchdog: Watchdog,
        content: BodyCapture | None = None,
        state: Exchange | None = None,
    ) -> bool:
        """Send ``resp`` and its body to the client; returns whether the framing allows more
        (and tells ``state`` how the body ended)."""
        framing = body_framing(resp, request_method=method)
        forwarded = self._forwarded(resp)
        if framing.kind == "close":
            forwarded.headers.set("Connection", "close")
        client.write(serialize_response(forwarded))
        leftover = await self._copy_body(server, client, framing, 502, watchdog, content)
        if state is not None:
            state.response_finished(framing, leftover)
        return framing.kind != "close"

    @staticmethod
    async def _copy_body(
        src: Peer,
        dst: Peer,
        framing: Framing,
        status: int,
        watchdog: Watchdog,
        content: BodyCapture | None = None,
        on_body: OnBody | None = None,
    ) -> bytes:
        """Copy one body as it arrives; memory stays at one read however large it is (and
        ``content``'s bound when the capture keeps the start of it). ``on_body`` sees each
        piece forwarded; returns what came after the body (also put back into ``src``)."""
        reader = BodyReader(framing, error_status=status, content=content is not None)
        while not reader.finished:
            data = await src.read()
            watchdog.touch()
            if not data:
                reader.feed_eof()
                break
            body, _ = reader.feed(data)
            if content is not None:
                content.add(reader.take_content())
            if body:
                if on_body is not None:
                    on_body(body)
                dst.write(body)
                await dst.drain()
                watchdog.touch()
        src.unread(reader.leftover)
        return reader.leftover


def _sent(record: HttpExchange, upload: asyncio.Future[None]) -> None:
    if not upload.cancelled() and upload.exception() is None:
        record.request_sent = time.time()


def _failed(record: HttpExchange, error: Exception, *, answered: bool) -> None:
    """Note on ``record`` what ended its exchange, and the answer the proxy gives for it: the
    listener answers an ``HttpError`` or ``UpstreamError`` with its status, unless the
    response had begun (then the client connection is aborted)."""
    reason = getattr(error, "reason", None)
    record.error = str(reason if reason is not None else error) or type(error).__name__
    status = getattr(error, "status", None)
    if answered or not isinstance(error, HttpError | UpstreamError) or status is None:
        return
    text = (" ".join(record.error.splitlines()) + "\n").encode("utf-8")
    record.status, record.reason = status, STATUS_REASONS.get(status, "Unknown")
    record.response_version = "HTTP/1.1"
    record.response_headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(text))),
        ("Connection", "close"),
    ]
    record.response_body = BodyCapture()
    record.response_body.add(text)
    record.first_byte = time.time()
    record.answered_by = "proxy"
