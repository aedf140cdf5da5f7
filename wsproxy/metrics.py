"""``--metrics-port``: the proxy's counters in the Prometheus text format, served by a small
aiohttp app in the proxy's own event loop.

Cost: with no ``--metrics-port`` nothing here exists and the proxy only checks for None. With
it, a WebSocket session counts its frames in plain ints of its own (``SessionCounts``, fed by
the relay's frame records); those are folded into the totals when the session closes and read
at scrape time by a custom collector, so no Prometheus object is touched per frame.

Protection, as the web UI's: loopback by default (another host is warned about), a token
(random, or ``--metrics-token``) asked for as ``Authorization: Bearer TOKEN`` or ``?token=``
(401 without it), and the Host header must name the metrics address (403 otherwise: a web page
on another origin cannot rebind a name to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wsproxy.proxy.appserver import AppServer
from wsproxy.sansio.frames import Opcode
from wsproxy.sansio.records import FrameRecord
from wsproxy.sansio.targets import host_port

__all__ = ["LAG_INTERVAL", "Metrics", "MetricsServer", "SessionCounts", "WorkerMetricsEndpoint"]

log = logging.getLogger("wsproxy")

LAG_INTERVAL = 0.5  # seconds between two event-loop lag measurements

_K = TypeVar("_K")
_OPCODES = {int(op): op.name.lower() for op in Opcode}


class SessionCounts:
    """One WebSocket's messages, bytes, drops and changes, as plain ints (cheap per frame)."""

    __slots__ = ("bytes", "changed", "messages")

    def __init__(self) -> None:
        self.messages: dict[tuple[str, int], int] = {}  # (direction, opcode) -> messages
        self.bytes: dict[tuple[str, int], int] = {}  # (direction, opcode) -> payload bytes
        self.changed: dict[tuple[str, str], int] = {}  # (verdict, plugin) -> messages

    def observe(self, record: FrameRecord) -> None:
        """A relay frame record: its bytes once per frame, a message at its last frame."""
        opcode = record.opcode if record.opcode >= Opcode.CLOSE else record.message_opcode
        key = (record.side.value, opcode)
        if not record.offset:
            self.bytes[key] = self.bytes.get(key, 0) + record.length
        if record.fin and not record.more:
            self.messages[key] = self.messages.get(key, 0) + 1
            if record.verdict == "dropped" or record.verdict == "modified":
                change = (record.verdict, record.by or "")
                self.changed[change] = self.changed.get(change, 0) + 1

    def add_to(self, totals: SessionCounts) -> None:
        _add(self.messages, totals.messages)
        _add(self.bytes, totals.bytes)
        _add(self.changed, totals.changed)


def _add(mine: dict[_K, int], theirs: dict[_K, int]) -> None:
    for key, value in mine.items():
        theirs[key] = theirs.get(key, 0) + value


class Metrics:
    """Every metric of a run, in a registry of our own (nothing of the process's default)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections_open = Gauge(
            "wsproxy_connections_open", "client connections open", ["mode"], registry=r
        )
        self.connections = Counter(
            "wsproxy_connections", "client connections accepted", ["mode"], registry=r
        )
        self.handshakes = Counter(
            "wsproxy_websocket_handshakes",
            "WebSocket upgrades by result: ok, refused_Nxx (the upstream's status class), "
            "failed_connect, failed_tls, failed_timeout, failed_plugin, failed_other",
            ["result"],
            registry=r,
        )
        self.closes = Counter(
            "wsproxy_websocket_closes",
            "close codes received, by the side that sent them (code 'none': no close frame)",
            ["side", "code"],
            registry=r,
        )
        self.errors = Counter(
            "wsproxy_errors", "what ended connections abnormally, by kind", ["kind"], registry=r
        )
        self.loop_lag = Gauge(
            "wsproxy_event_loop_lag_seconds",
            f"how late a {LAG_INTERVAL:g} s timer of the event loop fired, last measured",
            registry=r,
        )
        self.totals = SessionCounts()  # of closed sessions
        self.live: set[SessionCounts] = set()
        self.capture: Any = None  # the run's capture writer(s), read at scrape time
        r.register(_TrafficCollector(self))

    def session_opened(self) -> SessionCounts:
        self.handshakes.labels("ok").inc()
        counts = SessionCounts()
        self.live.add(counts)
        return counts

    def session_closed(
        self, counts: SessionCounts, closes: Iterable[tuple[str, int | None, bool]]
    ) -> None:
        """Fold a closed session in; ``closes`` is (side, code, close frame received)."""
        self.live.discard(counts)
        counts.add_to(self.totals)
        for side, code, received in closes:
            label = "none" if not received else str(code) if code is not None else "no_code"
            self.closes.labels(side, label).inc()

    def refused(self, status: int) -> None:
        self.handshakes.labels(f"refused_{status // 100}xx").inc()

    def failed(self, result: str) -> None:
        """An upgrade that failed: ``result`` is failed_connect, failed_tls..."""
        self.handshakes.labels(result).inc()

    @contextlib.contextmanager
    def connection(self, mode: str) -> Iterator[None]:
        self.connections.labels(mode).inc()
        gauge = self.connections_open.labels(mode)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    async def measure_lag(self) -> None:
        """Forever: how late a timer fires, the event loop's backlog of ready work."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LAG_INTERVAL)
            self.loop_lag.set(max(0.0, loop.time() - start - LAG_INTERVAL))


