"""The capture subcommands as ``wsproxy.cli.SUBCOMMANDS`` calls them (imports kept lazy)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def cmd_show(argv: Sequence[str]) -> int:
    from wsproxy.capture.show import show

    return show(argv)


def cmd_replay(argv: Sequence[str]) -> int:
    from wsproxy.capture.replay import replay

    return replay(argv)


def cmd_har(argv: Sequence[str]) -> int:
    from wsproxy.capture.har import main

    return main(list(argv))


def cmd_mitm(argv: Sequence[str]) -> int:
    from wsproxy.capture.mitmflows import main

    return main(list(argv))


def convert_journal(
    argv: Sequence[str],
    *,
    name: str,
    suffix: str,
    description: str,
    convert: Callable[[Path, Path], int],
    unit: str,
    check: Callable[[Path], None] | None = None,
) -> int:
    """``wsproxy NAME JOURNAL [-o OUT]``: a JSONL capture (or a crashed run's journal) turned
    into another format by ``convert``; ``check`` refuses what it cannot take. Exit status: 0,
    1 when the journal cannot be read or OUT written, 2 for flags and missing extras."""
    from wsproxy.capture.har import CaptureFormatError
    from wsproxy.capture.reader import check_jsonl
    from wsproxy.exceptions import ConfigError, os_error_text

    parser = argparse.ArgumentParser(prog=f"wsproxy {name}", description=description)
    parser.add_argument("journal", type=Path)
    parser.add_argument(
        "-o", "--output", type=Path, help="the file to write (default: JOURNAL without .jsonl)"
    )
    args = parser.parse_args(list(argv))
    journal: Path = args.journal
    out: Path | None = args.output
    if out is None:
        stem = journal.name.removesuffix(".jsonl")
        out = journal.with_name(stem if stem.lower().endswith(suffix) else stem + suffix)
    try:
        if check is not None:
            check(journal)
        check_jsonl(journal)
        if out.exists() and out.samefile(journal):
            raise CaptureFormatError(f"-o {out} is the capture itself: name another file")
    except ConfigError as error:
        print(f"wsproxy {name}: {error}", file=sys.stderr)
        return 2
    except CaptureFormatError as error:
        print(f"wsproxy {name}: {error}", file=sys.stderr)
        return 1
    try:
        count = convert(journal, out)
    except OSError as error:
        what = f"{journal}" if error.filename == str(journal) else f"cannot write {out}"
        print(f"wsproxy {name}: {what}: {os_error_text(error)}", file=sys.stderr)
        return 1
    print(f"{out}: {count} {unit}")
    return 0
