"""The flags of ``wsproxy`` (and ``wsproxy-web``): the parser, and the Options a command line makes.

Flags follow mitmproxy's where they overlap (``--listen-host``, ``-p/--listen-port``,
``--mode``, ``--confdir``, ``-k/--ssl-insecure``, ``--ignore-hosts``, ``-s``, ``--set``,
``-w``, ``-v/-q``) so users' habits carry over.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from wsproxy.argtypes import (
    count,
    count_or_zero,
    parse_mode,
    parse_port,
    parse_workers,
    seconds,
    seconds_or_zero,
    size,
)
from wsproxy.capture.formats import check_capture_paths
from wsproxy.eventloop import (
    LOOPS,
    LoopName,
    choose_loop,
    versions_text,
)
from wsproxy.exceptions import ConfigError
from wsproxy.mitmoptions import translate
from wsproxy.modes import (
    Listen,
    ModeError,
    Regular,
    Socks5,
    UpstreamProxy,
    resolve_listens,
)
from wsproxy.options import Options
from wsproxy.subcommands import subcommands_help

if TYPE_CHECKING:
    from wsproxy.scripts import ScriptHost
log = logging.getLogger("wsproxy")


class FlagGroup:
    """A titled group of ``parser``'s flags in its help whose option strings the parser
    still knows."""

    def __init__(self, parser: FlagParser, title: str) -> None:
        self._parser = parser
        self._group = parser.add_argument_group(title)

    def add_argument(self, *names: str, **kwargs: Any) -> argparse.Action:
        action = self._group.add_argument(*names, **kwargs)
        self._parser.option_strings.update(action.option_strings)
        return action


class _CheckingFormatter(argparse.HelpFormatter):
    """The formatter argparse makes for every flag added, only to check its metavar: of a
    fixed width, where argparse's own would ``import shutil`` (with bz2 and lzma, half a
    megabyte of a running proxy's resident memory) for the terminal's width."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, 78 if width is None else width)


class FlagParser(argparse.ArgumentParser):
    """An ArgumentParser that keeps every option string it defines: the translation of
    mitmproxy's spellings must know which flags are wsproxy's own, and argparse lists them
    only in private attributes. Its help and usage are laid out by ``formatter_class`` as
    given, for the terminal's width; until one is shown, a fixed-width formatter checks the
    flags (no terminal is read to start a proxy)."""

    def __init__(self, **kwargs: Any) -> None:
        self.option_strings: set[str] = set()
        self._shown_with: type[argparse.HelpFormatter] = kwargs.pop(
            "formatter_class", argparse.HelpFormatter
        )
        super().__init__(formatter_class=_CheckingFormatter, **kwargs)

    def format_usage(self) -> str:
        self.formatter_class = self._shown_with
        return super().format_usage()

    def format_help(self) -> str:
        self.formatter_class = self._shown_with
        return super().format_help()

    def add_argument(self, *names: str, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*names, **kwargs)
        self.option_strings.update(action.option_strings)
        return action

    def flag_group(self, title: str) -> FlagGroup:
        return FlagGroup(self, title)


def build_parser() -> FlagParser:
    defaults = Options()
    parser = FlagParser(
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


def parse_flags(parser: FlagParser, argv: Sequence[str]) -> argparse.Namespace | None:
    """The flags, mitmproxy's spellings translated (notes logged once logging is set up);
    None when ``--help-plugins`` printed its text and there is nothing to run."""
    translation = translate(list(argv), parser.option_strings)
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
