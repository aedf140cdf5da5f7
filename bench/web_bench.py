"""What the web UI costs the relay: 64 B round trips through plain ``wsproxy`` and through
``wsproxy-web`` with a page watching ``/api/updates`` (a Python WebSocket client that reads
every batch, standing in for the browser).

Run by hand from the repository root (never as a test):

    .venv/bin/python bench/web_bench.py --round-trips 20000 --repeat 3

Prints the proxy process's CPU (user + system, from /proc) per 1,000 round trips for each,
and the ratio; the target is at most 2x. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def start(web: bool, confdir: Path, log: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    module = "wsproxy.web" if web else "wsproxy"
    args = [sys.executable, "-m", module, "-p", str(port), "--confdir", str(confdir), "-q"]
    ui = ""
    if web:
        args += ["--web-port", str(free_port())]
    out = open(log, "wb")  # noqa: SIM115 (closed with the process below)
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = log.read_text("utf-8", "replace")
        found = re.search(r"wsproxy web UI: (\S+)", text)
        if web and found:
            ui = found.group(1)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if not web or ui:
                    return proc, port, ui
        except OSError:
            pass
        await asyncio.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{module} did not start:\n{log.read_text()}")


async def watch(ui: str, seen: list[int]) -> None:
    base, _, token = ui.partition("/?token=")
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{base}/api/updates?token={token}") as ws,
    ):
        async for message in ws:
            data = json.loads(message.data)
            seen[0] += sum(1 for e in data.get("events", ()) if e["type"] == "msg")


async def measure(web: bool, upstream: str, round_trips: int, tmp: Path) -> tuple[float, int]:
    proc, port, ui = await start(web, tmp / "confdir", tmp / f"{'web' if web else 'plain'}.log")
    seen = [0]
    watcher = asyncio.create_task(watch(ui, seen)) if web else None
    try:
        if watcher is not None:
            await asyncio.sleep(0.5)  # the page is connected before the traffic starts
        payload = os.urandom(32).hex()  # 64 B of text
        async with connect(upstream, proxy=f"http://127.0.0.1:{port}") as ws:
            for _ in range(200):  # warm up
                await ws.send(payload)
                await ws.recv()
            before = cpu_seconds(proc.pid)
            for _ in range(round_trips):
                await ws.send(payload)
                await ws.recv()
            if watcher is not None:
                want = seen[0] + 2 * round_trips
                deadline = time.monotonic() + 10
                while seen[0] < want * 0.99 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)  # the last batch reached the page
            used = cpu_seconds(proc.pid) - before
    finally:
        if watcher is not None:
            watcher.cancel()
        proc.terminate()
        proc.wait(15)
    return used, seen[0]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    plain: list[float] = []
    web: list[float] = []
    async with serve(echo, "127.0.0.1", 0) as server:
        upstream = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.repeat):
                plain.append((await measure(False, upstream, args.round_trips, Path(tmp)))[0])
                used, seen = await measure(True, upstream, args.round_trips, Path(tmp))
                web.append(used)
    per = 1000 / args.round_trips
    p, w = statistics.median(plain) * per, statistics.median(web) * per
    print(f"64 B round trips: {args.round_trips} x {args.repeat} (medians)")
    print(f"  wsproxy                      {p * 1000:7.1f} ms CPU per 1,000 round trips")
    print(f"  wsproxy-web, a page watching {w * 1000:7.1f} ms CPU per 1,000 round trips")
    print(f"  ratio {w / p:.2f}x (target <= 2x); the page saw {seen} message events last run")


if __name__ == "__main__":
    asyncio.run(main())
