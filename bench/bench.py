"""Benchmark driver: wsproxy against a direct connection, a plain asyncio relay, mitmproxy, nginx
and mockttp, and wsproxy with its features on (-v, plugins, a capture, permessage-deflate).

Run by hand (never as a test), from the repository root:

    npm install --prefix bench            # once: ws + bufferutil for bench/loadgen.mjs
    .venv/bin/python bench/bench.py --quick
    .venv/bin/python bench/bench.py --targets direct,relay,wsproxy --scenarios pipe1,large1m

Everything runs on 127.0.0.1. A Node echo server (bench/loadgen.mjs echo) is the
upstream of every target; a Node load generator (bench/loadgen.mjs MODE) is started
for every measurement. Targets are measured round-robin inside each scenario,
repeated R times, and the table shows medians. CPU and RSS figures are those of the
proxy process (and any children it has), read from /proc. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import importlib.util
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (  # bench/_common.py; also what tls_bench.py reaches as bench.NAME
    HOST,
    MITMPROXY_MISSING,
    NGINX_MISSING,
    NODE_MISSING,
    cpu_seconds,
    die_with_parent,
    find_mitmdump,
    find_nginx,
    free_port,
    hwm_kib,
    nginx_cmd,
    proc_tree,
    render,
    reset_hwm,
    rss_kib,
    wait_port,
    write_nginx_conf,
)
from _perf import KINDS, PERF_MISSING, PerfRecording, find_perf  # bench/_perf.py

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
LOADGEN = BENCH_DIR / "loadgen.mjs"
RELAY = BENCH_DIR / "relay.py"
MIB = 1024 * 1024
CPUS = os.cpu_count() or 1
MOCKTTP = BENCH_DIR / "mockttp_proxy.mjs"
TLS_BENCH = BENCH_DIR / "tls_bench.py"
# wsproxy with one feature on, measured in the scenarios marked `features` only (pipe1, deflate,
# deflate-off): each is quoted relative to quiet wsproxy (the "features cost little").
FEATURE_TARGETS = ("wsproxy-v", "wsproxy-log", "wsproxy-capture", "wsproxy-rewrite")
# The rewrite target run from the --baseline checkout: the hooked path before and after a change,
# side by side (not in --targets all: it needs a baseline).
BASE_REWRITE = "wsproxy-base-rewrite"
REWRITE_TARGETS = ("wsproxy-rewrite", BASE_REWRITE)
ALL_TARGETS = (
    "direct",
    "relay",
    "relay-uvloop",
    "relay-streams",
    "mitmproxy",
    "nginx",
    "mockttp",
    "wsproxy",
    "wsproxy-w2",
    "wsproxy-asyncio",
    "wsproxy-base",
    *FEATURE_TARGETS,
    BASE_REWRITE,
)
DEFAULT_TARGETS = "direct,relay,mitmproxy,nginx,mockttp,wsproxy"
EVERY_TARGET = "direct,relay,mitmproxy,nginx,mockttp,wsproxy,wsproxy-w2," + ",".join(
    FEATURE_TARGETS
)  # --targets all
# wsproxy-base: another checkout of wsproxy (--baseline DIR), to compare two versions in one run.
RATIO_TARGETS = ("wsproxy", "wsproxy-base", "mitmproxy")  # ratio columns X/relay, for the CPU rows
# The rewrite rule of wsproxy-rewrite: changes the first character of every message the load
# generator sends (so, compressed, the proxy inflates and deflates every one), length unchanged.
REWRITE_RULE = {"direction": "client", "match": "^.", "replace": "X"}
NGINX_WORKER_NOTE = "nginx: one worker, proxy_buffering off, 64 KiB proxy buffers"
UVLOOP_MISSING = "uvloop is not installed (pip install '.[fast]')"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- /proc


class RssSampler:
    """Samples the summed VmRSS of some processes every `interval` seconds."""

    def __init__(self, pids: list[int], interval: float = 0.05) -> None:
        self.pids = pids
        self.interval = interval
        self.peak_kib = rss_kib(pids) if pids else 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak_kib = max(self.peak_kib, rss_kib(self.pids))
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self.pids:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.pids:
            self.peak_kib = max(self.peak_kib, rss_kib(self.pids))


# ----------------------------------------------------------------------------- processes

_CHILDREN: dict[int, asyncio.subprocess.Process] = {}


async def spawn(
    args: list[str],
    *,
    stdout: Any,
    stderr: Any,
    stdin: Any = subprocess.DEVNULL,
    cwd: Path | None = None,
) -> asyncio.subprocess.Process:
    """Start a child in its own process group (so Ctrl-C reaches only the driver)."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        cwd=str(cwd) if cwd else None,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    _CHILDREN[proc.pid] = proc
    return proc


async def terminate(proc: asyncio.subprocess.Process, grace: float = 3.0) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it lingers."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), grace)
    else:
        # The leader is gone; make sure nothing of its group is left behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.stdin is not None:
        proc.stdin.close()
    _CHILDREN.pop(proc.pid, None)


async def terminate_all() -> None:
    await asyncio.gather(*(terminate(p) for p in list(_CHILDREN.values())))


def kill_all_sync() -> None:
    """Last resort (atexit / after the loop is gone): SIGKILL every group still listed."""
    for pid in list(_CHILDREN):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    _CHILDREN.clear()


def tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


# ----------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    cmd: list[str] | None  # None: direct (no proxy process)
    port: int
    logdir: Path
    cwd: Path | None = None
    proc: asyncio.subprocess.Process | None = None
    available: bool = True
    reason: str = ""
    starts: int = 0
    feature: bool = False  # a wsproxy feature variant: runs in the `features` scenarios only

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/"

    @property
    def logfile(self) -> Path:
        return self.logdir / f"{self.name}.log"

    def pids(self) -> list[int]:
        if self.proc is None or self.proc.returncode is not None:
            return []
        return proc_tree(self.proc.pid)

    def alive(self) -> bool:
        return self.cmd is None or (self.proc is not None and self.proc.returncode is None)

    async def start(self, opts: Options) -> None:
        if self.cmd is None:
            return
        self.starts += 1
        with open(self.logfile, "ab") as lf:
            lf.write(f"\n=== start #{self.starts}: {shlex.join(self.cmd)}\n".encode())
            lf.flush()
            self.proc = await spawn(self.cmd, stdout=lf, stderr=lf, cwd=self.cwd)
        try:
            await wait_port(self.port, opts.start_timeout, self.proc)
            await check_echo(self, opts)
        except Exception as e:
            await self.stop()
            log_tail = tail(self.logfile)
            if self.name == "wsproxy-w2" and "--workers" in log_tail:
                raise RuntimeError(
                    "this wsproxy has no --workers: `python -m wsproxy --workers 2` was refused "
                    f"({log_tail.splitlines()[-1].strip()})"
                ) from None
            raise RuntimeError(f"{e}\n{log_tail}".rstrip()) from None

    async def stop(self) -> None:
        if self.proc is not None:
            await terminate(self.proc)
            self.proc = None


