"""How fast wsproxy masks (RFC 6455 section 5.3): the C extension, the pure fallback, aiohttp.

Run by hand from the repository root:

    .venv/bin/python bench/mask_bench.py
    .venv/bin/python bench/mask_bench.py --seconds 1

Every implementation XORs the same preallocated bytearray in place, over and over, for 64 B,
4 KiB, 256 KiB and 1 MiB (offset 1, so the key is rotated as for a piece in mid-frame; aiohttp's
helper has no offset and runs at 0). The figure is MiB/s (MiB = 2**20) of the best of five
rounds of about ``--seconds / 5`` each; call overhead included, allocation not. Rows:

* ``c``: ``wsproxy.sansio._speedups.mask`` (what wsproxy uses when it is built);
* ``python``: ``wsproxy.sansio.masking.mask_py`` (the fallback without a compiler);
* ``aiohttp (reference)``: ``aiohttp._websocket.helpers.websocket_mask``, aiohttp's private
  helper, as a yardstick only: wsproxy never imports it.

Checks that all rows agree on the result first; prints a table; asserts nothing else.
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from collections.abc import Callable

from _common import render

from wsproxy.sansio import masking

MIB = 1 << 20
SIZES = [("64 B", 64), ("4 KiB", 4096), ("256 KiB", 256 * 1024), ("1 MiB", MIB)]
KEY = bytes.fromhex("37fa213d")

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


def mib_per_s(run: Run, size: int, seconds: float) -> float:
    buf = bytearray(os.urandom(size))
    timer = timeit.Timer(lambda: run(buf))
    number, taken = timer.autorange()  # at least 0.2 s
    per_round = seconds / 5
    number = max(1, int(number * per_round / max(taken, 1e-9)))
    best = min(timer.repeat(repeat=5, number=number)) / number
    return size / best / MIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per cell, roughly")
    args = parser.parse_args()
    rows = implementations()
    check(rows)
    table = [["MiB/s", *(label for label, _ in SIZES)]]
    for name, run in rows:
        if run is None:
            table.append([name, *("n/a" for _ in SIZES)])
            continue
        table.append([name, *(f"{mib_per_s(run, size, args.seconds):,.0f}" for _, size in SIZES)])
    print(f"wsproxy masking: {masking.IMPLEMENTATION} in use")
    print(render(table))


if __name__ == "__main__":
    main()
