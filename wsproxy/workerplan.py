"""``--workers N``: what the workers share and what each has of its own.

Shared, set up once by the supervisor before any worker starts: the CA (created once, so the
workers do not race to create it; they load it), and the ports. The supervisor resolves every
listener's port (port 0 included) by binding it and keeps a socket bound on it, with
SO_REUSEPORT but not listening, so it receives nothing; each worker listens on the same ports
with SO_REUSEPORT and the kernel spreads the new connections over the workers. The ports reach
the workers in ``WSPROXY_WORKER_PORTS`` (one per listener, in the order of the flags).

Per worker: its connections and their limits (``--max-connections`` and the per-client one
count one worker's connections), its plugins (loaded in each), its connection ids
(``w2-c7``), its capture files (``-w cap.jsonl`` is ``cap.w2.jsonl`` in worker 2) and its
metrics, which the supervisor merges (``wsproxy.workermetrics``).

SO_REUSEPORT spreads connections over sockets only on Linux (BSD and macOS give them all to
one socket), so ``--workers`` above 1 is refused elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from wsproxy.capture.formats import check_capture_paths
from wsproxy.exceptions import ConfigError, StartupError, os_error_text
from wsproxy.modes import Listen, intercepts_tls
from wsproxy.options import Options
from wsproxy.sansio.targets import host_port
from wsproxy.workers import supervise, worker_identity

if TYPE_CHECKING:
    from wsproxy.metrics import MetricsServer

__all__ = [
    "PORTS_ENV",
    "reserve_ports",
    "run_workers",
    "worker_capture_path",
    "worker_options",
    "workers_unsupported",
]

log = logging.getLogger("wsproxy")

PORTS_ENV = "WSPROXY_WORKER_PORTS"  # "8080,41235": each listener's port, in flag order
METRICS_ENV = "WSPROXY_WORKER_METRICS"  # the directory of the workers' metrics sockets


def workers_unsupported() -> str | None:
    """Why ``--workers`` above 1 cannot run here (None: it can)."""
    if sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT"):
        return None
    return (
        f"--workers above 1 needs Linux: it shares the ports with SO_REUSEPORT, which on "
        f"{sys.platform} does not spread connections over the workers; run one wsproxy per "
        "port instead"
    )


def worker_capture_path(path: Path, tag: str) -> Path:
    """``cap.jsonl`` as worker ``tag`` writes it: ``cap.w2.jsonl`` (``a.har``: ``a.w2.har``,
    its journal ``a.w2.har.jsonl``)."""
    return path.with_name(f"{path.stem}.{tag}{path.suffix}")


def worker_options(options: Options, tag: str) -> Options:
    """The run's options as the worker ``tag`` runs them: the supervisor's ports, its own
    capture files, its metrics on a Unix socket for the supervisor."""
    listens = options.all_listens()
    ports_text = os.environ.get(PORTS_ENV, "")
    ports = [int(p) for p in ports_text.split(",") if p.isdigit()]
    if len(ports) != len(listens):
        raise ConfigError(f"{PORTS_ENV}={ports_text!r} does not give {len(listens)} port(s)")
    listens = tuple(replace(listen, port=port) for listen, port in zip(listens, ports, strict=True))
    metrics_dir = os.environ.get(METRICS_ENV)
    identity = worker_identity()
    metrics_socket = None
    if metrics_dir and identity is not None and options.metrics_port is not None:
        from wsproxy.workermetrics import worker_socket

        metrics_socket = worker_socket(Path(metrics_dir), identity.index)
    return replace(
        options,
        listens=listens,
        listen_port=listens[0].port or 0,
        worker=tag,
        capture_paths=tuple(worker_capture_path(p, tag) for p in options.capture_paths),
        metrics_port=None,
        metrics_socket=metrics_socket,
    )


def reserve_ports(options: Options) -> tuple[list[socket.socket], tuple[Listen, ...]]:
    """Every listener's address bound with SO_REUSEPORT (not listening), port 0 resolved;
    the sockets and the listeners with their ports. A port another process listens on is a
    ``StartupError`` of one line, as in one process."""
    held: list[socket.socket] = []
    resolved: list[Listen] = []
    try:
        for listen in options.all_listens():
            assert listen.host is not None and listen.port is not None
            port = _reserve(listen, held)
            resolved.append(replace(listen, port=port))
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held, tuple(resolved)


def _reserve(listen: Listen, held: list[socket.socket]) -> int:
    assert listen.host is not None and listen.port is not None
    host = listen.host or None  # "": every interface, as asyncio's create_server
    port = listen.port
    where = host_port(listen.host, listen.port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        reason = f"{error.strerror} ({listen.mode} mode)"
        raise StartupError(f"cannot listen on {where}: {reason}") from None
    for family, kind, proto, _, address in dict.fromkeys(infos):
        try:
            # A plain bind first: it fails on a port anyone listens on, even another
            # SO_REUSEPORT group of this user, which the reserving bind below would join.
            with _socket(family, kind, proto, reuse_port=False) as probe:
                probe.bind((address[0], port, *address[2:]))
                port = probe.getsockname()[1]
            sock = _socket(family, kind, proto, reuse_port=True)
            held.append(sock)
            sock.bind((address[0], port, *address[2:]))
        except OSError as error:
            mode = f"{listen.mode} mode"
            raise StartupError(
                f"cannot listen on {where}: {os_error_text(error)} ({mode})"
            ) from None
    return int(port)


def _socket(family: int, kind: int, proto: int, *, reuse_port: bool) -> socket.socket:
    """A TCP socket set up as asyncio's ``create_server`` sets up its listeners."""
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return sock


