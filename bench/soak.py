"""Soak test: thousands of concurrent WebSockets through one wsproxy process, by hand.

    .venv/bin/python bench/soak.py                       # 2,000 connections for 60 s
    .venv/bin/python bench/soak.py --conns 500 --duration 20 --wsproxy-args="-q --no-compression"
    .venv/bin/python bench/soak.py --conns 10000 --duration 600 --proxy-workers 2  # issue 17

``--proxy-workers N`` runs the proxy with ``--workers N``: the figures are then the sums over
its N worker processes (the supervisor, which relays nothing, is left out).

Everything runs on 127.0.0.1. An echo server (``node bench/loadgen.mjs echo``, or a
``websockets`` server in its own process when Node or ``bench/node_modules`` is missing) is
the upstream of a ``python -m wsproxy --mode reverse:ws://...`` subprocess. Client worker
processes (``--workers``, each one asyncio loop with the ``websockets`` client) open
``--conns`` WebSockets through the proxy, ``--batch`` handshakes at a time, and leave them
idle for a moment; then every connection sends a small text message about once a second
(with a random phase) and checks that the echo is byte for byte what it sent, for
``--duration`` seconds; then each waits for its last echo and closes with 1000.

Printed at the end: messages/s, messages sent / received / lost (lost must be 0), errors,
and the proxy's RSS and open descriptors (``/proc/PID/status`` VmRSS, ``/proc/PID/fd``) at
start (no client), with every connection open and idle, at the peak of the traffic phase,
and after every connection closed (which must be back near the start), plus the proxy's
memory per idle connection. The exit status is 0 when nothing was lost, no error happened
and the descriptors came back; 1 otherwise; 2 when the set-up failed.

The driver raises its ``RLIMIT_NOFILE`` soft limit to the hard limit; the proxy, the echo
server and the workers inherit it. Every child runs in its own process group, gets SIGTERM
(SIGKILL after 3 s) at the end, on Ctrl-C, and by ``PR_SET_PDEATHSIG`` if the driver dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import random
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    HOST,
    SetupError,
    die_with_parent,
    free_port,
    require_modules,
    rss_kib,
    spawn,
    stop_group,
    wait_port_sync,
)

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
LOADGEN = BENCH_DIR / "loadgen.mjs"
ECHO_TIMEOUT = 10.0  # seconds an echo may take before its message counts as lost


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- /proc -----------------------------------------------------------------------------------


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


@dataclass
class Sample:
    rss_kib: int
    fds: int

    def __str__(self) -> str:
        return f"RSS {self.rss_kib / 1024:7.1f} MiB, {self.fds:5d} open descriptors"


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``: a ``--workers`` supervisor's workers."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def served_by(pid: int, workers: int) -> list[int]:
    """The processes that serve the connections: the proxy, or with --proxy-workers its
    worker children (the supervisor only watches them)."""
    return children(pid) if workers > 1 else [pid]


def sample(pid: int, workers: int = 1) -> Sample:
    """RSS and open descriptors, summed over the processes that serve."""
    pids = served_by(pid, workers)
    return Sample(rss_kib(pids), sum(fd_count(p) for p in pids))


def wait_workers(log_path: Path, proc: subprocess.Popen[bytes], workers: int) -> None:
    """Until the supervisor says that all its workers listen (its line in the log)."""
    deadline = time.monotonic() + 60
    while f"{workers} workers)" not in log_path.read_text("utf-8", "replace"):
        if proc.poll() is not None:
            raise SetupError(f"the proxy exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise SetupError(f"{workers} proxy workers did not listen within 60 s")
        time.sleep(0.1)


# -- children --------------------------------------------------------------------------------


PY_ECHO = """
import asyncio, sys
from websockets.asyncio.server import serve
async def echo(ws):
    async for message in ws:
        await ws.send(message)
async def main():
    async with serve(echo, "127.0.0.1", int(sys.argv[1]), max_size=None, ping_interval=None,
                     compression=None, backlog=4096):
        await asyncio.Future()
