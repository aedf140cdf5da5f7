"""Command line: flags become Options; subcommands run the proxy or its tools.

Flags follow mitmproxy's where they overlap (``--listen-host``, ``-p/--listen-port``,
``--mode``, ``--confdir``, ``-k/--ssl-insecure``, ``--ignore-hosts``, ``-s``, ``--set``,
``-w``, ``-v/-q``) so users' habits carry over.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import re
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol, cast

from wsproxy.capture.commands import cmd_har, cmd_mitm, cmd_replay, cmd_show
from wsproxy.capture.formats import check_capture_paths
from wsproxy.capture.run import open_capture
from wsproxy.eventloop import (
    LOOPS,
    LoopName,
    choose_loop,
    describe_running,
    versions_text,
)
from wsproxy.eventloop import run as run_loop
from wsproxy.exceptions import (
    ConfigError,
    PluginError,
    StartupError,
    WsproxyError,
    os_error_text,
)
from wsproxy.mitmoptions import parser_flags, translate
from wsproxy.modes import (
    Listen,
    ModeError,
    Regular,
    Socks5,
    UpstreamProxy,
    intercepts_tls,
    parse_listen,
    resolve_listens,
)
from wsproxy.options import MiB, Options
from wsproxy.workers import parse_workers

if TYPE_CHECKING:
    from wsproxy.metrics import Metrics, MetricsServer, WorkerMetricsEndpoint
    from wsproxy.proxy.server import Capture, ProxyServer
    from wsproxy.scripts import ScriptHost
    from wsproxy.tls.ca import CertAuthority

log = logging.getLogger("wsproxy")

_SIZE_RE = re.compile(r"(\d+)\s*([kmg]i?b?|b)?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": MiB, "g": 1024 * MiB}


def parse_size(text: str) -> int:
    """``65536``, ``64k``, ``16MiB``, ``1g``: binary units, as the README says."""
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 65536, 64KiB, 16MiB)")
    unit = (match.group(2) or "").lower()[:1]
    return int(match.group(1)) * _UNITS[unit]


def parse_mode(text: str) -> Listen:
    """One ``--mode`` flag: a mode, optionally ``@PORT`` or ``@HOST:PORT``."""
    try:
        return parse_listen(text)
    except ModeError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_port(text: str) -> int:
    """A TCP port, 0-65535 (0: any free port, printed at start)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text!r} (0-65535)")
    return port


