"""Argument types of the command line: sizes, ports, seconds and counts, each refusing a bad
value with argparse's one-line error."""

from __future__ import annotations

import argparse
import math
import os
import re

from wsproxy.modes import (
    Listen,
    ModeError,
    parse_listen,
)
from wsproxy.options import MiB

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


def parse_workers(text: str) -> int:
    """``--workers``: a count of at least 1, or ``auto`` (one per core)."""
    if text.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"not a number of workers: {text!r} (1 or more, or auto: one per core)"
        )
    return value
