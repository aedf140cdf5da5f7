"""``wsproxy-web``: the proxy with its web UI, or (``-r FILE``) a capture shown read-only.

Takes every flag of ``wsproxy`` (the same parser, ``wsproxy.flags.build_parser``) and the web
UI's own. The UI listens on loopback by default; another ``--web-host`` is allowed with a
warning (anyone who can reach it and learns the token sees all traffic). The URL printed holds
a random token (``secrets.token_urlsafe``), or none with ``--web-password`` (the password is
the token, typed into the page; never printed or logged).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsproxy.argtypes import count, parse_port, parse_size
from wsproxy.cli import guarded
from wsproxy.eventloop import run as run_loop
from wsproxy.exceptions import ConfigError, StartupError, os_error_text
from wsproxy.flags import (
    FlagParser,
    build_parser,
    checked_loop,
    options_from_args,
    parse_flags,
    script_host,
)
from wsproxy.runner import run_proxy, setup_logging, signal_event
from wsproxy.web.limits import CONTENT_BUDGET, HISTORY
from wsproxy.web.live import LiveState
from wsproxy.web.security import UiAddress, is_loopback
from wsproxy.web.tee import Tee
from wsproxy.web.worker import BRIDGE_ENV
from wsproxy.workerplan import worker_options
from wsproxy.workers import worker_tag

if TYPE_CHECKING:
    from wsproxy.model import Flow, Message
    from wsproxy.options import Options
    from wsproxy.proxy.server import Capture, ProxyServer
    from wsproxy.web.server import PauseEngine, WebUi

log = logging.getLogger("wsproxy")

PROG = "wsproxy-web"


def build_web_parser() -> FlagParser:
    parser = build_parser()
    parser.prog = PROG
    parser.description = (
        "wsproxy with a web UI: see every WebSocket live, pause and edit messages at "
        "breakpoints, compose, close; or show a capture (-r FILE)."
    )
    web = parser.flag_group("web UI")
    add = web.add_argument
    add("--web-host", default="127.0.0.1", help="address of the web UI (127.0.0.1)")
    add("--web-port", type=parse_port, default=8081, help="port of the web UI (8081; 0: any)")
    add(
        "--web-password",
        metavar="PASS",
        help="the UI asks for this password instead of printing a URL with a random token",
    )
    add(
        "--web-history",
        type=count,
        default=HISTORY,
        metavar="N",
        help=f"messages kept per connection; older ones only in a -w capture ({HISTORY})",
    )
    add(
        "--web-keep",
        type=parse_size,
        default=CONTENT_BUDGET,
        metavar="SIZE",
        help="message content kept in all for download and export, oldest let go first "
        "(64MiB; each message keeps at most 1MiB)",
    )
    add(
        "-r",
        "--read",
        action="extend",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="show this capture (.jsonl, .har, .mitm) read-only; no proxy listens. Several "
        "(-r a b, or -r a -r b) are merged by time, as 'wsproxy show a b' does",
    )
    return parser


class WebCompanion:
    """The web UI beside the proxy (``wsproxy.runner.Companion``): the breakpoints go first
    in the chain, ``LiveState`` gets every connection as a capture sink."""

    def __init__(self, live: LiveState, ui_factory: Any, breakpoints: PauseEngine | None):
        self.live = live
        self.plugins: Sequence[object] = [] if breakpoints is None else [breakpoints]
        self._ui_factory = ui_factory
        self.ui: WebUi | None = None
        self.capture_file: Path | None = None

    def capture(self, capture: Capture | None) -> Capture | None:
        if capture is None:
            return self.live
        journal = getattr(capture, "journal", None)
        self.capture_file = Path(journal) if journal is not None else None
        return Tee(self.live, capture)

    async def start(self, server: ProxyServer | None) -> None:
        self.ui = self._ui_factory(self.capture_file)
        await start_ui(self.ui)

    async def stop(self) -> None:
        if self.ui is not None:
            await self.ui.stop()


async def start_ui(ui: WebUi) -> None:
    """Listen, or one line saying why not; then print where the UI is."""
    try:
        await ui.start()
    except OSError as error:
        where = ui.address.url.removeprefix("http://")
        reason = os_error_text(error)
        raise StartupError(f"cannot listen on {where} for the web UI: {reason}") from None
    base = ui.address.url
    if ui.password_mode:
        line = f"wsproxy web UI: {base}/ (enter the --web-password)"
    else:
        line = f"wsproxy web UI: {base}/?token={ui.token}"
    print(line, flush=True)


def _breakpoints(live: LiveState) -> PauseEngine:
    """The pause engine, numbering paused messages as the live view will."""
    from wsproxy.web.breakpoints import Breakpoints

    engine = Breakpoints()

    def seq_of(flow: Flow, message: Message) -> int:
        # The number the message gets when it is relayed (a control frame in between may
        # take it first: the page matches a pause to its message by connection and content).
        conn = live.conns.get(flow.id)
        return conn.next_seq if conn is not None else 0

    engine.seq_of = seq_of
    return engine


def _warn_exposed(host: str) -> None:
    if not is_loopback(host):
        log.warning(
            "web UI on %s: reachable from other machines; whoever has the token (or "
            "password) sees and changes all traffic",
            host,
        )


def _run(argv: list[str]) -> int:
    parser = build_web_parser()
    args = parse_flags(parser, argv)
    if args is None:
        return 0
    token = args.web_password if args.web_password is not None else secrets.token_urlsafe(24)
    if args.web_password is not None and not args.web_password:
        raise ConfigError("--web-password must not be empty")
    address = UiAddress(args.web_host, args.web_port)
    if args.read is not None:
        setup_logging(-1 if args.quiet else args.verbose)
        _warn_exposed(args.web_host)
        run_loop(_show_capture(args, address, token), checked_loop(args.loop))
        return 0
    options = options_from_args(args)
    tag = worker_tag()
    if tag:  # a worker of wsproxy-web --workers N: the proxy, no UI of its own
        options = worker_options(options, tag)
    setup_logging(options.verbosity, tag)
    if tag:
        return _run_worker(args, options)
    _warn_exposed(args.web_host)
    live = LiveState(history=args.web_history, content_budget=args.web_keep)
    if args.workers > 1:
        parent = _run_parent(args, argv, options, live, address, token)
        return run_loop(parent, options.event_loop)
    breakpoints = _breakpoints(live)

    def make_ui(capture_file: Path | None) -> WebUi:
        from wsproxy.web.server import WebUi

        return WebUi(
            live,
            address,
            token,
            breakpoints=breakpoints,
            capture_file=capture_file,
            password_mode=args.web_password is not None,
        )

    companion = WebCompanion(live, make_ui, breakpoints)
    run_loop(run_proxy(options, script_host(args), companion), options.event_loop)
    return 0


def _run_worker(args: argparse.Namespace, options: Options) -> int:
    """A worker of ``--workers N``: the proxy, its traffic and pauses over the bridge to the
    UI process (``wsproxy.web.worker``); no UI of its own."""
    from wsproxy.web.breakpoints import Breakpoints
    from wsproxy.web.worker import WorkerCompanion, identity_from_env

    bridge = os.environ.get(BRIDGE_ENV)
    identity = identity_from_env()
    if not bridge or identity is None:
        raise ConfigError(f"a worker of wsproxy-web --workers needs {BRIDGE_ENV}")
    companion = WorkerCompanion(bridge, identity, Breakpoints())
    run_loop(run_proxy(options, script_host(args), companion), options.event_loop)
    return 0


async def _run_parent(
    args: argparse.Namespace,
    argv: list[str],
    options: Options,
    live: LiveState,
    address: UiAddress,
    token: str,
) -> int:
    """``--workers N``: this process has the UI and no proxy; N workers (``python -m
    wsproxy.web``, supervised as ``wsproxy --workers`` supervises its own) proxy and tell it
    everything over a private Unix socket (``wsproxy.web.remote``)."""
    from wsproxy.web.remote import RemoteBreakpoints, RemoteWorkers
    from wsproxy.web.server import WebUi
    from wsproxy.workerplan import run_workers

    remote = RemoteWorkers(live)
    ui = WebUi(
        live,
        address,
        token,
        breakpoints=RemoteBreakpoints(remote),
        password_mode=args.web_password is not None,
    )
    path = await remote.start()
    try:
        await start_ui(ui)
        env = {BRIDGE_ENV: str(path)}
        return await run_workers(options, argv, args.workers, module="wsproxy.web", env=env)
    finally:
        await ui.stop()
        await remote.stop()


async def _show_capture(args: argparse.Namespace, address: UiAddress, token: str) -> None:
    """``-r FILE ...``: the captures' connections in the UI, read-only, until a signal.

    Several files are merged as ``wsproxy show`` merges them (``capture.merge``: ids two files
    share are shown as ``ID@N``); one that cannot be read is logged and left out, unless none
    can."""
    from wsproxy.capture.merge import MergedCaptures
    from wsproxy.capture.reader import join_frames
    from wsproxy.web.server import WebUi

    live = LiveState(history=args.web_history, content_budget=args.web_keep, readonly=True)
    paths: list[Path] = args.read

    def left_out(error: Exception) -> None:
        log.warning("%s (left out)", error)

    captures = MergedCaptures(paths, on_error=left_out if len(paths) > 1 else None)
    count_ = await asyncio.to_thread(lambda: live.load(join_frames(captures)))
    if len(captures.failed) == len(paths):
        raise StartupError(f"none of the {len(paths)} captures could be read")
    ui = WebUi(
        live,
        address,
        token,
        capture_file=paths[0] if len(paths) == 1 else None,
        capture_origin=captures.origin if len(paths) > 1 else None,
        password_mode=args.web_password is not None,
    )
    stop = signal_event()
    await start_ui(ui)
    shown = ", ".join(str(path) for path in paths)
    log.warning("showing %s read-only: %d connection(s)", shown, count_)
    try:
        await stop.wait()
    finally:
        await ui.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return guarded(PROG, args, lambda: _run(args))
