"""What capturing costs: wsproxy with capture off against ``-w FILE.jsonl``, ``.har`` and
``.mitm``, for 64-byte round trips, 1 MiB binary messages and a 1 GiB stream.

Prints figures, asserts nothing. Everything runs on 127.0.0.1: a websockets echo server in a
subprocess, a fresh ``python -m wsproxy --mode reverse:...`` subprocess per run, and a
websockets client here that keeps a window of messages in flight. Within a scenario the
configurations run interleaved (off, jsonl, har, mitm, then the next round starting one further
on) and each cell is the median of the rounds. Proxy CPU is utime + stime of the proxy (all its
threads) from /proc/PID/stat, read before the first measured send and after the last echo;
peak RSS is VmHWM. After each run the proxy is stopped (SIGTERM: it finishes the capture) and
the journal is scanned for ``lost`` records, which must be 0 with the default
``--capture-overflow wait``. Usage::

    .venv/bin/python bench/capture_bench.py [-r 3] [--messages 20000] [--large 256]
        [--stream 1024] [--formats jsonl,har,mitm] [--scenarios small,large,stream]
        [--wsproxy-args "--capture-overflow drop"] [--root DIR] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import (
    HOST,
    cpu_seconds,
    free_port,
    hwm_kib,
    render,
    require_modules,
    stop_group,
    wait_port_sync,
)

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
ECHO = """
import asyncio, sys
from websockets.asyncio.server import serve
async def h(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    async with serve(h, "127.0.0.1", int(sys.argv[1]), max_size=None, compression=None):
        await asyncio.Future()
asyncio.run(main())
"""


@dataclass
class Run:
    seconds: float
    cpu: float
    hwm_mib: float
    file_mib: float
    lost: int


def start_proxy(
    root: Path, echo: int, args: list[str], confdir: str
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wsproxy",
            "--listen-host",
            HOST,
            "-p",
            str(port),
            "-q",
            "--confdir",
            confdir,
            "--mode",
            f"reverse:ws://{HOST}:{echo}",
            *args,
        ],
        cwd=root,  # python -m imports the wsproxy of the current directory first
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_port_sync(port, proc, 15)
    return proc, port


async def pump(
    port: int, payload: bytes | str, count: int, window: int, pid: int
) -> tuple[float, float]:
    """Send ``count`` messages with ``window`` in flight: (seconds from first send to last echo,
    proxy CPU seconds over the same span)."""
    from websockets.asyncio.client import connect  # after main's require_modules

    async with connect(f"ws://{HOST}:{port}/", max_size=None, compression=None) as ws:
        for _ in range(window):  # warm-up
            await ws.send(payload)
            await ws.recv()
        cpu0 = cpu_seconds([pid])
        start = time.perf_counter()
        sent = 0
        for _ in range(min(window, count)):
            await ws.send(payload)
            sent += 1
        for _ in range(count):
            await ws.recv()
            if sent < count:
                await ws.send(payload)
                sent += 1
        seconds = time.perf_counter() - start
        return seconds, cpu_seconds([pid]) - cpu0


def capture_files(path: Path) -> list[Path]:
    """``path`` and the journal beside a .har or .mitm."""
    return [path, Path(f"{path}.jsonl")] if path.suffix in (".har", ".mitm") else [path]


def count_lost(journal: Path) -> int:
    """The ``count`` of every ``lost`` record in ``journal`` (read in binary, line by line)."""
    import json

    lost = 0
    if not journal.exists():
        return 0
    with open(journal, "rb") as file:
        for line in file:
            if line.startswith(b'{"type":"lost"'):
                lost += json.loads(line)["count"]
    return lost


def run(
    root: Path,
    echo: int,
    args: list[str],
    capture: Path | None,
    payload: bytes | str,
    count: int,
    window: int,
    confdir: str,
) -> Run:
    extra = list(args) + (["-w", str(capture)] if capture is not None else [])
    proc, port = start_proxy(root, echo, extra, confdir)
    try:
        seconds, cpu = asyncio.run(pump(port, payload, count, window, proc.pid))
        hwm = hwm_kib([proc.pid]) / 1024
    finally:
        stop_group(proc, 300)  # a large HAR is rewritten once more at exit
    file_mib = lost = 0.0
    if capture is not None:
        files = capture_files(capture)
        journal = files[-1]
        file_mib = sum(f.stat().st_size for f in files if f.exists()) / MiB
        lost = count_lost(journal)
        for f in files:
            f.unlink(missing_ok=True)
    return Run(seconds, cpu, hwm, file_mib, int(lost))


def median_run(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.seconds for r in runs),
        statistics.median(r.cpu for r in runs),
        statistics.median(r.hwm_mib for r in runs),
        statistics.median(r.file_mib for r in runs),
        max(r.lost for r in runs),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="64-byte round trips per run")
    parser.add_argument("--window", type=int, default=100, help="64-byte messages in flight")
    parser.add_argument("--large", type=int, default=256, help="1 MiB messages per run")
    parser.add_argument("--stream", type=int, default=1024, help="1 MiB messages in the stream")
    parser.add_argument("--formats", default="jsonl,har,mitm", help="capture formats to compare")
    parser.add_argument("--scenarios", default="small,large,stream")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where captures go")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to run wsproxy from")
    parser.add_argument("--wsproxy-args", default="", help="extra flags, one shell string")
    parser.add_argument("-r", "--repeats", type=int, default=3)
    args = parser.parse_args()
    require_modules("bench/capture_bench.py", "websockets")
    formats = [f for f in args.formats.split(",") if f]
    extra = shlex.split(args.wsproxy_args)
    scenarios: dict[str, tuple[bytes | str, int, int, list[str]]] = {
        # name: (payload, count, window, configurations)
        "small": ("x" * 64, args.messages, args.window, ["off", *formats]),
        "large": (os.urandom(MiB), args.large, 4, ["off", *formats]),
        # The stream: 1 GiB each way through one connection, capture off and JSONL only (a
        # HAR of it would be rewritten from a 2.7 GiB journal).
        "stream": (os.urandom(MiB), args.stream, 4, ["off", "jsonl"]),
    }
    echo_port = free_port()
    echo = subprocess.Popen([sys.executable, "-c", ECHO, str(echo_port)], start_new_session=True)
    base = Path(args.dir) / f"wsproxy-capture-bench-{os.getpid()}"
    rows = [
        [
            "scenario",
            "capture",
            "throughput",
            "x off",
            "proxy CPU",
            "x off",
            "peak RSS MiB",
            "file MiB",
            "lost",
        ]
    ]
    print(f"wsproxy from {args.root}, extra flags {extra or 'none'}", file=sys.stderr)
    try:
        wait_port_sync(echo_port, echo, 15)
        with tempfile.TemporaryDirectory() as confdir:
            for name in args.scenarios.split(","):
                payload, count, window, configs = scenarios[name]
                repeats = args.repeats
                results: dict[str, list[Run]] = {c: [] for c in configs}
                for round_ in range(repeats):
                    order = configs[round_ % len(configs) :] + configs[: round_ % len(configs)]
                    for config in order:
                        capture = None if config == "off" else base.with_suffix(f".{config}")
                        r = run(
                            args.root, echo_port, extra, capture, payload, count, window, confdir
                        )
                        results[config].append(r)
                        print(f"  {name} {config}: {r}", file=sys.stderr)
                off = median_run(results["off"])
                for config in configs:
                    m = median_run(results[config])
                    if name == "small":
                        rate = f"{count / m.seconds:,.0f} rt/s"
                        cpu = f"{m.cpu / count * 1e6:.1f} µs/rt"
                    else:
                        rate = f"{count / m.seconds:,.1f} MiB/s"
                        cpu = f"{m.cpu / count * 1000:.2f} ms/MiB"
                    rows.append(
                        [
                            f"{name} ({count}x{len(payload)} B)",
                            config,
                            rate,
                            f"{off.seconds / m.seconds:.2f}",
                            cpu,
                            f"{m.cpu / off.cpu:.2f}" if off.cpu else "-",
                            f"{m.hwm_mib:.0f}",
                            f"{m.file_mib:.0f}" if config != "off" else "-",
                            str(m.lost) if config != "off" else "-",
                        ]
                    )
                print(render(rows), file=sys.stderr, flush=True)  # so far
    finally:
        os.killpg(echo.pid, signal.SIGTERM)
        echo.wait()
    print(render(rows))
    print(
        f"medians of {args.repeats} interleaved rounds; throughput of messages "
        "echoed (each crossed the proxy twice); 'x off': throughput / capture off's, CPU / "
        "capture off's; rt = round trip"
    )


if __name__ == "__main__":
    main()