def compile_bytecode(checkout: Path) -> None:
    """Compile a wsproxy checkout's modules to bytecode, as installing it does: run from a
    checkout under PYTHONDONTWRITEBYTECODE (or read-only), the proxy would compile every module
    at each start, which costs it 0.7 MiB of RSS (the compiler's garbage) that an installed
    wsproxy does not carry. compileall writes whatever that variable says; it is a no-op when
    the files are up to date."""
    compileall.compile_dir(checkout / "wsproxy", quiet=1)


def make_targets(names: list[str], echo_port: int, opts: Options) -> list[Target]:
    targets = []
    for name in names:
        if name == "direct":
            targets.append(Target("direct", None, echo_port, opts.logdir))
            continue
        port = free_port()
        if name in ("relay", "relay-uvloop", "relay-streams"):
            cmd = [sys.executable, str(RELAY), "-p", str(port), "--upstream", f"{HOST}:{echo_port}"]
            cmd += ["--impl", "streams" if name == "relay-streams" else "protocol"]
            t = Target(name, cmd, port, opts.logdir)
            if name == "relay-uvloop":
                t.cmd = [*cmd, "--loop", "uvloop"]
                if importlib.util.find_spec("uvloop") is None:
                    t.available, t.reason = False, UVLOOP_MISSING
            targets.append(t)
        elif name == "mitmproxy":
            mitmdump = find_mitmdump()
            t = Target(name, None, port, opts.logdir)
            if mitmdump is None:
                t.available, t.reason = False, MITMPROXY_MISSING
            else:
                t.cmd = [
                    mitmdump,
                    "--mode",
                    f"reverse:http://{HOST}:{echo_port}",
                    "-p",
                    str(port),
                    "-q",
                    "--listen-host",
                    HOST,
                    "--set",
                    f"confdir={opts.logdir / 'mitmproxy-conf'}",
                ]
            targets.append(t)
        elif name == "nginx":
            nginx = find_nginx()
            t = Target(name, None, port, opts.logdir)
            if nginx is None:
                t.available, t.reason = False, NGINX_MISSING
            else:
                prefix = opts.logdir / "nginx"
                conf = write_nginx_conf(prefix, port, f"http://{HOST}:{echo_port}")
                t.cmd = nginx_cmd(nginx, prefix, conf)
            targets.append(t)
        elif name == "mockttp":
            t = Target(name, None, port, opts.logdir, cwd=BENCH_DIR)
            if not (BENCH_DIR / "node_modules" / "mockttp").is_dir():
                t.available = False
                t.reason = (
                    "mockttp is not installed in bench/node_modules: run `npm install --prefix "
                    "bench` from the repository root; until then its column shows n/a"
                )
            else:
                cfg = {"port": port, "upstream": f"ws://{HOST}:{echo_port}"}
                t.cmd = [opts.node, str(MOCKTTP), json.dumps(cfg)]
            targets.append(t)
        elif name in (
            "wsproxy",
            "wsproxy-base",
            "wsproxy-w2",
            "wsproxy-asyncio",
            *FEATURE_TARGETS,
            BASE_REWRITE,
        ):
            cmd = [sys.executable, "-m", "wsproxy", "--mode", f"reverse:ws://{HOST}:{echo_port}"]
            cmd += ["-p", str(port), *feature_args(name, opts), *shlex.split(opts.wsproxy_args)]
            where = opts.baseline if name in ("wsproxy-base", BASE_REWRITE) else REPO_DIR
            feature = name in FEATURE_TARGETS or name == BASE_REWRITE
            t = Target(name, cmd, port, opts.logdir, cwd=where, feature=feature)
            if where is None:
                t.available, t.reason = False, "no --baseline DIR given"
            else:
                compile_bytecode(where)
            targets.append(t)
        else:
            raise SystemExit(f"unknown target {name!r}; choose from {','.join(ALL_TARGETS)}")
    return targets


def feature_args(name: str, opts: Options) -> list[str]:
    """The flags of a wsproxy target: quiet, or one feature on (its output in the run's dir)."""
    if name == "wsproxy-v":
        return ["-v"]  # the target's stdout and stderr go to its log file: -v to a file
    if name == "wsproxy-log":
        return ["-q", "-s", "log", "--set", f"log_file={opts.logdir / 'log-plugin.txt'}"]
    if name == "wsproxy-capture":
        return ["-q", "-w", str(opts.logdir / "capture.jsonl")]
    if name in REWRITE_TARGETS:
        rules = opts.logdir / "rewrite-rules.json"
        rules.write_text(json.dumps({"rules": [REWRITE_RULE]}) + "\n")
        return ["-q", "-s", "rewrite", "--set", f"rewrite_rules={rules}"]
    if name == "wsproxy-w2":
        return ["-q", "--workers", "2"]
    if name == "wsproxy-asyncio":  # the default loop is uvloop when it is installed
        return ["-q", "--loop", "asyncio"]
    return ["-q"]


# ----------------------------------------------------------------------------- scenarios


# The deflate / deflate-off pair: bench/rawws.mjs peers, which frame by hand and send messages
# compressed before the run (context takeover, 15-bit windows: what ws and browsers agree on), so
# neither peer is the bottleneck (ws's echo, inflating and deflating every message in Node's
# thread pool, held the old deflate scenario to ~1,600 round trips/s). Paced at a pipe1-like
# rate, the same for both, so the proxy wakes as often and reads as many messages at a time in
# each: the difference in CPU per round trip is what compression costs, not batching. A proxy
# that cannot keep the pace runs flat out (fewer round trips/s), its CPU per round trip then
# an upper bound.
_RAW_PAIR: dict[str, Any] = {"conns": 1, "inflight": 100, "size": 64, "rate": 20000, "path": "raw"}
# /proc counts CPU in 10 ms ticks: at 20,000 round trips/s a 1 s run resolves 0.5 µs/round trip,
# a quarter of quiet wsproxy's figure here; --quick runs the pair 2.5 s (0.2 µs).
_RAW_QUICK = 2.5


