"""Listening and admission: accept connections, decide who may use the proxy, count them,
and turn whatever ended a connection into its one answer and one log line.

A client is refused with 403 when the access policy does not allow its address, and with 503
over ``--max-connections`` or ``--max-connections-per-client``. Out of file descriptors, the
accept watch (``accept``) says so once per burst.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from wsproxy.exceptions import HttpError, UpstreamError
from wsproxy.options import Options
from wsproxy.proxy.accept import AcceptWatch
from wsproxy.proxy.acceptor import Acceptor, listen
from wsproxy.proxy.access import AccessPolicy
from wsproxy.proxy.balancer import BalancerPolicy, HeaderRefused
from wsproxy.proxy.peer import Peer
from wsproxy.proxy.turns import ClientGone
from wsproxy.sansio.http11 import simple_response
from wsproxy.sansio.targets import host_port

__all__ = ["Listener", "answer"]

if TYPE_CHECKING:
    from wsproxy.metrics import Metrics

log = logging.getLogger("wsproxy")

# What to do with one admitted connection (the request loop).
Serve = Callable[[Peer, str], Awaitable[None]]


class Listener:
    """Listens, and runs one handler task per client connection."""

    def __init__(
        self,
        options: Options,
        access: AccessPolicy,
        serve: Serve,
        *,
        handlers: set[asyncio.Task[None]] | None = None,
        per_client: dict[str, int] | None = None,
        ids: Iterator[int] | None = None,
        http_refusals: bool = True,
        metrics: Metrics | None = None,
    ) -> None:
        self.options = options
        self.metrics = metrics
        # The metrics' mode label: the mode's name alone (regular, reverse, socks5...).
        self._mode_name = str(options.mode).partition(":")[0]
        # Whether a refused client is answered in HTTP (403, 503); otherwise it is closed
        # without an answer (a SOCKS5 client's first message is its greeting, and it reads
        # a SOCKS reply), the log line saying why all the same.
        self.http_refusals = http_refusals
        self.access = access
        self._serve = serve
        self._ids = itertools.count(1) if ids is None else ids  # c1, c2, ... across listeners
        # A worker's ids say which worker: w2-c1, w2-c2... (unique across the workers).
        self._id_prefix = f"{options.worker}-c" if options.worker else "c"
        self._server: asyncio.Server | Acceptor | None = None
        self._addresses: list[Any] = []  # the listening sockets' names, read once at bind
        self._accepts = AcceptWatch()
        # Shared by every listener of a run: the limits count all connections together.
        self.handlers: set[asyncio.Task[None]] = set() if handlers is None else handlers
        self.per_client: dict[str, int] = {} if per_client is None else per_client
        # --proxy-protocol: every connection starts with a balancer's PROXY header.
        self.balancers = (
            BalancerPolicy(options.proxy_protocol_from) if options.proxy_protocol else None
        )

    async def bind(self) -> None:
        """Listen on the address without accepting yet."""
        if self._server is not None:
            return
        # A worker of --workers N shares its ports with the others: the kernel spreads the
        # connections over them (Linux SO_REUSEPORT; wsproxy.workers).
        self._server = await listen(
            self._new_peer,
            self.options.listen_host,
            self.options.listen_port,
            self._accepts,
            reuse_port=bool(self.options.worker),
        )
        self._addresses = [sock.getsockname() for sock in self._server.sockets]

    async def start(self) -> None:
        await self.bind()
        assert self._server is not None
        await self._server.start_serving()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def addresses(self) -> list[Any]:
        """The listening sockets' addresses (none before ``bind`` or after ``close``): every
        upstream connection checks it is not one of them, so they are not asked again."""
        return list(self._addresses)

    def close(self) -> None:
        """Stop listening; the connections already accepted go on."""
        if self._server is not None:
            self._server.close()
            self._addresses = []

    async def cancel_handlers(self, timeout: float) -> None:
        for task in list(self.handlers):
            task.cancel()
        if self.handlers:
            await asyncio.wait(list(self.handlers), timeout=timeout)

    def _new_peer(self) -> Peer:
        return _ClientPeer(self._start_handler)

    def _start_handler(self, peer: Peer) -> None:
        """Called from the peer's ``connection_made``: its address is known, and the handler's
        first step runs without waiting a turn of the loop for it."""
        task = asyncio.get_running_loop().create_task(self._handle(peer))
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)

    async def _handle(self, peer: Peer) -> None:
        conn_id = f"{self._id_prefix}{next(self._ids)}"
        if self.balancers is not None and not await self._take_proxy_header(peer, conn_id):
            peer.close()
            return
        client = peer.address[0]
        metrics = self.metrics
        per_client = self.per_client
        per_client[client] = per_client.get(client, 0) + 1
        try:
            if metrics is None:
                await self._admitted(peer, conn_id, client)
            else:
                with metrics.connection(self._mode_name):
                    await self._admitted(peer, conn_id, client)
        finally:
            left = per_client[client] - 1
            if left:
                per_client[client] = left
            else:
                del per_client[client]

    async def _admitted(self, peer: Peer, conn_id: str, client: str) -> None:
        """Serve ``peer`` unless the limits refuse it, and answer whatever ended it."""
        metrics = self.metrics
        try:
            self._admit(client)
        except HttpError as refusal:
            if self.http_refusals:
                _ended(peer, conn_id, refusal)
            else:
                log.warning("[%s] %s refused: %s", conn_id, client, refusal.reason)
            if metrics is not None:
                metrics.errors.labels("refused").inc()
            peer.close()
            return
        try:
            await self._serve(peer, conn_id)
        except Exception as error:  # not CancelledError: a BaseException, it goes on up
            kind = _ended(peer, conn_id, error)
            if metrics is not None:
                metrics.errors.labels(kind).inc()
        finally:
            peer.close()

    async def _take_proxy_header(self, peer: Peer, conn_id: str) -> bool:
        """Read the balancer's PROXY header; the real client's address becomes the peer's
        (a LOCAL or UNKNOWN header keeps the balancer's). False: refused, logged."""
        assert self.balancers is not None
        balancer = host_port(*peer.address)
        try:
            header = await self.balancers.read_header(peer, self.options.handshake_timeout)
        except HeaderRefused as refusal:
            level = logging.INFO if refusal.silent else logging.WARNING
            log.log(level, "[%s] %s refused: %s", conn_id, balancer, refusal)
            return False
        if header.source is None:
            kind = "LOCAL" if header.local else "no client address"
            log.info(
                "[%s] %s PROXY v%d %s: keeping its address", conn_id, balancer, header.version, kind
            )
        else:
            peer.address = header.source
            log.info(
                "[%s] client %s via balancer %s (PROXY v%d)",
                conn_id,
                host_port(*header.source),
                balancer,
                header.version,
            )
        return True

    def _admit(self, client: str) -> None:
        """Raise HttpError unless ``client`` may open one more connection."""
        if not self.access.allows(client):
            raise HttpError(
                403,
                f"client {client} is not on loopback or a private network "
                "(allow it with --allow-clients)",
            )
        if len(self.handlers) > self.options.max_connections:
            raise HttpError(503, f"over --max-connections {self.options.max_connections}")
        if self.per_client[client] > self.options.max_connections_per_client:
            limit = self.options.max_connections_per_client
            raise HttpError(503, f"over --max-connections-per-client {limit}")


class _ClientPeer(Peer):
    """An accepted client connection: its handler starts once the transport is made."""

    def __init__(self, on_made: Callable[[Peer], None]) -> None:
        super().__init__()
        self._on_made: Callable[[Peer], None] | None = on_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        on_made, self._on_made = self._on_made, None
        if on_made is not None:
            on_made(self)


def _ended(peer: Peer, conn_id: str, error: Exception) -> str:
    """The log line for what ended a connection, and the client's answer if it gets one;
    returns its kind (the errors metric's label)."""
    client = peer.address[0]
    if isinstance(error, HttpError):
        log.warning("[%s] %s %s: %s", conn_id, client, error.status, error.reason)
        answer(peer, conn_id, error.status, error.reason, error.headers)
        return "http"
    if isinstance(error, UpstreamError):
        log.warning("[%s] upstream: %s (%s)", conn_id, error.reason, error.status)
        answer(peer, conn_id, error.status, error.reason)
        return "upstream"
    if isinstance(error, TimeoutError):
        detail = f": {error}" if error.args else ""
        log.info("[%s] %s: timed out%s", conn_id, client, detail)
        if peer.answering:
            peer.abort()
        return "timeout"
    if isinstance(error, ClientGone):
        why = str(error) or "left while waiting for its handshake turn"
        log.info("[%s] %s: %s", conn_id, client, why)
        return "client_gone"
    if isinstance(error, ConnectionError | ssl.SSLError):
        log.info("[%s] %s: connection ended: %s", conn_id, client, error)
        return "connection"
    log.error("[%s] internal error", conn_id, exc_info=log.isEnabledFor(logging.DEBUG))
    answer(peer, conn_id, 500, "internal proxy error")
    return "internal"


def answer(
    peer: Peer,
    conn_id: str,
    status: int,
    reason: str,
    headers: list[tuple[str, str]] | None = None,
) -> None:
    """One request, one answer: a status line unless the answer to it has begun; then the
    only honest thing left is to abort the client connection."""
    if peer.answering:
        log.info("[%s] the response had begun: aborting the client connection", conn_id)
        peer.abort()
    else:
        peer.write(simple_response(status, reason, headers=headers))