def _number(text: str, kind: type[int] | type[float], zero: bool) -> float:
    try:
        value = kind(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        least = "0 or more" if zero else "more than 0"
        what = "a number of seconds" if kind is float else "a count"
        raise argparse.ArgumentTypeError(f"not {what}: {text!r} (must be {least})")
    return value


def seconds(text: str) -> float:
    """A timeout that must be there: more than 0 seconds."""
    return _number(text, float, zero=False)


def seconds_or_zero(text: str) -> float:
    """A timeout where 0 means something (never, or at once): 0 or more seconds."""
    return _number(text, float, zero=True)


def count(text: str) -> int:
    """A limit on how many: at least 1 (0 would refuse everything)."""
    return int(_number(text, int, zero=False))


def count_or_zero(text: str) -> int:
    """A limit where 0 turns the thing off: 0 or more."""
    return int(_number(text, int, zero=True))


def size(text: str) -> int:
    """``parse_size``, at least 1 byte: a size limit of 0 would refuse everything."""
    value = parse_size(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (must be more than 0)")
    return value


def build_parser() -> argparse.ArgumentParser:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="wsproxy",
        description="A man-in-the-middle proxy to see, log, rewrite and block WebSocket traffic.",
        epilog=subcommands_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the epilog's lines stay lines
    )
    add = parser.add_argument
    add("--listen-host", default=defaults.listen_host, help="address to listen on (127.0.0.1)")
    add(
        "-p",
        "--listen-port",
        type=parse_port,
        default=None,
        help="port of every listener without MODE@PORT (8080; socks5: 1080)",
    )
    add(
        "--mode",
        type=parse_mode,
        action="append",
        default=[],
        metavar="MODE",
        help="how clients reach this listener: regular (an HTTP proxy, the default), "
        "reverse:ws://HOST:PORT (or wss://, http://, https://: act as that server), "
        "upstream:http://HOST:PORT (chain to another HTTP proxy), transparent (redirected "
        "by iptables/nft), socks5; add @PORT or @HOST:PORT for its own address; repeat for "
        "several listeners",
    )
    add("--confdir", type=Path, default=defaults.confdir, help="CA and settings (~/.wsproxy)")
    add(
        "--loop",
        choices=LOOPS,
        default=defaults.event_loop,
        help="event loop: uvloop (faster; pip install 'wsproxy[fast]') or asyncio's own; "
        "auto (the default) takes uvloop when it is installed",
    )
    add(
        "--version",
        action=VersionAction,
        nargs=0,
        default=argparse.SUPPRESS,
        help="print the versions of wsproxy, Python and the event loops, then exit",
    )
    add("-v", "--verbose", action="count", default=0, help="-v logs every frame, -vv debug")
    add("-q", "--quiet", action="store_true", help="warnings and errors only")
    add(
        "--preview-length",
        type=count_or_zero,
        default=defaults.preview_length,
        metavar="N",
        help="characters of payload shown in each -v frame line, binary as N/2 bytes in hex; "
        "0 = none (40)",
    )
    add(
        "--view-filter",
        metavar="EXPR",
        help="with -v, print only the frames of messages this filter expression matches "
        "(README: 'Filter expressions'), e.g. '~u chat & ~from client'",
    )
    add(
        "--no-decode",
        dest="decode",
        action="store_false",
        help="-v shows each message's raw preview, not its decoded summary "
        '(socket.io EVENT "chat" [...], graphql next id=3 {...})',
    )
    add(
        "--max-frame-size",
        type=size,
        default=defaults.max_frame_size,
        help="largest frame accepted, else close 1009 (64MiB)",
    )
    add(
        "--max-message-size",
        type=size,
        default=defaults.max_message_size,
        help="largest message accepted (decompressed), else close 1009 (64MiB)",
    )
    add(
        "--max-head-size",
        type=size,
        default=defaults.max_head_size,
        help="largest HTTP head, else 431 (64KiB)",
    )
    add(
        "--max-headers",
        type=count,
        default=defaults.max_headers,
        help="most header lines in a head, else 431 (100)",
    )
    add(
        "--max-request-line",
        type=size,
        default=defaults.max_request_line,
        help="longest request line, else 414 (8KiB)",
    )
    add(
        "--max-connections",
        type=count,
        default=defaults.max_connections,
        help="concurrent client connections, else 503 (10000)",
    )
    add(
        "--max-connections-per-client",
        type=count,
        default=defaults.max_connections_per_client,
        help="concurrent connections from one client address, else 503 (1000)",
    )
    add(
        "--allow-clients",
        action="append",
        default=[],
        metavar="CIDR",
        help="serve clients from this network too; by default only loopback and private "
        "addresses are served, others get 403 (repeatable, e.g. 0.0.0.0/0)",
    )
    add(
        "--proxy-protocol",
        action="store_true",
        help="behind a TCP balancer: every connection starts with a PROXY protocol v1 or v2 "
        "header whose client address the proxy uses; without one it is closed",
    )
    add(
        "--proxy-protocol-from",
        action="append",
        default=[],
        metavar="CIDR",
        help="the balancers allowed to send that header (repeatable; by default loopback, "
        "127.0.0.0/8 and ::1); other peers are closed",
    )
    add(
        "--proxyauth",
        default=None,
        metavar="USER:PASS",
        help="require HTTP Basic proxy authentication (407 without it)",
    )
    add(
        "--handshake-timeout",
        type=seconds,
        default=defaults.handshake_timeout,
        help="seconds for a request head, TLS or upgrade handshake, or an upstream's first "
        "answer byte after the request (10)",
    )
    add(
        "--parallel-handshakes",
        action="store_true",
        help="let one client open several WebSockets to one server at once (for load tests); "
        "by default they take turns (RFC 6455 4.1)",
    )
    add(
        "--idle-timeout",
        type=seconds_or_zero,
        default=defaults.idle_timeout,
        help="seconds without traffic either way before a WebSocket is closed with 1001 or a "
        "plain HTTP body is cut, and a kept-alive connection's wait for its next request; "
        "0 = never (600)",
    )
    add(
        "--close-timeout",
        type=seconds_or_zero,
        default=defaults.close_timeout,
        help="seconds to wait for a peer's close answer (5)",
    )
    add(
        "--connect-timeout",
        type=seconds,
        default=defaults.connect_timeout,
        help="seconds to open a TCP connection upstream, else 504 (10)",
    )
    add(
        "--pool-max-per-host",
        type=count_or_zero,
        default=defaults.pool_max_per_host,
        metavar="N",
        help="idle upstream connections kept per server for the next plain HTTP request; "
        "0 = none, a new connection for every request (6)",
    )
    add(
        "--pool-max-idle",
        type=count_or_zero,
        default=defaults.pool_max_idle,
        metavar="N",
        help="idle upstream connections kept in all (100)",
    )
    add(
        "--pool-idle-timeout",
        type=seconds,
        default=defaults.pool_idle_timeout,
        metavar="S",
        help="seconds an idle upstream connection is kept unused before it is closed (30)",
    )
    add(
        "--upstream-auth",
        default=None,
        metavar="USER:PASS",
        help="HTTP Basic credentials for the next proxy of --mode upstream:... (sent as "
        "Proxy-Authorization, never logged)",
    )
    add("--upstream-ca", type=Path, default=None, help="extra CA file to trust upstream")
    add("-k", "--ssl-insecure", action="store_true", help="do not verify upstream certificates")
    add(
        "--ignore-hosts",
        action="append",
        default=[],
        metavar="REGEX",
        help="tunnel CONNECTs to matching host:port untouched; in transparent mode the "
        "SNI name or the original address is matched (repeatable)",
    )
    add(
        "--allow-hosts",
        action="append",
        default=[],
        metavar="REGEX",
        help="intercept only CONNECTs to matching host:port, tunnel all others untouched "
        "(repeatable; the opposite of --ignore-hosts)",
    )
    add(
        "--certs",
        action="append",
        default=[],
        metavar="[DOMAIN=]FILE",
        help="serve this certificate instead of a generated one: a PEM file with the private "
        "key and the chain, leaf first; for DOMAIN (*.example.com works), else for the names "
        "in the certificate (repeatable)",
    )
    add(
        "--no-websocket",
        action="store_true",
        help="pass WebSockets through untouched: after the 101 the bytes are copied both ways "
        "as they are (no frame parsing, no plugins, no capture)",
    )
    add(
        "--no-compression",
        action="store_true",
        help="strip permessage-deflate from offers: frames on the wire stay readable",
    )
    add(
        "-s",
        "--script",
        action="append",
        default=[],
        metavar="FILE_OR_NAME",
        help="load a plugin: a Python file (wsproxy or mitmproxy addon style) or a bundled "
        "plugin's name (log, rewrite, block, fault); repeatable, run in order, reloaded on change",
    )
    add(
        "--set",
        action="append",
        default=[],
        dest="sets",
        metavar="NAME=VALUE",
        help="set a plugin option (repeatable; a list option appends; see --help-plugins), "
        "or one of mitmproxy's core options (README: 'Coming from mitmproxy')",
    )
    add(
        "--help-plugins",
        action="store_true",
        help="list the options of the bundled plugins and of those given with -s, then exit",
    )
    add(
        "-w",
        "--capture",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="record every WebSocket to FILE: .jsonl (one record per line), .har (HAR 1.2 "
        "rewritten as it goes, with a FILE.har.jsonl journal beside it) or .mitm (a mitmproxy "
        "flow file, needs wsproxy[mitmproxy]; journal FILE.mitm.jsonl); repeatable: every "
        "FILE is written",
    )
    add(
        "--capture-filter",
        metavar="EXPR",
        help="capture only what this filter expression matches: WebSockets by their handshake, "
        "and with message operators only the matching messages ('~u chat & ~from client'); "
        "a plain regex is searched in the URL, as before",
    )
    add("--capture-fsync", action="store_true", help="fsync the capture after every batch")
    add(
        "--capture-overflow",
        choices=("wait", "drop"),
        default="wait",
        help="when the capture writer falls behind the traffic: wait (default: captured "
        "connections stop reading until it caught up, nothing is lost) or drop (the relay never "
        "waits; records are dropped and 'lost' records mark the gaps)",
    )
    add(
        "--capture-http",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="record plain HTTP requests and responses too (bodies up to 1MiB each); "
        "default: on for .har (a page session, as DevTools shows it), off for .jsonl",
    )
    add(
        "--metrics-port",
        type=parse_port,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (off by default; 0: any "
        "free port); a token is asked for, printed at start",
    )
    add("--metrics-host", default="127.0.0.1", metavar="HOST", help="address for --metrics-port")
    add(
        "--workers",
        type=parse_workers,
        default=1,
        metavar="N",
        help="serve with N processes sharing the ports (Linux SO_REUSEPORT), each with its "
        "own connections, plugins, limits and -w files (FILE.w1.jsonl, ...); auto: one per "
        "core (README: 'Workers') (1)",
    )
    add(
        "--metrics-token",
        default=None,
        metavar="TOKEN",
        help="the token scrapes must send (Authorization: Bearer TOKEN or ?token=); "
        "default: a random one",
    )
    return parser


def options_from_args(args: argparse.Namespace) -> Options:
    for flag, patterns in (
        ("--ignore-hosts", args.ignore_hosts),
        ("--allow-hosts", args.allow_hosts),
    ):
        for pattern in patterns:
            _regex(flag, pattern)
    if args.ignore_hosts and args.allow_hosts:
        raise ConfigError(
            "--ignore-hosts and --allow-hosts exclude each other: give the hosts to tunnel "
            "untouched, or the only ones to intercept"
        )
    if args.proxy_protocol_from and not args.proxy_protocol:
        raise ConfigError("--proxy-protocol-from names balancers: it needs --proxy-protocol")
    try:
        listens = resolve_listens(tuple(args.mode), args.listen_host, args.listen_port)
    except ModeError as error:
        raise ConfigError(str(error)) from None
    if args.proxyauth is not None and not any(
        isinstance(listen.mode, Regular | UpstreamProxy | Socks5) for listen in listens
    ):
        raise ConfigError(
            "--proxyauth guards a regular, upstream or socks5 listener; in reverse and "
            "transparent mode clients do not send proxy credentials (put authentication in "
            "front of the upstream instead)"
        )
    _check_upstream_auth(args.upstream_auth, listens)
    verbosity = -1 if args.quiet else args.verbose
    first = listens[0]
    assert first.host is not None and first.port is not None
    return Options(
        listen_host=first.host,
        listen_port=first.port,
        mode=first.mode,
        listens=listens,
        confdir=args.confdir.expanduser(),
        verbosity=verbosity,
        preview_length=args.preview_length,
        view_filter=_filter("--view-filter", args.view_filter),
        decode=args.decode,
        max_frame_size=args.max_frame_size,
        max_message_size=args.max_message_size,
        max_head_size=args.max_head_size,
        max_headers=args.max_headers,
        max_request_line=args.max_request_line,
        max_connections=args.max_connections,
        max_connections_per_client=args.max_connections_per_client,
        allow_clients=tuple(args.allow_clients),
        proxy_protocol=args.proxy_protocol,
        proxy_protocol_from=tuple(args.proxy_protocol_from) or Options.proxy_protocol_from,
        proxyauth=args.proxyauth,
        handshake_timeout=args.handshake_timeout,
        idle_timeout=args.idle_timeout,
        close_timeout=args.close_timeout,
        connect_timeout=args.connect_timeout,
        pool_max_per_host=args.pool_max_per_host,
        pool_max_idle=args.pool_max_idle,
        pool_idle_timeout=args.pool_idle_timeout,
        parallel_handshakes=args.parallel_handshakes,
        upstream_auth=args.upstream_auth,
        upstream_ca=args.upstream_ca,
        ssl_insecure=args.ssl_insecure,
        ignore_hosts=tuple(args.ignore_hosts),
        allow_hosts=tuple(args.allow_hosts),
        certs=tuple(args.certs),
        no_websocket=args.no_websocket,
        no_compression=args.no_compression,
        capture_paths=check_capture_paths(args.capture),
        capture_filter=_filter("--capture-filter", args.capture_filter, url_regex=True),
        capture_fsync=args.capture_fsync,
        capture_overflow=args.capture_overflow,
        capture_http=args.capture_http,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        metrics_token=args.metrics_token,
        event_loop=checked_loop(args.loop),
    )


def checked_loop(wanted: str) -> LoopName:
    """--loop checked now: ``uvloop`` where it is not installed is one line (status 2)."""
    choose_loop(wanted)
    return cast("LoopName", wanted)  # one of LOOPS: argparse's choices


class VersionAction(argparse.Action):
    """``--version``: which loops are installed is looked up only when it is given."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        from wsproxy import __version__

        print(f"{parser.prog} {__version__}\n{versions_text()}")
        parser.exit()


def _check_upstream_auth(upstream_auth: str | None, listens: tuple[Listen, ...]) -> None:
    """--upstream-auth is USER:PASS, and only means something to an upstream-mode listener."""
    if upstream_auth is None:
        return
    if ":" not in upstream_auth:
        raise ConfigError("--upstream-auth takes USER:PASS")
    if not any(isinstance(listen.mode, UpstreamProxy) for listen in listens):
        raise ConfigError(
            "--upstream-auth is for the next proxy of --mode upstream:http://HOST:PORT; "
            "no listener of this run chains to one"
        )


def _regex(flag: str, pattern: str | None) -> str | None:
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ConfigError(f"{flag} {pattern!r}: {error}") from None
    return pattern


def _filter(flag: str, text: str | None, *, url_regex: bool = False) -> str | None:
    """A filter flag checked now: a bad expression is one line with its column (status 2)."""
    if text is not None:
        from wsproxy.filtering import option_filter

        option_filter(flag, text, url_regex=url_regex)
    return text


def setup_logging(verbosity: int, worker: str = "") -> None:
    """Log lines on stderr, ``HH:MM:SS message``; in a worker of ``--workers``, its tag after
    the time (``12:00:01 w2 message``)."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 1 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    tag = f"{worker} " if worker else ""
    handler.setFormatter(logging.Formatter(f"%(asctime)s {tag}%(message)s", "%H:%M:%S"))
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


def cmd_ca(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="wsproxy ca", description="wsproxy's CA certificate")
    parser.add_argument("--confdir", type=Path, default=Options().confdir)
    parser.add_argument("--path", action="store_true", help="print the CA certificate's path")
    args = parser.parse_args(argv)
    from wsproxy.tls import CertAuthority

    ca = CertAuthority.load_or_create(args.confdir.expanduser())
    if args.path:
        print(ca.cert_pem_path)
    else:
        print(f"certificate: {ca.cert_pem_path}\nSHA-256 fingerprint: {ca.fingerprint}")
    return 0


class Subcommand(NamedTuple):
    run: Callable[[Sequence[str]], int]
    summary: str  # its line in ``wsproxy --help``


SUBCOMMANDS = {
    "ca": Subcommand(cmd_ca, "print the CA certificate's path and fingerprint (--path: path only)"),
    "show": Subcommand(
        cmd_show, "print captures (.jsonl, .har, .mitm; several merged by time) as -v log lines"
    ),
    "replay": Subcommand(
        cmd_replay, "replay a captured connection to a server (--serve: to a client)"
    ),
    "har": Subcommand(cmd_har, "turn a JSONL capture or a crashed run's journal into HAR"),
    "mitm": Subcommand(cmd_mitm, "turn a JSONL capture or journal into a mitmproxy flow file"),
}


def subcommands_help() -> str:
    """The epilog of ``wsproxy --help``: one line per entry of SUBCOMMANDS, so none is missed."""
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {sub.summary}" for name, sub in SUBCOMMANDS.items()]
    return "subcommands (wsproxy NAME --help for their flags):\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return guarded("wsproxy", argv, lambda: SUBCOMMANDS[argv[0]].run(argv[1:]))
    return guarded("wsproxy", argv, lambda: _run_flags(argv))


def _run_flags(argv: list[str]) -> int:
    args = parse_flags(build_parser(), argv)
    if args is None:
        return 0
    options = options_from_args(args)
    from wsproxy.workers import worker_tag

    tag = worker_tag()
    if tag:  # a worker of --workers N (whatever --workers it was given: it runs as one)
        from wsproxy.workerplan import worker_options

        options = worker_options(options, tag)
    setup_logging(options.verbosity, tag)
    if not tag and args.workers > 1:
        from wsproxy.workerplan import run_workers

        return run_loop(run_workers(options, argv, args.workers), options.event_loop)
    run_loop(run_proxy(options, script_host(args)), options.event_loop)
    return 0


def parse_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace | None:
    """The flags, mitmproxy's spellings translated (notes logged once logging is set up);
    None when ``--help-plugins`` printed its text and there is nothing to run."""
    translation = translate(list(argv), parser_flags(parser))
    args = parser.parse_args(translation.argv)
    if args.help_plugins:
        from wsproxy.scripts import help_text

        print(help_text(args.script), end="")
        return None
    args.translation_notes = translation.notes
    return args


def script_host(args: argparse.Namespace) -> ScriptHost | None:
    """The ``-s`` scripts and ``--set`` values of the command line (None without any)."""
    for note in getattr(args, "translation_notes", ()):
        log.info("%s", note)
    if not (args.script or args.sets):
        return None
    from wsproxy.scripts import ScriptHost

    return ScriptHost(args.script, args.sets)


def guarded(prog: str, argv: Sequence[str], run: Callable[[], int]) -> int:
    """``run()``, its failures as one line on stderr and an exit status: 2 for a wrong command
    line, 1 for a failed run, never a traceback (unless debugging with -vv)."""
    try:
        return run()
    except (ConfigError, PluginError) as error:  # the command line is wrong: as argparse
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    except WsproxyError as error:  # the run failed
        print(f"{prog}: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        print(f"{prog}: {where}{os_error_text(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug: one line, and the traceback only when debugging
        debugging = "-vv" in argv or list(argv).count("-v") >= 2
        if debugging:
            log.exception("internal error")
        hint = "" if debugging else " (run with -vv for the traceback)"
        print(f"{prog}: internal error: {type(error).__name__}: {error}{hint}", file=sys.stderr)
        return 1