@dataclass
class Scenario:
    name: str
    title: str
    mode: str  # loadgen mode: pipeline, connect, idle
    cfg: dict[str, Any]
    duration: float  # seconds measured per run (full mode)
    quick_duration: float
    # (metric key, label, is a CPU figure → ratio columns)
    rows: list[tuple[str, str, bool]] = field(default_factory=list)
    features: bool = False  # the wsproxy feature variants run here too


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "pipe1",
            "64 B text, 1 conn, 100 in flight",
            "pipeline",
            {"conns": 1, "inflight": 100, "size": 64, "binary": False},
            4,
            1,
            [
                ("msgs_per_s", "round trips/s", False),
                ("cpu_us_per_rt", "proxy CPU µs/round trip", True),
            ],
            features=True,
        ),
        Scenario(
            "pipe32",
            "64 B text, 32 conns x 8 in flight",
            "pipeline",
            {"conns": 32, "inflight": 8, "size": 64, "binary": False},
            4,
            1,
            [
                ("msgs_per_s", "round trips/s", False),
                ("cpu_us_per_rt", "proxy CPU µs/round trip", True),
            ],
        ),
        Scenario(
            "large1m",
            "1 MiB binary, 1 conn, 4 in flight",
            "pipeline",
            {"conns": 1, "inflight": 4, "size": MIB, "binary": True},
            4,
            1.5,
            [
                ("mib_per_s", "MiB/s echoed", False),
                ("cpu_ms_per_mib", "proxy CPU ms/MiB echoed", True),
                ("peak_rss_mib", "proxy peak RSS MiB", False),
            ],
        ),
        Scenario(
            "large16m",
            "16 MiB binary, 1 conn, 2 in flight",
            "pipeline",
            {"conns": 1, "inflight": 2, "size": 16 * MIB, "binary": True},
            5,
            2,
            [
                ("mib_per_s", "MiB/s echoed", False),
                ("cpu_ms_per_mib", "proxy CPU ms/MiB echoed", True),
                ("peak_rss_mib", "proxy peak RSS MiB", False),
            ],
        ),
        Scenario(
            "latency",
            "64 B text, 1 conn, 1 in flight",
            "pipeline",
            {"conns": 1, "inflight": 1, "size": 64, "binary": False, "latency": True},
            4,
            1,
            [
                ("p50_us", "RTT p50 µs", False),
                ("p99_us", "RTT p99 µs", False),
                ("cpu_us_per_rt", "proxy CPU µs/round trip", True),
            ],
        ),
        Scenario(
            "connect",
            "open, one 64 B echo, close; 4 at a time",
            "connect",
            {"concurrency": 4},
            3,
            1,
            [
                ("conns_per_s", "connections/s", False),
                ("cpu_us_per_conn", "proxy CPU µs/connection", True),
            ],
        ),
        # The permessage-deflate pair (issue 16 target 3, see _RAW_PAIR): deflate, and the
        # same peers and messages uncompressed, the quiet control it compares with.
        Scenario(
            "deflate",
            "64 B text, 1 conn, 20,000/s, <= 100 in flight, permessage-deflate (raw peers)",
            "rawpipe",
            {**_RAW_PAIR, "compress": True},
            4,
            _RAW_QUICK,
            [
                ("msgs_per_s", "round trips/s", False),
                ("cpu_us_per_rt", "proxy CPU µs/round trip", True),
            ],
            features=True,
        ),
        Scenario(
            "deflate-off",
            "the same, not compressed: deflate's control",
            "rawpipe",
            {**_RAW_PAIR, "compress": False},
            4,
            _RAW_QUICK,
            [
                ("msgs_per_s", "round trips/s", False),
                ("cpu_us_per_rt", "proxy CPU µs/round trip", True),
            ],
            features=True,
        ),
        Scenario(
            "deflate-ws",
            "64 B text, 1 conn, 100 in flight, permessage-deflate (ws peers: they set the pace)",
            "pipeline",
            {"conns": 1, "inflight": 100, "size": 64, "binary": False, "compress": True},
            4,
            1,
            [
                ("msgs_per_s", "round trips/s", False),
                ("cpu_us_per_rt", "proxy CPU µs/round trip", True),
            ],
        ),
        Scenario(
            "idle",
            "N idle WebSockets (fresh proxy)",
            "idle",
            {"concurrency": 50},
            0,
            0,
            [("kib_per_conn", "proxy RSS KiB/idle conn", False)],
        ),
    ]
}


@dataclass
class Options:
    quick: bool
    repeats: int
    duration: float | None
    compress: bool
    wsproxy_args: str
    idle_conns: int
    node: str
    logdir: Path
    start_timeout: float
    verbose: bool
    baseline: Path | None = None  # the checkout the wsproxy-base target runs
    perf: str | None = None  # --perf: the perf binary that splits the proxy's CPU by kind

    def duration_of(self, s: Scenario) -> float:
        if self.duration is not None:
            return self.duration
        return s.quick_duration if self.quick else s.duration

    @property
    def warmup(self) -> float:
        return 0.3 if self.quick else 1.0


class LoadgenError(RuntimeError):
    pass


