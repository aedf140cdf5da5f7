"""Command line entry: a subcommand, or the flags of a run (one worker or several); every
failure becomes one line and an exit status."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from wsproxy.eventloop import run as run_loop
from wsproxy.exceptions import (
    ConfigError,
    PluginError,
    WsproxyError,
    os_error_text,
)
from wsproxy.flags import build_parser, options_from_args, parse_flags, script_host
from wsproxy.runner import run_proxy, setup_logging
from wsproxy.subcommands import SUBCOMMANDS

log = logging.getLogger("wsproxy")


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
