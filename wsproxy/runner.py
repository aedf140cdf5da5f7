"""Running the proxy: logging, the CA, metrics and the servers, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from wsproxy.capture.run import open_capture
from wsproxy.eventloop import describe_running
from wsproxy.exceptions import (
    StartupError,
    os_error_text,
)
from wsproxy.loglines import LineHandler
from wsproxy.modes import intercepts_tls
from wsproxy.options import Options

if TYPE_CHECKING:
    from wsproxy.metrics import Metrics, MetricsServer, WorkerMetricsEndpoint
    from wsproxy.proxy.server import Capture, ProxyServer
    from wsproxy.scripts import ScriptHost
    from wsproxy.tls.ca import CertAuthority
log = logging.getLogger("wsproxy")


def setup_logging(verbosity: int, worker: str = "") -> None:
    """Log lines on stderr, ``HH:MM:SS message``; in a worker of ``--workers``, its tag after
    the time (``12:00:01 w2 message``)."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 1 else logging.INFO
    handler = LineHandler(sys.stderr, f"{worker} " if worker else "")
    root = logging.getLogger("wsproxy")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # Plugins (mitmproxy addons above all: mitmproxy tells them to) log with logging.info():
    # their lines show like ours.
    top = logging.getLogger()
    top.handlers[:] = [handler]
    top.setLevel(level)
    # asyncio's own "Task exception was never retrieved" and friends stay quiet unless debugging.
    logging.getLogger("asyncio").setLevel(logging.DEBUG if verbosity > 1 else logging.CRITICAL)


class Companion(Protocol):
    """What runs beside the proxy in the same process (the web UI, ``wsproxy.web.cli``):
    plugins that go first in the chain, a capture sink beside ``-w``'s, and its own server,
    started once the proxy's ports are bound and stopped after the proxy."""

    plugins: Sequence[object]

    def capture(self, capture: Capture | None) -> Capture | None: ...

    async def start(self, server: ProxyServer) -> None: ...

    async def stop(self) -> None: ...


async def run_proxy(
    options: Options, scripts: ScriptHost | None = None, companion: Companion | None = None
) -> None:
    """Run until SIGINT/SIGTERM. With ``scripts``, their chain sees every flow and a task
    reloads them when their files change; with none, the relay path has no chain at all
    (unless a ``companion`` brings plugins)."""
    from wsproxy.plugins import PluginChain
    from wsproxy.proxy.memory import tune_allocator
    from wsproxy.proxy.server import BindError, ProxyServer
    from wsproxy.tls.contexts import upstream_context

    tune_allocator()
    ca = _load_ca(options)
    if options.upstream_ca is not None:
        upstream_context(options.upstream_ca)  # a missing or unusable file fails now, not later
    if companion is not None and scripts is not None:
        scripts.first = list(companion.plugins)
    chain = await scripts.start() if scripts is not None else None
    if chain is None and companion is not None and companion.plugins:
        chain = PluginChain(companion.plugins)
    watcher = asyncio.create_task(scripts.watch()) if scripts is not None else None
    metrics = _new_metrics(options)
    metrics_server: MetricsServer | WorkerMetricsEndpoint | None = None
    try:
        server = ProxyServer(options, ca, chain, metrics=metrics)
        try:
            await server.bind()  # the port first: a taken one leaves capture files untouched
        except BindError as error:
            reason = os_error_text(error.error)
            where = f"{error.where}: {reason} ({error.mode} mode)"
            raise StartupError(f"cannot listen on {where}") from None
        if metrics is not None:
            metrics_server = await _start_metrics(options, metrics, server)
        capture = open_capture(options)
        server.capture = capture if companion is None else companion.capture(capture)
        server.capture_writers = capture  # the metrics' capture backlog and losses
        try:
            if companion is not None:
                await companion.start(server)
            if ca is not None and ca.created:  # said once the start has worked
                from wsproxy.tls.magic import trust_notice

                log.warning("%s", trust_notice(ca, regular=True))
            await _serve(options, server)
        finally:
            if companion is not None:
                await companion.stop()
            if capture is not None:
                await capture.aclose()
    finally:
        if metrics_server is not None:
            await metrics_server.stop()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if scripts is not None:
            await scripts.stop()


