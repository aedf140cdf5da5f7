"""What permessage-deflate costs wsproxy: throughput and proxy CPU, compressed vs not.

Run by hand from the repository root (needs ``npm install --prefix bench`` once):

    .venv/bin/python bench/compression_bench.py            # 3 s per run
    .venv/bin/python bench/compression_bench.py --duration 5 --repeats 3

Every run: a Node ``ws`` echo server (bench/loadgen.mjs, permessage-deflate on or off), a
``python -m wsproxy --mode reverse:... -q`` in front of it (optionally with ``-s`` and a
rewriting plugin written by this script into a temp dir: it swaps the case of every message,
both ways, so every message is changed, and under compression recompressed), and the Node
load generator (``pipeline`` mode, same compression setting) measuring round trips.

Payloads (loadgen.mjs ``makePayload``): compressed runs use JSON-like word text (deflates
3-4x); uncompressed runs use random letters (the same generator bench.py uses). Scenarios:
64-byte text, 32 in flight (messages/s), and 1 MiB text, 2 in flight (MB/s, MiB = 2**20).

Proxy CPU is utime + stime from /proc/PID/stat, read when the load generator is ready and
after it is done, so it covers exactly the measured round trips; "CPU/msg" divides it by
round trips (one message each way). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import NODE_MISSING, cpu_seconds, free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
LOADGEN = ROOT / "bench" / "loadgen.mjs"
MIB = 1024 * 1024

PLUGIN = '''\
"""compression_bench: change every message (swap case), both ways."""


def message(flow, message):
    message.content = message.content.swapcase()
'''


@dataclass(frozen=True)
class Scenario:
    name: str
    size: int
    inflight: int


SCENARIOS = [Scenario("64B text", 64, 32), Scenario("1MiB text", MIB, 2)]


async def spawn(*cmd: str, stdout: Any = asyncio.subprocess.PIPE) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.PIPE,
        stdout=stdout,
        stderr=asyncio.subprocess.DEVNULL if stdout is not asyncio.subprocess.PIPE else None,
        cwd=ROOT,
        start_new_session=True,
    )


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def event(proc: asyncio.subprocess.Process, want: str, timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), max(0.1, deadline - time.monotonic()))
        if not line:
            raise RuntimeError(f"loadgen ended before {want!r}")
        ev = json.loads(line)
        if ev.get("event") == "error":
            raise RuntimeError(ev.get("error"))
        if ev.get("event") == want:
            return dict(ev)


async def echo_server(node: str, compress: bool) -> tuple[asyncio.subprocess.Process, int]:
    proc = await spawn(node, str(LOADGEN), "echo", json.dumps({"port": 0, "compress": compress}))
    ev = await event(proc, "listening", 15)
    return proc, int(ev["port"])


async def one_run(
    node: str,
    echo_port: int,
    compress: bool,
    plugin: Path | bool | None,
    scen: Scenario,
    args: Any,
) -> dict[str, float]:
    """One measurement; ``plugin`` False means no proxy at all (the harness's ceiling)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as confdir:
        cmd = [sys.executable, "-m", "wsproxy", "--mode", f"reverse:ws://127.0.0.1:{echo_port}"]
        cmd += ["-p", str(port), "-q", "--confdir", confdir]
        if isinstance(plugin, Path):
            cmd += ["-s", str(plugin)]
        if plugin is False:
            cmd = ["sleep", "3600"]
            port = echo_port
        proxy = await spawn(*cmd, stdout=asyncio.subprocess.DEVNULL)
        try:
            await wait_port(port, 20, None)
            cfg = {
                "url": f"ws://127.0.0.1:{port}/",
                "compress": compress,
                "conns": 1,
                "inflight": scen.inflight,
                "size": scen.size,
                "duration": args.duration,
                "warmup": args.warmup,
                "drainTimeout": 60,
                "timeout": args.duration + args.warmup + 180,
            }
            lg = await spawn(node, str(LOADGEN), "pipeline", json.dumps(cfg))
            try:
                await event(lg, "ready", 120)
                cpu0 = cpu_seconds([proxy.pid])
                assert lg.stdin is not None
                lg.stdin.write(b"go\n")
                await lg.stdin.drain()
                done = await event(lg, "done", args.duration + 120)
                cpu1 = cpu_seconds([proxy.pid])
            finally:
                await stop(lg)
        finally:
            await stop(proxy)
    rts = done["roundTrips"]
    return {
        "msgs_per_s": done["msgsPerSec"],
        "mb_per_s": done["mibPerSec"],
        "cpu_s": cpu1 - cpu0,
        "elapsed_s": done["elapsed"],
        "cpu_pct": 100 * (cpu1 - cpu0) / done["elapsed"],
        "cpu_us_per_rt": 1e6 * (cpu1 - cpu0) / max(rts, 1),
    }


async def amain(args: Any) -> int:
    node = args.node
    if not (ROOT / "bench" / "node_modules" / "ws").exists():
        print(NODE_MISSING, file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="wsproxy-compression-bench-"))
    plugin = tmp / "swapcase.py"
    plugin.write_text(PLUGIN)
    echoes = {c: await echo_server(node, c) for c in (True, False)}
    configs: list[tuple[str, bool, Path | bool | None]] = [
        ("direct, deflate (no proxy)", True, False),
        ("deflate", True, None),
        ("deflate + rewrite", True, plugin),
        ("direct, plain (no proxy)", False, False),
        ("plain", False, None),
        ("plain + rewrite", False, plugin),
    ]
    rows = []
    try:
        for scen in SCENARIOS:
            for label, compress, plug in configs:
                runs = []
                for _ in range(args.repeats):
                    runs.append(
                        await one_run(node, echoes[compress][1], compress, plug, scen, args)
                    )
                med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                rows.append((scen.name, label, med))
                print(f"  {scen.name:10} {label:28} done", file=sys.stderr, flush=True)
    finally:
        for proc, _ in echoes.values():
            await stop(proc)
    header = "| payload | connection | msgs/s | MiB/s | proxy CPU % | proxy CPU µs/round trip |"
    print(header)
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for scen_name, label, m in rows:
        cpu = "-" if "direct" in label else f"{m['cpu_pct']:.0f}"
        per = "-" if "direct" in label else f"{m['cpu_us_per_rt']:,.0f}"
        print(
            f"| {scen_name} | {label} | {m['msgs_per_s']:,.0f} | {m['mb_per_s']:,.1f} "
            f"| {cpu} | {per} |"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of warm-up per run")
    parser.add_argument("-r", "--repeats", type=int, default=1, help="runs per cell (median)")
    parser.add_argument("--node", default="node")
    return asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