async def run_workers(
    options: Options,
    argv: Sequence[str],
    count: int,
    *,
    module: str = "wsproxy",
    env: Mapping[str, str] | None = None,
) -> int:
    """The supervisor's run: the CA and the ports once, then ``count`` workers (``python -m
    MODULE``, with ``env`` added: ``wsproxy.web``'s) until SIGINT or SIGTERM. Returns the
    exit status."""

    reason = workers_unsupported()
    if reason is not None:
        raise ConfigError(reason)
    _check_worker_captures(options, count)
    ca = None
    if intercepts_tls(options.all_listens()):  # made once here, not by racing workers
        from wsproxy.tls.ca import CertAuthority

        ca = CertAuthority.load_or_create(options.confdir)
    held, listens = reserve_ports(options)
    env = {**(env or {}), PORTS_ENV: ",".join(str(listen.port) for listen in listens)}
    metrics_dir: Path | None = None
    metrics_server: MetricsServer | None = None
    try:
        if options.metrics_port is not None:
            metrics_dir = Path(tempfile.mkdtemp(prefix="wsproxy-metrics-"))  # mode 0700
            env[METRICS_ENV] = str(metrics_dir)
            metrics_server = await _start_metrics(options, metrics_dir, count)

        def started() -> None:
            for path in options.capture_paths:
                names = [str(worker_capture_path(path, f"w{i}")) for i in range(1, count + 1)]
                shown = ", ".join(names if count <= 3 else [names[0], "...", names[-1]])
                log.warning("-w %s: one file per worker: %s", path, shown)
            for listen in listens:
                assert listen.host is not None and listen.port is not None
                where = host_port(listen.host, listen.port)
                log.warning(
                    "wsproxy listening on %s (%s mode, %d workers)", where, listen.mode, count
                )
            if ca is not None and ca.created:
                from wsproxy.tls.magic import trust_notice

                log.warning("%s", trust_notice(ca, regular=True))

        grace = options.close_timeout + 10  # a worker's own shutdown takes close_timeout + 3
        return await supervise(argv, count, module=module, env=env, started=started, grace=grace)
    finally:
        if metrics_server is not None:
            await metrics_server.stop()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()


def _check_worker_captures(options: Options, count: int) -> None:
    """The workers' capture files, checked together: ``-w a.jsonl -w a.w1.jsonl`` would give
    two writers one file. Each worker's first and later lives (``w2r1``) are told apart."""
    paths = [
        worker_capture_path(path, f"w{i}")
        for path in options.capture_paths
        for i in range(1, count + 1)
    ]
    try:
        check_capture_paths(paths)
    except ConfigError as error:
        raise ConfigError(f"with --workers {count}: {error}") from None


async def _start_metrics(options: Options, directory: Path, count: int) -> MetricsServer:
    """The supervisor's metrics endpoint, printed as in one process."""
    from wsproxy.metrics import MetricsServer
    from wsproxy.runner import open_metrics
    from wsproxy.workermetrics import WorkerScrapes

    assert options.metrics_port is not None
    scrapes = WorkerScrapes(directory, count)
    endpoint = MetricsServer(
        None,
        options.metrics_host,
        options.metrics_port,
        options.metrics_token,
        render=scrapes.render,
    )
    return await open_metrics(options, endpoint)