asyncio.run(main())
"""


def start_echo(workdir: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    node = "node"
    if (BENCH_DIR / "node_modules" / "ws").is_dir() and _which(node):
        proc = spawn(
            [node, str(LOADGEN), "echo", json.dumps({"port": 0})],
            stdin=subprocess.PIPE,  # it exits when its stdin closes
            stdout=subprocess.PIPE,
            stderr=open(workdir / "echo.log", "wb"),  # noqa: SIM115
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        try:
            port = int(json.loads(line)["port"])
        except (ValueError, KeyError) as error:
            stop_group(proc)
            raise SetupError(f"the Node echo server said {line!r}") from error
        return proc, port, "node ws (bench/loadgen.mjs echo)"
    port = free_port()
    proc = spawn(
        [sys.executable, "-c", PY_ECHO, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "echo.log", "wb"),  # noqa: SIM115
    )
    wait_port_sync(port, proc, 30)
    return proc, port, "python websockets (Node or bench/node_modules missing)"


def _which(name: str) -> bool:
    return any(
        os.access(os.path.join(d, name), os.X_OK) for d in os.environ.get("PATH", "").split(":")
    )


# -- client workers --------------------------------------------------------------------------


@dataclass
class Counts:
    opened: int = 0
    open_errors: int = 0
    sent: int = 0
    received: int = 0
    mismatched: int = 0
    lost: int = 0
    errors: int = 0
    closed_cleanly: int = 0
    rtt_max: float = 0.0
    rtt_sum: float = 0.0
    samples: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        self.errors += 1
        if len(self.samples) < 5:
            self.samples.append(what)


def worker_main(
    index: int, url: str, conns: int, batch: int, conn: multiprocessing.connection.Connection
) -> None:
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C
    asyncio.run(_worker(index, url, conns, batch, conn))


async def _worker(
    index: int, url: str, conns: int, batch: int, pipe: multiprocessing.connection.Connection
) -> None:
    from websockets.asyncio.client import ClientConnection, connect

    loop = asyncio.get_running_loop()
    counts = Counts()
    sockets: list[ClientConnection | None] = [None] * conns
    gate = asyncio.Semaphore(batch)

    async def open_one(i: int) -> None:
        async with gate:
            for attempt in range(3):
                try:
                    sockets[i] = await connect(
                        url,
                        compression=None,
                        ping_interval=None,
                        open_timeout=30,
                        close_timeout=10,
                        max_size=None,
                    )
                    counts.opened += 1
                    return
                except Exception as error:
                    if attempt == 2:
                        counts.open_errors += 1
                        counts.note(f"open: {error!r}")
                    await asyncio.sleep(0.2)

    await asyncio.gather(*(open_one(i) for i in range(conns)))
    pipe.send(("opened", counts.opened, counts.open_errors))

    # Wait for the driver's "go" (reading the pipe without blocking the loop).
    ready = asyncio.Event()
    loop.add_reader(pipe.fileno(), ready.set)
    await ready.wait()
    loop.remove_reader(pipe.fileno())
    command, duration = pipe.recv()
    assert command == "go"
    stop_at = loop.time() + duration

    async def talk(i: int, ws: ClientConnection) -> None:
        await asyncio.sleep(random.random())  # spread the sends over the second
        seq = 0
        try:
            while loop.time() < stop_at:
                started = loop.time()
                message = f"w{index}c{i}s{seq}-".ljust(64, "x")
                await ws.send(message)
                counts.sent += 1
                try:
                    echo = await asyncio.wait_for(ws.recv(), ECHO_TIMEOUT)
                except TimeoutError:
                    counts.lost += 1
                    counts.note(f"c{i}: no echo within {ECHO_TIMEOUT:g} s")
                    return
                rtt = loop.time() - started
                counts.rtt_sum += rtt
                counts.rtt_max = max(counts.rtt_max, rtt)
                if echo != message:
                    counts.mismatched += 1
                    counts.note(f"c{i}: echo {str(echo)[:40]!r} for {message[:40]!r}")
                else:
                    counts.received += 1
                seq += 1
                await asyncio.sleep(max(0.0, 1.0 - rtt))
            await ws.close(1000)
            if ws.close_code == 1000:
                counts.closed_cleanly += 1
            else:
                counts.note(f"c{i}: closed with {ws.close_code} {ws.close_reason!r}")
        except Exception as error:
            counts.note(f"c{i}: {error!r}")
            with contextlib.suppress(Exception):
                await ws.close()

    await asyncio.gather(*(talk(i, ws) for i, ws in enumerate(sockets) if ws is not None))
    counts.lost += counts.sent - counts.received - counts.mismatched - counts.lost
    pipe.send(("done", counts.__dict__))


# -- the driver ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=2000, help="concurrent WebSockets (2000)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (60)")
    parser.add_argument("--workers", type=int, default=0, help="client processes (CPUs, max 4)")
    parser.add_argument("--batch", type=int, default=100, help="handshakes at once per worker")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds idle before traffic")
    parser.add_argument(
        "--wsproxy-args", default="-q", help='extra wsproxy flags, one string ("-q")'
    )
    parser.add_argument(
        "--proxy-workers",
        type=int,
        default=1,
        metavar="N",
        help="run the proxy with --workers N; RSS and descriptors are then summed over its "
        "worker processes (1)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    require_modules("bench/soak.py", "websockets")
    workers = args.workers or max(1, min(4, os.cpu_count() or 1))
    limit = raise_nofile()
    need = 3 * args.conns + 200
    if limit < need:
        log(f"warning: RLIMIT_NOFILE is {limit}, the proxy needs about {need}")

    workdir = Path(tempfile.mkdtemp(prefix="wsproxy-soak-"))
    echo: subprocess.Popen[bytes] | None = None
    proxy: subprocess.Popen[bytes] | None = None
    procs: list[multiprocessing.process.BaseProcess] = []
    failed = True
    status = 1
    try:
        echo, echo_port, echo_kind = start_echo(workdir)
        port = free_port()
        proxy_cmd = [
            sys.executable, "-m", "wsproxy",
            "--mode", f"reverse:ws://{HOST}:{echo_port}",
            "--listen-host", HOST, "-p", str(port),
            "--confdir", str(workdir / "confdir"),
            "--max-connections", str(args.conns + 1000),
            "--max-connections-per-client", str(args.conns + 1000),
            *(["--workers", str(args.proxy_workers)] if args.proxy_workers > 1 else []),
            *shlex.split(args.wsproxy_args),
        ]  # fmt: skip
        proxy = spawn(
            proxy_cmd,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=open(workdir / "proxy.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        wait_port_sync(port, proxy, 30)
        if args.proxy_workers > 1:
            wait_workers(workdir / "proxy.log", proxy, args.proxy_workers)
        url = f"ws://{HOST}:{port}/soak"
        log(f"echo server: {echo_kind} on {echo_port}; proxy pid {proxy.pid} on {port}")
        if args.proxy_workers > 1:
            pids = served_by(proxy.pid, args.proxy_workers)
            log(f"proxy workers: {len(pids)} ({', '.join(map(str, sorted(pids)))})")
        log(f"RLIMIT_NOFILE {limit}; {args.conns} connections in {workers} worker processes")
        time.sleep(0.5)
        at_start = sample(proxy.pid, args.proxy_workers)

        ctx = multiprocessing.get_context("spawn")
        pipes = []
        shares = [args.conns // workers + (i < args.conns % workers) for i in range(workers)]
        opening = time.monotonic()
        for i, share in enumerate(shares):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main, args=(i, url, share, args.batch, theirs), daemon=True
            )
            proc.start()
            procs.append(proc)
            pipes.append(ours)
        opened = open_errors = 0
        for pipe in pipes:
            if not pipe.poll(300):
                raise SetupError("a worker did not report its connections within 300 s")
            _, n, errors = pipe.recv()
            opened += n
            open_errors += errors
        open_time = time.monotonic() - opening
        log(f"{opened} connections open in {open_time:.1f} s ({open_errors} failed)")
        time.sleep(args.idle)
        idle = sample(proxy.pid, args.proxy_workers)
        peak = Sample(idle.rss_kib, idle.fds)

        log(f"traffic for {args.duration:g} s")
        for pipe in pipes:
            pipe.send(("go", args.duration))
        started = time.monotonic()
        results: list[dict[str, Any]] = []
        deadline = started + args.duration + ECHO_TIMEOUT + 60
        pending = list(pipes)
        next_report = started + 10
        while pending and time.monotonic() < deadline:
            now = sample(proxy.pid, args.proxy_workers)
            peak = Sample(max(peak.rss_kib, now.rss_kib), max(peak.fds, now.fds))
            for pipe in list(pending):
                if pipe.poll(0):
                    results.append(pipe.recv()[1])
                    pending.remove(pipe)
            if time.monotonic() > next_report and time.monotonic() < started + args.duration:
                log(f"  {now}")
                next_report += 10
            if proxy.poll() is not None:
                raise SetupError(f"the proxy died with status {proxy.returncode}")
            time.sleep(0.25)
        if pending:
            raise SetupError("workers did not finish in time")
        traffic_time = time.monotonic() - started

        # Every connection closed: the proxy should give its descriptors back at once
        # (memory less so: a Python process seldom returns freed memory to the system).
        settle_deadline = time.monotonic() + 15
        after = sample(proxy.pid, args.proxy_workers)
        while after.fds > at_start.fds + 2 and time.monotonic() < settle_deadline:
            time.sleep(0.25)
            after = sample(proxy.pid, args.proxy_workers)
        time.sleep(1)
        after = sample(proxy.pid, args.proxy_workers)

        total = Counts()
        for result in results:
            for key, value in result.items():
                if key == "samples":
                    total.samples += value
                elif key == "rtt_max":
                    total.rtt_max = max(total.rtt_max, value)
                else:
                    setattr(total, key, getattr(total, key) + value)
        total.opened, total.open_errors = opened, open_errors
        rate = total.received / args.duration
        per_conn = (idle.rss_kib - at_start.rss_kib) / max(opened, 1)
        rtt_mean = total.rtt_sum / max(total.received, 1) * 1000
        fds_back = after.fds <= at_start.fds + 2
        errors = total.errors - total.lost  # lost ones are noted as errors too
        print()
        print(f"wsproxy soak: {args.conns} connections, {args.duration:g} s of traffic")
        print(f"  echo server      {echo_kind}")
        print(f"  proxy flags      {' '.join(proxy_cmd[3:])}")
        if args.proxy_workers > 1:
            print(f"  proxy processes  {args.proxy_workers} workers: RSS and descriptors summed")
        print(f"  connections      {opened} opened in {open_time:.1f} s, {open_errors} failed,")
        print(f"                   {total.closed_cleanly} closed cleanly with 1000")
        print(f"  messages/s       {rate:,.0f} round trips/s ({2 * rate:,.0f} messages/s "
              "through the proxy)")  # fmt: skip
        print(f"  messages         {total.sent} sent, {total.received} received, "
              f"{total.lost} lost, {total.mismatched} corrupted")  # fmt: skip
        print(f"  errors           {errors}")
        for what in total.samples[:5]:
            print(f"                   {what}")
        print(f"  round trip       mean {rtt_mean:.1f} ms, max {total.rtt_max * 1000:.0f} ms")
        print(f"  traffic phase    {traffic_time:.1f} s (the duration plus the last echoes)")
        print(f"  proxy at start   {at_start}")
        print(f"  proxy idle       {idle}   ({opened} open, before traffic)")
        print(f"  proxy peak       {peak}")
        print(f"  proxy after      {after}   (all closed)")
        print(f"  memory per idle connection  {per_conn:.1f} KiB")
        print(f"  descriptors back to start   {'yes' if fds_back else 'NO'}")
        print(f"  logs             {workdir}" if args.keep_logs else "", end="")
        print()
        ok = (
            total.lost == 0
            and total.mismatched == 0
            and errors == 0
            and open_errors == 0
            and fds_back
            and total.closed_cleanly == opened
        )
        failed = not ok
        status = 0 if ok else 1
    except SetupError as error:
        log(f"set-up failed: {error}")
        status = 2
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        for child in procs:
            if child.is_alive():
                child.terminate()
            child.join(5)
            if child.is_alive():
                child.kill()
                child.join(5)
        # A proxy's shutdown waits for connections still lingering after their close (a few
        # seconds at most): with thousands just closed, 3 s is not enough.
        code = stop_group(proxy, grace=20.0)
        if code not in (None, 0):
            log(f"the proxy exited with {code}; its log: {workdir / 'proxy.log'}")
            failed = True
        if echo is not None and echo.stdin is not None:
            with contextlib.suppress(OSError):
                echo.stdin.close()
        stop_group(echo)
        log_text = (workdir / "proxy.log").read_text("utf-8", "replace") if proxy else ""
        if "Traceback" in log_text:
            log(f"the proxy printed a traceback: {workdir / 'proxy.log'}")
            failed = True
        if args.keep_logs or failed:
            log(f"logs kept in {workdir}")
        else:
            for path in sorted(workdir.rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() else path.unlink()
            workdir.rmdir()
    return 1 if failed and status == 0 else status


if __name__ == "__main__":
    sys.exit(main())