def _load_ca(options: Options) -> CertAuthority | None:
    """The CA, loaded (or made) at the start so that a bad one fails the start, not the first
    intercepted connection; None when no listener intercepts TLS (a reverse-only run), which
    then never imports ``cryptography``. ``--certs`` files are checked either way."""
    served = None
    if options.certs:
        from wsproxy.tls.served import load_served

        served = load_served(options.certs)
    if not intercepts_tls(options.all_listens()):
        return None
    from wsproxy.tls.ca import CertAuthority

    ca = CertAuthority.load_or_create(options.confdir)
    ca.served = served
    return ca


def _new_metrics(options: Options) -> Metrics | None:
    """The run's metrics with --metrics-port (prometheus_client imported only then)."""
    if options.metrics_port is None and options.metrics_socket is None:
        return None
    from wsproxy.metrics import Metrics

    return Metrics()


async def _start_metrics(
    options: Options, metrics: Metrics, server: ProxyServer
) -> MetricsServer | WorkerMetricsEndpoint:
    """The metrics endpoint listening, its address and token printed once (a taken port: one
    error line, the proxy's listeners closed again). A worker of ``--workers`` serves its
    metrics to its supervisor instead, on a Unix socket."""
    from wsproxy.metrics import MetricsServer, WorkerMetricsEndpoint

    if options.metrics_socket is not None:
        endpoint = WorkerMetricsEndpoint(metrics, options.metrics_socket)
        try:
            await endpoint.start()
        except OSError as error:
            server.close_listeners()
            raise StartupError(
                f"cannot serve metrics on {options.metrics_socket}: {os_error_text(error)}"
            ) from None
        return endpoint
    assert options.metrics_port is not None
    try:
        return await open_metrics(
            options,
            MetricsServer(
                metrics, options.metrics_host, options.metrics_port, options.metrics_token
            ),
        )
    except StartupError:
        server.close_listeners()
        raise


async def open_metrics(options: Options, endpoint: MetricsServer) -> MetricsServer:
    """Start ``endpoint`` (a taken port: a ``StartupError`` of one line); print its address
    and token once, warn when other machines can reach it."""
    from wsproxy.sansio.targets import host_port
    from wsproxy.web.security import is_loopback

    try:
        await endpoint.start()
    except OSError as error:
        where = host_port(options.metrics_host, endpoint.port)
        raise StartupError(
            f"cannot listen on {where} for metrics: {os_error_text(error)}"
        ) from None
    if not is_loopback(options.metrics_host):
        log.warning(
            "metrics on %s: reachable from other machines (the token still protects them)",
            options.metrics_host,
        )
    if options.metrics_token is None:
        print(f"wsproxy metrics: {endpoint.url} (bearer token {endpoint.token})", flush=True)
    else:
        print(f"wsproxy metrics: {endpoint.url} (the --metrics-token)", flush=True)
    return endpoint


async def _serve(options: Options, server: ProxyServer) -> None:
    # The handlers before the first connection is accepted: a SIGTERM that arrives as soon as
    # the port answers still shuts down cleanly.
    stop = signal_event()
    await server.start()
    if options.worker:  # the supervisor prints the listening lines, once for all workers
        from wsproxy.workers import report_ready, watch_supervisor

        watch_supervisor(stop)
        report_ready()
    for front in server.fronts if not options.worker else ():
        log.warning("wsproxy listening on %s (%s mode)", front.where(), front.options.mode)
    log.info("event loop: %s", describe_running())  # after the start worked: see --loop
    from wsproxy.proxy.memory import release_start_memory

    release_start_memory()
    await stop.wait()
    log.warning("shutting down: closing %d WebSocket(s) with 1001", len(server.sessions))
    await server.shutdown()
    if options.worker:
        from wsproxy.workers import ignore_late_signals

        ignore_late_signals()  # the supervisor's SIGTERM after the process group's


def signal_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (handlers installed now, before anything listens)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
