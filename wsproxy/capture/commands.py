"""The capture subcommands as ``wsproxy.subcommands.SUBCOMMANDS`` calls them (imports kept lazy)."""

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
    """``wsproxy NAME JOURNAL [JOURNAL ...] [-o OUT]``: a JSONL capture (or a crashed run's
    journal) turned into another format by ``convert``; several are merged by time first
    (``merge.merge_journals``: ids two files share become ``ID@N``) and need ``-o``. ``check``
    refuses what it cannot take. Exit status: 0, 1 when a journal cannot be read or OUT
    written, 2 for flags and missing extras."""
    from wsproxy.capture.har import CaptureFormatError
    from wsproxy.capture.reader import check_jsonl
    from wsproxy.exceptions import ConfigError, os_error_text

    parser = argparse.ArgumentParser(prog=f"wsproxy {name}", description=description)
    parser.add_argument(
        "journal", type=Path, nargs="+", help="JSONL captures; several are merged by time"
    )
    parser.add_argument(
        "-o", "--output", type=Path, help="the file to write (default: JOURNAL without .jsonl)"
    )
    args = parser.parse_args(list(argv))
    journals: list[Path] = args.journal
    out: Path | None = args.output
    if out is None and len(journals) > 1:
        parser.error(f"{len(journals)} captures merge into one file: name it with -o")
    if out is None:
        stem = journals[0].name.removesuffix(".jsonl")
        out = journals[0].with_name(stem if stem.lower().endswith(suffix) else stem + suffix)
    try:
        for journal in journals:
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
        count = convert(journals[0], out) if len(journals) == 1 else _merged(journals, out, convert)
    except OSError as error:
        read = error.filename in [str(journal) for journal in journals]
        what = f"{error.filename}" if read else f"cannot write {out}"
        print(f"wsproxy {name}: {what}: {os_error_text(error)}", file=sys.stderr)
        return 1
    print(f"{out}: {count} {unit}")
    return 0


def _merged(journals: list[Path], out: Path, convert: Callable[[Path, Path], int]) -> int:
    """``convert`` of the journals merged into one, in a private temporary file beside
    ``out`` (mkstemp: mode 0600, as every file of traffic), removed after."""
    import contextlib
    import os
    import tempfile

    from wsproxy.capture.merge import merge_journals

    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".merged.jsonl", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as merged:
            merge_journals(journals, merged)
        return convert(Path(tmp), out)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