class Loadgen:
    """One run of bench/loadgen.mjs: JSON lines on stdout, "go" on stdin."""

    def __init__(self, opts: Options, mode: str, cfg: dict[str, Any]) -> None:
        self.opts, self.mode, self.cfg = opts, mode, cfg
        self.proc: asyncio.subprocess.Process | None = None
        self.errfile = opts.logdir / "loadgen.stderr"

    async def __aenter__(self) -> Loadgen:
        with open(self.errfile, "ab") as ef:
            self.proc = await spawn(
                [self.opts.node, str(LOADGEN), self.mode, json.dumps(self.cfg)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=ef,
                cwd=BENCH_DIR,
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            with contextlib.suppress(TimeoutError):
                if self.proc.returncode is None and exc[0] is None:
                    await asyncio.wait_for(self.proc.wait(), 15)
            await terminate(self.proc)

    async def event(self, want: str, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoadgenError(f"loadgen {self.mode}: no {want!r} within {timeout:.0f} s")
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), left)
            except TimeoutError:
                continue
            if not line:
                await asyncio.wait_for(self.proc.wait(), 5)
                raise LoadgenError(
                    f"loadgen {self.mode} exited ({self.proc.returncode}) before {want!r}\n"
                    + tail(self.errfile, 8)
                )
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "error":
                raise LoadgenError(f"loadgen {self.mode}: {ev.get('error')}")
            if ev.get("event") == want:
                return dict(ev)

    async def go(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        await asyncio.wait_for(self.proc.stdin.drain(), 5)

    def cpu(self) -> float:
        assert self.proc is not None
        return cpu_seconds([self.proc.pid])


@contextlib.asynccontextmanager
async def perf_split(
    target: Target, opts: Options, pids: list[int]
) -> AsyncIterator[dict[str, float]]:
    """With --perf: ``perf record`` of the proxy around the block; the dict it yields is
    filled, when the block ends, with each kind's share of the samples (bench/_perf.py)."""
    split: dict[str, float] = {}
    if opts.perf is None or not pids:
        yield split
        return
    data = opts.logdir / f"perf-{target.name}.data"
    recording = PerfRecording(opts.perf, pids, data, opts.logdir / "perf.log")
    await recording.start()
    try:
        yield split
    except BaseException:
        await recording.abort()
        raise
    split.update(await recording.stop())


def split_key(kind: str) -> str:
    return "split_" + kind.replace(" ", "_")


def add_split(out: dict[str, Any], split: dict[str, float], scen: Scenario) -> None:
    """The scenario's CPU figure per operation, cut by kind of code (keys ``split_KIND``)."""
    per_op = out.get(_throughput_and_cpu(scen)[1][0])
    if not split or per_op is None:
        return
    for kind, share in split.items():
        out[split_key(kind)] = per_op * share


async def check_echo(target: Target, opts: Options) -> None:
    cfg = {"url": target.url, "compress": opts.compress, "timeout": 20}
    cfg["rewritten"] = target.name in REWRITE_TARGETS  # its rule changes each text message
    async with Loadgen(opts, "check", cfg) as lg:
        await lg.event("done", 25)


async def run_pipeline(
    target: Target, scen: Scenario, opts: Options, echo_pid: int
) -> dict[str, Any]:
    duration = opts.duration_of(scen)
    drain = 90.0
    cfg = dict(scen.cfg)
    path = cfg.pop("path", "")  # the raw peers' echo answers on /raw
    cfg.update(
        url=target.url + path,
        rewritten=target.name in REWRITE_TARGETS,  # rawpipe checks the rule's change
        # The raw pair (deflate, deflate-off) is compressed or not by design, --compress or not.
        compress=bool(scen.cfg.get("compress"))
        if scen.mode == "rawpipe"
        else opts.compress or bool(scen.cfg.get("compress")),
        duration=duration,
        warmup=opts.warmup,
        drainTimeout=drain,
        timeout=opts.warmup + duration + 2 * drain + 60,
    )
    async with Loadgen(opts, scen.mode, cfg) as lg:
        await lg.event("ready", 60 + opts.warmup + drain)
        pids = target.pids()
        if target.cmd is not None and not pids:
            raise RuntimeError(f"{target.name} is not running")
        hwm_ok = reset_hwm(pids)
        sampler = RssSampler(pids)
        sampler.start()
        async with perf_split(target, opts, pids) as split:
            cpu0, lg0, echo0 = cpu_seconds(pids), lg.cpu(), cpu_seconds([echo_pid])
            t0 = time.monotonic()
            await lg.go()
            try:
                res = await lg.event("done", duration + drain + 30)
            finally:
                await sampler.stop()
            wall = time.monotonic() - t0
            cpu1, lg1, echo1 = cpu_seconds(pids), lg.cpu(), cpu_seconds([echo_pid])
        peak_kib = max(sampler.peak_kib, hwm_kib(pids) if hwm_ok else 0)

    rts = res["roundTrips"]
    if rts <= 0:
        raise RuntimeError("no round trip completed")
    mib = res["bytesEchoed"] / MIB
    cpu = cpu1 - cpu0
    out: dict[str, Any] = {
        "round_trips": rts,
        "elapsed_s": res["elapsed"],
        "msgs_per_s": res["msgsPerSec"],
        "mib_per_s": res["mibPerSec"],
        "loadgen_cpu_pct": 100 * (lg1 - lg0) / wall,
        "loadgen_machine_pct": 100 * (lg1 - lg0) / (wall * CPUS),
        "echo_cpu_pct": 100 * (echo1 - echo0) / wall,
    }
    if pids:
        out.update(
            proxy_cpu_s=cpu,
            proxy_cpu_pct=100 * cpu / wall,
            cpu_us_per_rt=cpu / rts * 1e6,
            cpu_ms_per_mib=cpu / mib * 1e3,
            peak_rss_mib=peak_kib / 1024,
        )
    if "latency" in res:
        lat = res["latency"]
        out.update(p50_us=lat["p50"], p99_us=lat["p99"], mean_us=lat["mean"], max_us=lat["max"])
    add_split(out, split, scen)
    return out


async def run_connect(
    target: Target, scen: Scenario, opts: Options, echo_pid: int
) -> dict[str, Any]:
    duration = opts.duration_of(scen)
    cfg = dict(scen.cfg)
    cfg.update(
        url=target.url,
        compress=opts.compress,
        duration=duration,
        warmup=opts.warmup,
        timeout=opts.warmup + duration + 90,
    )
    async with Loadgen(opts, "connect", cfg) as lg:
        await lg.event("ready", 60 + opts.warmup)
        pids = target.pids()
        if target.cmd is not None and not pids:
            raise RuntimeError(f"{target.name} is not running")
        async with perf_split(target, opts, pids) as split:
            cpu0, lg0, echo0 = cpu_seconds(pids), lg.cpu(), cpu_seconds([echo_pid])
            t0 = time.monotonic()
            await lg.go()
            res = await lg.event("done", duration + 60)
            wall = time.monotonic() - t0
            cpu1, lg1, echo1 = cpu_seconds(pids), lg.cpu(), cpu_seconds([echo_pid])
    n = res["connections"]
    if n <= 0:
        raise RuntimeError(f"no connection completed: {res.get('lastError')}")
    out: dict[str, Any] = {
        "connections": n,
        "errors": res["errors"],
        "conns_per_s": res["connsPerSec"],
        "conn_p50_us": res["p50"],
        "conn_p99_us": res["p99"],
        "loadgen_cpu_pct": 100 * (lg1 - lg0) / wall,
        "loadgen_machine_pct": 100 * (lg1 - lg0) / (wall * CPUS),
        "echo_cpu_pct": 100 * (echo1 - echo0) / wall,
    }
    if res["errors"]:
        out["last_error"] = res["lastError"]
    if pids:
        out.update(
            cpu_us_per_conn=(cpu1 - cpu0) / n * 1e6, proxy_cpu_pct=100 * (cpu1 - cpu0) / wall
        )
    add_split(out, split, scen)
    return out


async def run_idle(target: Target, scen: Scenario, opts: Options, echo_pid: int) -> dict[str, Any]:
    if target.cmd is None:
        return {}  # nothing to measure without a proxy process
    # A fresh proxy each time: a Python process rarely gives memory back, so a second
    # round on the same process would reuse what the first one left and read lower.
    await target.stop()
    await target.start(opts)  # also does one echo through it (warm-up)
    await asyncio.sleep(0.5)
    pids = target.pids()
    rss0 = rss_kib(pids)
    n = opts.idle_conns
    cfg = dict(scen.cfg)
    cfg.update(url=target.url, compress=opts.compress, conns=n, timeout=240)
    async with Loadgen(opts, "idle", cfg) as lg:
        ready = await lg.event("ready", 180)
        await asyncio.sleep(0.5 if opts.quick else 1.5)
        pids = target.pids()
        rss1 = rss_kib(pids)
        await lg.go()
        done = await lg.event("done", 60)
    opened = ready["opened"]
    if opened <= 0:
        raise RuntimeError(f"no connection opened: {ready.get('lastError')}")
    out = {
        "opened": opened,
        "failed": ready["failed"],
        "alive_at_end": done["aliveAtEnd"],
        "rss_before_mib": rss0 / 1024,
        "rss_after_mib": rss1 / 1024,
        "kib_per_conn": (rss1 - rss0) / opened,
    }
    if ready["failed"]:
        out["last_error"] = ready["lastError"]
    return out


RUNNERS = {
    "pipeline": run_pipeline,
    "rawpipe": run_pipeline,
    "connect": run_connect,
    "idle": run_idle,
}


def summary(name: str, r: dict[str, Any]) -> str:
    keys = [
        "msgs_per_s",
        "mib_per_s",
        "p50_us",
        "p99_us",
        "conns_per_s",
        "kib_per_conn",
        "cpu_us_per_rt",
        "cpu_ms_per_mib",
        "cpu_us_per_conn",
        "peak_rss_mib",
        "proxy_cpu_pct",
        "loadgen_cpu_pct",
        "echo_cpu_pct",
    ]
    return f"{name}: " + ", ".join(f"{k}={fmt(r[k])}" for k in keys if k in r)


# ----------------------------------------------------------------------------- output


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    a = abs(v)
    if a >= 10000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def build_table(
    results: dict[str, dict[str, Any]], scen_names: list[str], targets: list[Target]
) -> list[list[str]]:
    names = [t.name for t in targets]
    ratio_cols = [r for r in RATIO_TARGETS if r in names and "relay" in names]
    header = ["scenario", "metric", *names, *[f"{r}/relay" for r in ratio_cols]]
    rows = [header]
    by_name = {t.name: t for t in targets}
    for sname in scen_names:
        scen = SCENARIOS[sname]
        first = True
        for key, label, is_cpu in scen.rows:
            row = [f"{sname}: {scen.title}" if first else "", label]
            first = False
            meds: dict[str, float | None] = {}
            for tn in names:
                cell = results.get(sname, {}).get(tn)
                if cell is None or not cell["runs"]:
                    row.append("n/a" if not by_name[tn].available else "-")
                    meds[tn] = None
                    continue
                med = cell["median"].get(key)
                meds[tn] = med
                if med is None:
                    row.append("err" if cell["errors"] and not cell["ok"] else "-")
                else:
                    row.append(fmt(med))
            for r in ratio_cols:
                a, b = meds.get(r), meds.get("relay")
                row.append(f"{a / b:.1f}x" if is_cpu and a is not None and b else "")
            rows.append(row)
    return rows


def split_table(
    results: dict[str, dict[str, Any]], scen_names: list[str], targets: list[Target]
) -> list[list[str]]:
    """--perf: each scenario's CPU per operation cut by kind of code (medians)."""
    names = [t.name for t in targets if t.cmd is not None]
    rows = [["scenario", "CPU per operation in", *names]]
    for sname in scen_names:
        scen = SCENARIOS[sname]
        if scen.mode == "idle":
            continue
        unit = _throughput_and_cpu(scen)[1][1].removeprefix("proxy CPU ")
        for i, kind in enumerate(KINDS):
            row = [sname if i == 0 else "", f"{kind}, {unit}"]
            row += [fmt(_median(results, sname, tn, split_key(kind))) for tn in names]
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- summaries


def _median(results: dict[str, dict[str, Any]], scen: str, target: str, key: str) -> float | None:
    cell = results.get(scen, {}).get(target)
    if cell is None or not cell["runs"]:
        return None
    v = cell["median"].get(key)
    return float(v) if isinstance(v, int | float) else None


def _throughput_and_cpu(scen: Scenario) -> tuple[tuple[str, str], tuple[str, str]]:
    """The (key, label) of a scenario's throughput row and of its CPU row."""
    cpu = next((k, lbl) for k, lbl, is_cpu in scen.rows if is_cpu)
    return (scen.rows[0][0], scen.rows[0][1]), cpu


def workers_table(
    results: dict[str, dict[str, Any]], scen_names: list[str], targets: list[Target]
) -> list[list[str]]:
    """wsproxy against wsproxy --workers 2 (issue 17): throughput, its ratio, CPU per operation
    (summed over the supervisor and its workers), and how much of the machine the load
    generator took in each run. Empty when wsproxy-w2 is not among the targets."""
    w2 = next((t for t in targets if t.name == "wsproxy-w2"), None)
    if w2 is None:
        return []
    rows = [
        [
            "scenario",
            "metric",
            "1 worker",
            "2 workers",
            "2/1",
            "CPU/op 1w",
            "CPU/op 2w",
            "loadgen % machine 1w",
            "2w",
        ]
    ]
    for sname in scen_names:
        scen = SCENARIOS[sname]
        if scen.mode == "idle":
            continue
        (tkey, tlabel), (ckey, clabel) = _throughput_and_cpu(scen)
        one, two = _median(results, sname, "wsproxy", tkey), _median(results, sname, w2.name, tkey)
        lg1 = _median(results, sname, "wsproxy", "loadgen_machine_pct")
        lg2 = _median(results, sname, w2.name, "loadgen_machine_pct")
        na = "n/a" if not w2.available else "-"
        rows.append(
            [
                sname,
                f"{tlabel}; {clabel.replace('proxy CPU ', '')}",
                fmt(one),
                fmt(two) if two is not None else na,
                f"{two / one:.2f}x" if one and two is not None else "",
                fmt(_median(results, sname, "wsproxy", ckey)),
                fmt(_median(results, sname, w2.name, ckey)) if two is not None else na,
                f"{lg1:.0f}%" if lg1 is not None else "-",
                f"{lg2:.0f}%" if lg2 is not None else na,
            ]
        )
    return rows


def _verdict(
    value: float | None, anchor: float | None, limit: float, at_least: bool = False
) -> str:
    if value is None or anchor is None or not anchor:
        return "n/a"
    ratio = anchor / value if at_least else value / anchor
    ok = ratio >= limit if at_least else ratio <= limit
    return "PASS" if ok else "FAIL"


def targets_summary(
    results: dict[str, dict[str, Any]], tls_doc: dict[str, Any] | None
) -> list[list[str]]:
    """One row per target line of issue 16: wsproxy's figure, the anchor's, the ratio, the
    limit and PASS/FAIL (n/a when a figure is missing: a scenario or anchor not run)."""
    rows = [["target", "wsproxy", "anchor", "ratio", "limit", "verdict"]]

    def line(
        label: str,
        value: float | None,
        anchor: float | None,
        limit: float,
        unit: str,
        at_least: bool = False,
    ) -> None:
        ratio = ""
        if value is not None and anchor:
            ratio = f"{(anchor / value if at_least else value / anchor):.2f}x"
        limit_s = f">= {limit:g}x" if at_least else f"<= {limit:g}x"
        rows.append(
            [
                label,
                fmt(value) + unit if value is not None else "-",
                fmt(anchor) + unit if anchor is not None else "-",
                ratio,
                limit_s,
                _verdict(value, anchor, limit, at_least),
            ]
        )

    def vs_nginx(label: str, scen: str, key: str, limit: float, unit: str) -> None:
        line(
            f"{label} vs nginx",
            _median(results, scen, "wsproxy", key),
            _median(results, scen, "nginx", key),
            limit,
            unit,
        )

    vs_nginx(
        "CPU/64 B round trip, 1 conn x 100 in flight (pipe1)", "pipe1", "cpu_us_per_rt", 1.5, " µs"
    )
    vs_nginx("CPU/64 B round trip, 32 conns (pipe32)", "pipe32", "cpu_us_per_rt", 1.5, " µs")
    vs_nginx("CPU/round trip, 1 in flight (latency)", "latency", "cpu_us_per_rt", 2, " µs")
    vs_nginx("RTT p50, 1 in flight (latency)", "latency", "p50_us", 1.3, " µs")
    vs_nginx("CPU/MiB at 1 MiB (large1m)", "large1m", "cpu_ms_per_mib", 1.2, " ms")
    vs_nginx("CPU/MiB at 16 MiB (large16m)", "large16m", "cpu_ms_per_mib", 1.2, " ms")
    rss = _median(results, "large16m", "wsproxy", "peak_rss_mib")
    rss_mb = rss * MIB / 1e6 if rss is not None else None
    rows.append(
        [
            "peak RSS relaying 16 MiB messages (large16m)",
            f"{rss_mb:.1f} MB" if rss_mb is not None else "-",
            "",
            "",
            "<= 32 MB",
            "n/a" if rss_mb is None else ("PASS" if rss_mb <= 32 else "FAIL"),
        ]
    )
    for sname, scen in SCENARIOS.items():
        for key, label, is_cpu in scen.rows:
            if is_cpu and sname in results:
                line(
                    f"mockttp/wsproxy {label.replace('proxy ', '')} ({sname})",
                    _median(results, sname, "wsproxy", key),
                    _median(results, sname, "mockttp", key),
                    2,
                    "",
                    at_least=True,
                )
    quiet = _median(results, "pipe1", "wsproxy", "cpu_us_per_rt")
    for target, where, what, limit in [
        ("wsproxy-v", "pipe1", "-v to a file", 2),
        ("wsproxy-log", "pipe1", "-s log (to a file)", 2),
        ("wsproxy-capture", "pipe1", "-w capture.jsonl", 2),
    ]:
        line(
            f"{what}: CPU/64 B round trip vs quiet wsproxy (pipe1)",
            _median(results, where, target, "cpu_us_per_rt"),
            quiet,
            limit,
            " µs",
        )
    # permessage-deflate against quiet wsproxy with the same peers, messages and rate, only
    # uncompressed (deflate-off): pipe1's ws peers differ from deflate's raw ones.
    control = _median(results, "deflate-off", "wsproxy", "cpu_us_per_rt")
    for target, what, limit in [
        ("wsproxy", "permessage-deflate passed through", 2),
        ("wsproxy-rewrite", "permessage-deflate + rewrite plugin", 3),
    ]:
        line(
            f"{what} (deflate): CPU/64 B round trip vs quiet wsproxy, same peers, "
            "uncompressed (deflate-off)",
            _median(results, "deflate", target, "cpu_us_per_rt"),
            control,
            limit,
            " µs",
        )
    vs_nginx("CPU per new ws:// connection (connect)", "connect", "cpu_us_per_conn", 1.5, " µs")
    wss = (tls_doc or {}).get("medians", {})
    line(
        "CPU per new wss:// connection, TLS both legs, leaf cached (connect-tls) vs nginx",
        wss.get("wsproxy wss"),
        wss.get("nginx wss"),
        1.5,
        " ms",
    )
    return rows


def anchor_ratios(
    results: dict[str, dict[str, Any]], scen_names: list[str], targets: list[Target]
) -> list[list[str]]:
    """Every proxy's CPU row (and RTT p50) as a ratio to nginx's and to mockttp's."""
    names = [t.name for t in targets if t.cmd is not None and t.name not in ("nginx",)]
    rows = [["scenario", "metric", *[f"{n} /nginx /mockttp" for n in names]]]
    for sname in scen_names:
        for key, label, is_cpu in SCENARIOS[sname].rows:
            if not (is_cpu or key == "p50_us"):
                continue
            ng, mk = _median(results, sname, "nginx", key), _median(results, sname, "mockttp", key)
            cells = []
            for n in names:
                v = _median(results, sname, n, key)
                a = f"{v / ng:.2f}x" if v is not None and ng else "-"
                b = f"{v / mk:.2f}x" if v is not None and mk else "-"
                cells.append(f"{a} {b}")
            rows.append([sname, label, *cells])
    return rows


async def run_tls_connect(opts: Options) -> tuple[dict[str, Any] | None, str]:
    """The wss:// connect figures: bench/tls_bench.py part (a) with wsproxy (CONNECT, its CA's
    cached leaf) and nginx (TLS terminated, TLS upstream, the same key types); its JSON."""
    out = opts.logdir / "tls_bench.json"
    duration = opts.duration if opts.duration is not None else (1.5 if opts.quick else 4.0)
    proxies = "wsproxy,nginx" if opts.baseline is None else "wsproxy,wsproxy-base,nginx"
    cmd = [sys.executable, str(TLS_BENCH), "--proxies", proxies, "--connections-only"]
    if opts.baseline is not None:  # --baseline: that checkout's wsproxy beside this one's
        cmd += ["--baseline", str(opts.baseline)]
    cmd += ["-r", str(opts.repeats), "--duration", str(duration), "--warmup", str(opts.warmup)]
    cmd += ["--json", str(out)]
    if opts.wsproxy_args:
        cmd.append(f"--wsproxy-args={opts.wsproxy_args}")
    log(f"connect-tls: {shlex.join(cmd)}")
    with open(opts.logdir / "tls_bench.stderr", "ab") as ef:
        proc = await spawn(cmd, stdout=subprocess.PIPE, stderr=ef, cwd=REPO_DIR)
        stdout, _ = await proc.communicate()
    _CHILDREN.pop(proc.pid, None)
    text = stdout.decode(errors="replace")
    try:
        doc = dict(json.loads(out.read_text()))
    except (OSError, ValueError):
        log(f"connect-tls failed ({proc.returncode}):\n{tail(opts.logdir / 'tls_bench.stderr')}")
        return None, text
    doc["failed"] = proc.returncode != 0
    doc["medians"] = {
        key: statistics.median(r["proxy_cpu_ms_per_conn"] for r in runs)
        for key, runs in doc.get("connections", {}).items()
        if runs and all("proxy_cpu_ms_per_conn" in r for r in runs)
    }
    return doc, text


# ----------------------------------------------------------------------------- main


async def start_echo(opts: Options, deflate: bool) -> tuple[asyncio.subprocess.Process, int]:
    """The echo server; with ``deflate`` it accepts permessage-deflate when offered (only the
    compressed scenarios' load generators offer it, so the others stay uncompressed)."""
    errfile = opts.logdir / "echo.stderr"
    cfg = {"port": 0, "compress": opts.compress or deflate}
    with open(errfile, "ab") as ef:
        proc = await spawn(
            [opts.node, str(LOADGEN), "echo", json.dumps(cfg)],
            stdin=subprocess.PIPE,  # held open: the server exits when the driver goes
            stdout=subprocess.PIPE,
            stderr=ef,
            cwd=BENCH_DIR,
        )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        port = int(json.loads(line)["port"])
    except (TimeoutError, ValueError, KeyError) as e:
        await terminate(proc)
        raise SystemExit(f"echo server did not start ({e!r}):\n{tail(errfile)}") from None
    await wait_port(port, 10, proc)
    return proc, port


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < need:
            log(f"warning: open-file limit {new} may be too low for {need} descriptors")


async def amain(args: argparse.Namespace, opts: Options) -> int:
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)

    target_names = [t.strip() for t in args.targets.split(",") if t.strip()]
    if target_names == ["all"]:
        target_names = EVERY_TARGET.split(",")
    scen_names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    tls_connect = "connect-tls" in scen_names
    scen_names = [s for s in scen_names if s != "connect-tls"]
    if "deflate" in scen_names and "deflate-off" not in scen_names:
        # deflate's figures mean something only next to its control (issue 16 target 3).
        scen_names.insert(scen_names.index("deflate") + 1, "deflate-off")
        log("deflate-off (deflate's uncompressed control) added to the scenarios")
    for s in scen_names:
        if s not in SCENARIOS:
            raise SystemExit(
                f"unknown scenario {s!r}; choose from {','.join(SCENARIOS)},connect-tls"
            )

    node_ver = subprocess.run([opts.node, "--version"], capture_output=True, text=True, timeout=10)
    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node_ver.stdout.strip(),
        "quick": opts.quick,
        "repeats": opts.repeats,
        "compress": opts.compress,
        "warmup_s": opts.warmup,
        "durations_s": {s: opts.duration_of(SCENARIOS[s]) for s in scen_names},
        "idle_conns": opts.idle_conns,
        "wsproxy_args": opts.wsproxy_args,
        "argv": sys.argv[1:],
    }
    results: dict[str, dict[str, Any]] = {}
    targets: list[Target] = []
    try:
        deflate = any(SCENARIOS[s].cfg.get("compress") for s in scen_names)
        echo_proc, echo_port = await start_echo(opts, deflate)
        log(f"echo server on {HOST}:{echo_port} (pid {echo_proc.pid}), logs in {opts.logdir}")
        targets = make_targets(target_names, echo_port, opts)
        for t in targets:
            if not t.available:
                log(f"{t.name}: unavailable: {t.reason}")
                continue
            try:
                await t.start(opts)
                if t.proc is not None:
                    log(f"{t.name}: listening on {HOST}:{t.port} (pid {t.proc.pid})")
            except Exception as e:
                t.available, t.reason = False, f"failed to start: {e}"
                log(f"{t.name}: unavailable: {t.reason}")

        for sname in scen_names:
            scen = SCENARIOS[sname]
            runner = RUNNERS[scen.mode]
            here = [t for t in targets if scen.features or not t.feature]
            per_target: dict[str, dict[str, Any]] = {
                t.name: {"runs": [], "errors": [], "ok": False} for t in here if t.available
            }
            results[sname] = per_target
            for r in range(opts.repeats):
                live = [t for t in here if t.available]
                if not live:
                    break
                k = r % len(live)
                for t in live[k:] + live[:k]:  # rotate the order between repeats
                    if not t.available:
                        continue
                    label = f"[{sname} {r + 1}/{opts.repeats}]"
                    try:
                        if not t.alive():
                            log(f"{label} {t.name} died; restarting it\n{tail(t.logfile, 8)}")
                            await t.stop()
                            await t.start(opts)
                        res = await runner(t, scen, opts, echo_proc.pid)
                    except (RuntimeError, LoadgenError, TimeoutError, OSError) as e:
                        msg = str(e).strip()
                        per_target[t.name]["errors"].append(msg)
                        log(f"{label} {t.name}: ERROR {msg}")
                        if t.cmd is not None and not t.alive():
                            log(f"{label} {t.name} exited:\n{tail(t.logfile, 8)}")
                            try:
                                await t.stop()
                                await t.start(opts)
                            except Exception as e2:
                                t.available, t.reason = False, f"died and did not restart: {e2}"
                        continue
                    if res:
                        per_target[t.name]["runs"].append(res)
                        per_target[t.name]["ok"] = True
                        log(f"{label} " + summary(t.name, res))
            for cell in per_target.values():
                med: dict[str, float] = {}
                if cell["runs"]:
                    keys = {
                        k
                        for run in cell["runs"]
                        for k, v in run.items()
                        if isinstance(v, int | float)
                    }
                    for key in sorted(keys):
                        vals = [
                            run[key]
                            for run in cell["runs"]
                            if isinstance(run.get(key), int | float)
                        ]
                        med[key] = statistics.median(vals)
                cell["median"] = med
    finally:
        for t in targets:
            with contextlib.suppress(Exception):
                await t.stop()
        await terminate_all()

    tls_doc: dict[str, Any] | None = None
    tls_text = ""
    if tls_connect:
        tls_doc, tls_text = await run_tls_connect(opts)
    table = build_table(results, scen_names, targets)
    print()
    print(
        f"wsproxy bench: {meta['cpus']} CPUs, python {meta['python']}, node {meta['node']}, "
        f"{opts.repeats} repeats (median), {'quick' if opts.quick else 'full'} durations"
        + (", permessage-deflate ON" if opts.compress else "")
    )
    print(render(table, left=2))
    for t in targets:
        if not t.available:
            print(f"\n{t.name} unavailable: {t.reason}")
    if tls_connect:
        print("\nconnect-tls (bench/tls_bench.py, part a only):")
        print(tls_text.strip() if tls_text.strip() else "  (no output)")
    errs = [
        (s, tn, e) for s, cells in results.items() for tn, c in cells.items() for e in c["errors"]
    ]
    if tls_connect and (tls_doc is None or tls_doc.get("failed")):
        errs.append(("connect-tls", "tls_bench", "tls_bench.py failed (its output is above)"))
    workers = workers_table(results, scen_names, targets)
    ratios = anchor_ratios(results, scen_names, targets)
    if any(t.name in ("nginx", "mockttp") and t.available for t in targets):
        print("\nratio to nginx and to mockttp (CPU rows and RTT p50; below 1 is cheaper)")
        print(render(ratios, left=2))
    if workers:
        print(
            "\nworkers (issue 17): wsproxy vs wsproxy --workers 2, medians; loadgen % of "
            f"machine = its CPU s / (wall s x {CPUS} CPUs)"
        )
        print(render(workers, left=2))
        w2 = next(t for t in targets if t.name == "wsproxy-w2")
        if not w2.available:
            print(f"wsproxy-w2 n/a: {w2.reason.splitlines()[0]}")
    splits = split_table(results, scen_names, targets) if opts.perf else []
    if splits:
        print(
            "\nwhere the proxy CPU goes (--perf: perf record at 999 Hz during each measurement, "
            "by kind of code; see bench/_perf.py)"
        )
        print(render(splits, left=2))
    verdicts = targets_summary(results, tls_doc)
    print("\nissue 16 targets (wsproxy against the anchors, medians of this run):")
    print(render(verdicts, left=1))
    if errs:
        print(f"\n{len(errs)} failed run(s):")
        for s, tn, msg in errs:
            print(f"  {s} / {tn}: {msg.splitlines()[0] if msg else '?'}")

    if args.json:
        doc = {
            "meta": meta,
            "targets": {
                t.name: {
                    "available": t.available,
                    "reason": t.reason,
                    "cmd": t.cmd,
                    "port": t.port,
                }
                for t in targets
            },
            "scenarios": {
                s: {"title": SCENARIOS[s].title, "config": SCENARIOS[s].cfg, "targets": cells}
                for s, cells in results.items()
            },
            "table": table,
            "workers": workers,
            "anchor_ratios": ratios,
            "perf_split": splits,
            "issue16": verdicts,
            "connect_tls": tls_doc,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 1 if errs else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Benchmark wsproxy against direct, a plain asyncio relay and mitmproxy "
        "(loopback only). See bench/README.md.",
    )
    ap.add_argument("--quick", action="store_true", help="short runs (about 1 s each)")
    ap.add_argument(
        "--targets",
        default=DEFAULT_TARGETS,
        help=f"comma-separated, from: {','.join(ALL_TARGETS)}; or all ({EVERY_TARGET})",
    )
    ap.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated, from: " + ",".join(SCENARIOS) + ",connect-tls (tls_bench.py)",
    )
    ap.add_argument(
        "--repeats", "-r", type=int, default=3, help="rounds over all targets (default 3)"
    )
    ap.add_argument(
        "--duration", type=float, help="seconds measured per run (overrides the defaults)"
    )
    ap.add_argument(
        "--compress", action="store_true", help="permessage-deflate on echo server and loadgen"
    )
    ap.add_argument(
        "--wsproxy-args", default="", help="extra flags for python -m wsproxy (one string)"
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="DIR",
        help="another wsproxy checkout, run as the wsproxy-base target (python -m wsproxy there)",
    )
    ap.add_argument("--idle-conns", type=int, default=1000, help="connections in the idle scenario")
    ap.add_argument("--json", metavar="FILE", help="write all runs, medians and the table as JSON")
    ap.add_argument("--node", default=shutil.which("node") or "node", help="node executable")
    ap.add_argument("--start-timeout", type=float, default=30, help="seconds for a target to start")
    ap.add_argument("--keep-logs", action="store_true", help="keep the temporary log directory")
    ap.add_argument(
        "--perf",
        action="store_true",
        help="also split each proxy's CPU per operation by kind of code (kernel, interpreter, "
        "event loop, native) with perf record",
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    argv = list(sys.argv[1:] if argv is None else argv)
    # Let `--wsproxy-args "--flag x"` work: argparse would take "--flag x" for an option.
    for i, a in enumerate(argv[:-1]):
        if a == "--wsproxy-args":
            argv[i : i + 2] = [f"--wsproxy-args={argv[i + 1]}"]
            break
    args = ap.parse_args(argv)

    perf = find_perf() if args.perf else None
    if args.perf and perf is None:
        print(PERF_MISSING, file=sys.stderr)
        return 2
    if not (BENCH_DIR / "node_modules" / "ws").is_dir():
        print(NODE_MISSING, file=sys.stderr)
        return 2
    if shutil.which(args.node) is None:
        print(f"node not found ({args.node}): install Node 18 or newer", file=sys.stderr)
        return 2
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")

    raise_nofile(4 * args.idle_conns + 1024)
    logdir = Path(tempfile.mkdtemp(prefix="wsproxy-bench-"))
    opts = Options(
        quick=args.quick,
        repeats=args.repeats,
        duration=args.duration,
        compress=args.compress,
        wsproxy_args=args.wsproxy_args,
        idle_conns=args.idle_conns,
        node=args.node,
        logdir=logdir,
        start_timeout=args.start_timeout,
        verbose=args.verbose,
        baseline=args.baseline,
        perf=perf,
    )
    rc = 130
    try:
        rc = asyncio.run(amain(args, opts))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted")
    finally:
        kill_all_sync()
        if args.keep_logs or rc not in (0, 130):
            log(f"logs kept in {logdir}")
        else:
            shutil.rmtree(logdir, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
