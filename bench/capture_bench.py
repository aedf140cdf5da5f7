"""What capturing costs: 64-byte messages/s through wsproxy with and without ``-w FILE.jsonl``,
and the proxy's peak RSS while it captures a 1 GiB stream (1,024 binary messages of 1 MiB).

Prints figures, asserts nothing. Everything runs on 127.0.0.1: a websockets echo server in a
subprocess, ``python -m wsproxy --mode reverse:...`` in a subprocess, and a websockets client
here that keeps ``--window`` messages in flight. Proxy CPU comes from /proc/PID/stat, peak RSS
from VmHWM in /proc/PID/status. Usage::

    .venv/bin/python bench/capture_bench.py [--messages 50000] [--large 1024] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import HOST, cpu_seconds, free_port, hwm_kib, stop_group, wait_port_sync
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
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


def start_proxy(echo: int, args: list[str], confdir: str) -> tuple[subprocess.Popen[bytes], int]:
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
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_port_sync(port, proc, 15)
    return proc, port


async def pump(port: int, payload: bytes | str, count: int, window: int) -> float:
    """Send ``count`` messages with ``window`` in flight; seconds from first send to last echo."""
    async with connect(f"ws://{HOST}:{port}/", max_size=None, compression=None) as ws:
        for _ in range(window):  # warm-up
            await ws.send(payload)
            await ws.recv()
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
        return time.perf_counter() - start


def run(
    echo: int, args: list[str], payload: bytes | str, count: int, window: int, confdir: str
) -> tuple[float, float, float]:
    proc, port = start_proxy(echo, args, confdir)
    try:
        cpu0 = cpu_seconds([proc.pid])
        seconds = asyncio.run(pump(port, payload, count, window))
        cpu = cpu_seconds([proc.pid]) - cpu0
        return seconds, cpu, hwm_kib([proc.pid]) / 1024
    finally:
        stop_group(proc, 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000, help="64-byte messages per run")
    parser.add_argument("--window", type=int, default=100, help="messages in flight")
    parser.add_argument("--large", type=int, default=1024, help="1 MiB messages in the RSS run")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where captures go")
    parser.add_argument("-r", "--repeats", type=int, default=3)
    args = parser.parse_args()
    echo_port = free_port()
    echo = subprocess.Popen([sys.executable, "-c", ECHO, str(echo_port)], start_new_session=True)
    capture = Path(args.dir) / "wsproxy-capture-bench.jsonl"
    try:
        wait_port_sync(echo_port, echo, 15)
        with tempfile.TemporaryDirectory() as confdir:
            small = "x" * 64
            print(
                f"64-byte text messages, {args.messages} per run, {args.window} in flight "
                f"(median of {args.repeats}):"
            )
            for label, extra in (("capture off", []), ("capture on (jsonl)", ["-w", str(capture)])):
                runs = sorted(
                    run(echo_port, extra, small, args.messages, args.window, confdir)
                    for _ in range(args.repeats)
                )
                seconds, cpu, _ = runs[len(runs) // 2]
                print(
                    f"  {label:20} {args.messages / seconds:9,.0f} round trips/s "
                    f"({2 * args.messages / seconds:,.0f} messages/s through the proxy), "
                    f"proxy CPU {cpu / args.messages * 1e6:.1f} µs/round trip"
                )
            if capture.exists():
                print(f"  capture file: {capture.stat().st_size / 2**20:.1f} MiB")
            big = os.urandom(1024 * 1024)
            print(
                f"{args.large} binary messages of 1 MiB ({args.large / 1024:.2f} GiB each way), "
                "4 in flight:"
            )
            for label, extra in (("capture off", []), ("capture on (jsonl)", ["-w", str(capture)])):
                seconds, cpu, hwm = run(echo_port, extra, big, args.large, 4, confdir)
                print(
                    f"  {label:20} {args.large / seconds:7.1f} MiB/s echoed, proxy CPU "
                    f"{cpu / args.large * 1000:.1f} ms/MiB echoed, proxy peak RSS (VmHWM) "
                    f"{hwm:.0f} MiB"
                )
            if capture.exists():
                print(f"  capture file: {capture.stat().st_size / 2**30:.2f} GiB ({capture})")
    finally:
        os.killpg(echo.pid, signal.SIGTERM)
        echo.wait()
        capture.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