class _TrafficCollector(Collector):
    """Messages, bytes, drops and changes (closed sessions plus the open ones' counts so far)
    and the capture writers' backlog and losses, computed at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        sums = SessionCounts()
        self.metrics.totals.add_to(sums)
        for live in list(self.metrics.live):
            live.add_to(sums)
        labels = ["direction", "opcode"]
        messages = CounterMetricFamily(
            "wsproxy_websocket_messages", "WebSocket messages relayed", labels=labels
        )
        sizes = CounterMetricFamily(
            "wsproxy_websocket_bytes",
            "WebSocket payload bytes as sent on the wire (compressed with permessage-deflate)",
            labels=labels,
        )
        for family, table in ((messages, sums.messages), (sizes, sums.bytes)):
            for (direction, opcode), value in sorted(table.items()):
                family.add_metric([_direction(direction), _OPCODES.get(opcode, str(opcode))], value)
        dropped = CounterMetricFamily(
            "wsproxy_messages_dropped", "messages dropped, by plugin", labels=["plugin"]
        )
        modified = CounterMetricFamily(
            "wsproxy_messages_modified", "messages modified, by plugin", labels=["plugin"]
        )
        for (verdict, plugin), value in sorted(sums.changed.items()):
            (dropped if verdict == "dropped" else modified).add_metric([plugin], value)
        yield from (messages, sizes, dropped, modified)
        writers = _writers(self.metrics.capture)
        if writers:
            backlog = GaugeMetricFamily(
                "wsproxy_capture_backlog", "capture records queued, not yet written", labels=[]
            )
            backlog.add_metric([], sum(int(getattr(w, "backlog", 0)) for w in writers))
            lost = CounterMetricFamily(
                "wsproxy_capture_lost", "capture records dropped (--capture-overflow drop)"
            )
            lost.add_metric([], sum(int(getattr(w, "lost", 0)) for w in writers))
            yield from (backlog, lost)


def _direction(side: str) -> str:
    """A record's side is who sent the frame."""
    return "client_to_server" if side == "client" else "server_to_client"


def _writers(capture: Any) -> list[Any]:
    if capture is None:
        return []
    return list(getattr(capture, "writers", [capture]))


class MetricsServer:
    """The ``/metrics`` endpoint, token and Host checked. Its body is ``metrics``' registry,
    or what ``render`` returns (the supervisor of ``--workers``: every worker's series)."""

    def __init__(
        self,
        metrics: Metrics | None,
        host: str,
        port: int,
        token: str | None,
        *,
        render: Callable[[], Awaitable[bytes]] | None = None,
    ) -> None:
        assert metrics is not None or render is not None
        self.metrics = metrics
        self.render = render
        self.host = host
        self.port = port
        self.token = token if token is not None else secrets.token_urlsafe(24)
        self._runner: AppServer | None = None
        self._lag: asyncio.Task[None] | None = None
        self.hosts: set[str] = set()

    async def start(self) -> None:
        """Listen (an OSError says the address could not be had) and measure the loop lag."""
        app = web.Application()
        app.router.add_get("/metrics", self._scrape)
        server = AppServer(app, access_log=None)
        self.port = await server.start(self.host, self.port)  # the one bound for port 0
        self._runner = server
        self.hosts = {host_port(self.host, self.port).lower()}
        if _is_loopback(self.host):
            self.hosts.add(f"localhost:{self.port}")
        if self.metrics is not None:
            self._lag = asyncio.create_task(self.metrics.measure_lag())

    @property
    def url(self) -> str:
        return f"http://{host_port(self.host, self.port)}/metrics"

    async def stop(self) -> None:
        if self._lag is not None:
            self._lag.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag
        if self._runner is not None:
            await self._runner.stop()

    async def _scrape(self, request: web.Request) -> web.Response:
        host = request.headers.get("Host", "").lower()
        if host not in self.hosts:
            log.warning("metrics: refused a scrape for Host %r (403)", host[:100])
            return web.Response(status=403, text="403 Host is not the metrics address\n")
        if not self._authorized(request):
            return web.Response(
                status=401,
                text="401 a token is needed: Authorization: Bearer TOKEN or ?token=TOKEN\n",
                headers={"WWW-Authenticate": 'Bearer realm="wsproxy metrics"'},
            )
        if self.render is not None:
            body = await self.render()
        else:
            assert self.metrics is not None
            body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _authorized(self, request: web.Request) -> bool:
        given = request.query.get("token", "")
        scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() == "bearer":
            given = value.strip()
        return bool(given) and secrets.compare_digest(given.encode(), self.token.encode())


class WorkerMetricsEndpoint:
    """A worker's metrics for its supervisor (``--workers``): ``/metrics`` on a Unix socket in
    the supervisor's private directory (mode 0700: only this user reaches it, so no token)."""

    def __init__(self, metrics: Metrics, path: Path) -> None:
        self.metrics = metrics
        self.path = path
        self._runner: web.AppRunner | None = None
        self._lag: asyncio.Task[None] | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._scrape)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # the socket of this worker's previous life
        try:
            await web.UnixSite(runner, str(self.path)).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._lag = asyncio.create_task(self.metrics.measure_lag())

    async def stop(self) -> None:
        if self._lag is not None:
            self._lag.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag
        if self._runner is not None:
            await self._runner.cleanup()

    async def _scrape(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
