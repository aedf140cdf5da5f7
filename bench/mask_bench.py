"""How fast wsproxy masks (RFC 6455 section 5.3): the C extension, the pure fallback, aiohttp.

Run by hand from the repository root:

    .venv/bin/python bench/mask_bench.py
    .venv/bin/python bench/mask_bench.py --seconds 1

Every implementation XORs the same preallocated bytearray in place, over and over, for 64 B,
4 KiB, 256 KiB and 1 MiB (offset 1, so the key is rotated as for a piece in mid-frame; aiohttp's
helper takes no offset, so it gets the key rotated by hand). The figure is MiB/s (MiB = 2**20)
of the best of ten rounds of about ``--seconds / 10`` each, the implementations taking turns
round by round; call overhead included, allocation not. Rows:

* ``c``: ``wsproxy.sansio._speedups.mask`` (what wsproxy uses when it is built);
* ``python``: ``wsproxy.sansio.masking.mask_py`` (the fallback without a compiler);
* ``aiohttp (reference)``: ``aiohttp._websocket.helpers.websocket_mask``, aiohttp's private
  helper, as a yardstick only: wsproxy never imports it.

Checks that all rows agree on the result first; prints a table; asserts nothing else.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import timeit
from collections.abc import Callable

from _common import render

from wsproxy.sansio import masking

MIB = 1 << 20
SIZES = [("64 B", 64), ("4 KiB", 4096), ("256 KiB", 256 * 1024), ("1 MiB", MIB)]
KEY = bytes.fromhex("37fa213d")
ROUNDS = 10

Run = Callable[[bytearray], None]


def implementations() -> list[tuple[str, Run | None]]:
    rows: list[tuple[str, Run | None]] = []
    c = masking.mask_c
    rows.append(("c", None if c is None else lambda buf: c(buf, KEY, 1)))
    rows.append(("python", lambda buf: masking.mask_py(buf, KEY, 1)))
    try:
        from aiohttp._websocket.helpers import websocket_mask
    except ImportError:
        rows.append(("aiohttp (reference)", None))
    else:
        rotated = KEY[1:] + KEY[:1]  # its offset is always 0: rotate by hand to agree
        rows.append(("aiohttp (reference)", lambda buf: websocket_mask(rotated, buf)))
    return rows


def check(rows: list[tuple[str, Run | None]]) -> None:
    data = os.urandom(MIB + 7)
    expected = None
    for name, run in rows:
        if run is None:
            continue
        buf = bytearray(data)
        run(buf)
        if expected is None:
            expected = bytes(buf)
        elif buf != expected:
            sys.exit(f"{name} disagrees with the others")


def measure(runs: list[tuple[str, Run]], size: int, seconds: float) -> dict[str, float]:
    """MiB/s per implementation for one size: the best of ROUNDS rounds, taken in turns.

    Turns, not one implementation after the other: on a shared machine the load changes
    within seconds, and rows measured minutes apart would compare the load, not the code.
    """
    buffers = {name: bytearray(os.urandom(size)) for name, _ in runs}
    timers = {name: timeit.Timer(functools.partial(run, buffers[name])) for name, run in runs}
    numbers = {}
    for name, timer in timers.items():
        number, taken = timer.autorange()  # at least 0.2 s
        per_round = seconds / ROUNDS
        numbers[name] = max(1, int(number * per_round / max(taken, 1e-9)))
    best = dict.fromkeys(timers, float("inf"))
    for _ in range(ROUNDS):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(numbers[name]) / numbers[name])
    return {name: size / taken / MIB for name, taken in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per cell, roughly")
    args = parser.parse_args()
    rows = implementations()
    check(rows)
    runs = [(name, run) for name, run in rows if run is not None]
    figures = [measure(runs, size, args.seconds) for _, size in SIZES]
    table = [["MiB/s", *(label for label, _ in SIZES)]]
    for name, run in rows:
        if run is None:
            table.append([name, *("n/a" for _ in SIZES)])
        else:
            table.append([name, *(f"{cell[name]:,.0f}" for cell in figures)])
    print(f"wsproxy masking: {masking.IMPLEMENTATION} in use")
    print(render(table))


if __name__ == "__main__":
    main()
