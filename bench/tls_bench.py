"""TLS interception cost: new wss:// connections per second through the proxy, and leaf latency.

Run by hand (never as a test), from the repository root:

    .venv/bin/python bench/tls_bench.py                  # about 2 minutes
    .venv/bin/python bench/tls_bench.py --duration 5 --hosts 20 -r 2

Part (a), connections: a local echo server (websockets, one process, TLS with a trustme
certificate for 127.0.0.1 and a plain port) behind each proxy in regular mode. Client
processes (websockets' asyncio client, `proxy=`) loop: CONNECT, TLS (trusting the proxy's
CA from its confdir), upgrade, one 64-byte echo, close. The proxy's CPU time comes from
/proc/PID/stat before and after the measured phase, as in bench.py.

Part (b), the first leaf for a new host: in-process timing of CertAuthority.leaf_context
for new and cached host names, and end to end through the proxy: CONNECT 127.0.0.1:PORT,
then TLS with server_hostname h<i>-TAG.bench.test (the proxy makes the leaf from the SNI), new names
against repeats. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shlex
import signal
import ssl
import statistics
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(1, str(REPO_DIR))

from _common import (  # noqa: E402  (bench/_common.py)
    MITMPROXY_MISSING,
    NGINX_MISSING,
    cpu_seconds,
    find_mitmdump,
    find_nginx,
    free_port,
    nginx_cmd,
    proc_tree,
    render,
    require_modules,
    wait_port,
    write_nginx_conf,
)

import bench  # noqa: E402  (bench/bench.py: process helpers and /proc readings)

HOST = "127.0.0.1"
THIS = Path(__file__).resolve()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def fmt(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


# ----------------------------------------------------------------------------- child: echo


async def echo_main(cfg: dict[str, Any]) -> None:
    """websockets echo server: one TLS port, one plain port; exits when stdin closes."""
    from websockets.asyncio.server import serve

    async def handler(ws: Any) -> None:
        async for msg in ws:
            await ws.send(msg)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cfg["cert"])
    common: dict[str, Any] = {"compression": None, "close_timeout": 10}
    async with (
        serve(handler, HOST, 0, ssl=ctx, **common) as tls_srv,
        serve(handler, HOST, 0, **common) as plain_srv,
    ):
        ports = {
            "tls_port": next(iter(tls_srv.sockets)).getsockname()[1],
            "ws_port": next(iter(plain_srv.sockets)).getsockname()[1],
        }
        print(json.dumps({"event": "listening", **ports}), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the driver goes


# ----------------------------------------------------------------------------- child: client


async def client_main(cfg: dict[str, Any]) -> None:
    """Loop: open (through the proxy), one echo, close. Ready after warm-up, then "go"."""
    from websockets.asyncio.client import connect

    ctx = ssl.create_default_context(cafile=cfg["cafile"]) if cfg["url"].startswith("wss") else None
    payload = "".join(random.choice(string.ascii_lowercase) for _ in range(64))
    kwargs: dict[str, Any] = {"compression": None, "open_timeout": 20, "close_timeout": 10}
    if ctx is not None:
        kwargs["ssl"] = ctx

    async def one() -> None:
        async with connect(cfg["url"], proxy=cfg["proxy"], **kwargs) as ws:
            await ws.send(payload)
            got = await ws.recv()
            if got != payload:
                raise RuntimeError("echo differs")

    async def phase(seconds: float) -> dict[str, Any]:
        done, errors, last_error, times = 0, 0, None, []
        c0 = os.times()
        deadline = time.monotonic() + seconds
        t0 = time.monotonic()

        async def worker() -> None:
            nonlocal done, errors, last_error
            while time.monotonic() < deadline:
                s = time.perf_counter()
                try:
                    await one()
                except Exception as e:  # count it and go on
                    errors += 1
                    last_error = f"{type(e).__name__}: {e}"
                    await asyncio.sleep(0.05)
                    continue
                times.append(time.perf_counter() - s)
                done += 1

        await asyncio.gather(*(worker() for _ in range(cfg["concurrency"])))
        return {
            "connections": done,
            "errors": errors,
            "last_error": last_error,
            "elapsed": time.monotonic() - t0,
            "cpu_s": (lambda c1: c1.user + c1.system - c0.user - c0.system)(os.times()),
            "times": times,
        }

    loop = asyncio.get_running_loop()
    warm = await phase(cfg["warmup"])
    if warm["connections"] == 0:
        print(json.dumps({"event": "error", "error": warm["last_error"]}), flush=True)
        return
    print(json.dumps({"event": "ready"}), flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        return
    res = await phase(cfg["duration"])
    # The times go to a file: thousands of them would overflow the driver's line limit.
    Path(cfg["times_file"]).write_text(json.dumps(res.pop("times")))
    print(json.dumps({"event": "done", **res}), flush=True)


# ----------------------------------------------------------------------------- driver: setup


@dataclass
class Env:
    tmp: Path
    ca_file: Path  # the trustme CA: --upstream-ca for the proxies
    echo_proc: asyncio.subprocess.Process
    tls_port: int
    ws_port: int


@dataclass
class Proxy:
    name: str
    cmd: list[str]
    port: int
    cafile: Path  # what clients must trust
    logfile: Path
    proc: asyncio.subprocess.Process | None = None
    # nginx: a reverse proxy, not an HTTP proxy; clients connect to these (ws, wss) ports
    reverse_ports: tuple[int, int] | None = None
    cwd: Path = REPO_DIR  # wsproxy-base: the other checkout, whose wsproxy ``-m`` then runs

    async def start(self) -> None:
        with open(self.logfile, "ab") as lf:
            lf.write(f"\n=== {shlex.join(self.cmd)}\n".encode())
            self.proc = await bench.spawn(self.cmd, stdout=lf, stderr=lf, cwd=self.cwd)
        await wait_port(self.port, 30, self.proc)
        for _ in range(100):  # the CA files are written before listening; be sure anyway
            if self.cafile.exists():
                break
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.proc is not None:
            await bench.terminate(self.proc)
            self.proc = None

    def pids(self) -> list[int]:
        if self.proc is None or self.proc.returncode is not None:
            return []
        return proc_tree(self.proc.pid)


def make_cert(tmp: Path) -> Path:
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert(HOST, "localhost", "*.bench.test")
    ca_file = tmp / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp / "upstream-leaf.pem"))
    return ca_file


async def start_echo(tmp: Path) -> Env:
    ca_file = make_cert(tmp)
    cfg = {"cert": str(tmp / "upstream-leaf.pem")}
    errfile = tmp / "echo.stderr"
    with open(errfile, "ab") as ef:
        proc = await bench.spawn(
            [sys.executable, str(THIS), "_echo", json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=ef,
        )
    assert proc.stdout is not None
    try:
        ev = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
    except (TimeoutError, ValueError) as e:
        raise SystemExit(f"echo server did not start ({e!r}):\n{bench.tail(errfile)}") from None
    return Env(tmp, ca_file, proc, int(ev["tls_port"]), int(ev["ws_port"]))


def make_proxies(
    env: Env, names: list[str], wsproxy_args: str, baseline: Path | None = None
) -> list[Proxy]:
    out = []
    for name in names:
        port = free_port()
        conf = env.tmp / f"{name}-conf"
        cwd = REPO_DIR
        if name == "wsproxy-base":
            if baseline is None:
                raise SystemExit("wsproxy-base needs --baseline DIR (another wsproxy checkout)")
            cwd = baseline
        if name in ("wsproxy", "wsproxy-base"):
            cmd = [sys.executable, "-m", "wsproxy", "-p", str(port), "-q"]
            cmd += ["--confdir", str(conf), "--upstream-ca", str(env.ca_file)]
            cmd += shlex.split(wsproxy_args)
        elif name == "mitmproxy":
            mitmdump = find_mitmdump()
            if mitmdump is None:
                log(f"mitmproxy: skipped: {MITMPROXY_MISSING}")
                continue
            cmd = [mitmdump, "--listen-host", HOST, "-p", str(port), "--set", f"confdir={conf}"]
            cmd += ["--set", f"ssl_verify_upstream_trusted_ca={env.ca_file}", "-q"]
        elif name == "nginx":
            out += nginx_proxy(env, port)
            continue
        else:
            raise SystemExit(f"unknown proxy {name!r}")
        cafile = conf / "mitmproxy-ca-cert.pem"
        out.append(Proxy(name, cmd, port, cafile, env.tmp / f"{name}.log", cwd=cwd))
    return out


def nginx_proxy(env: Env, port: int) -> list[Proxy]:
    """nginx terminating TLS and speaking TLS upstream, with wsproxy's key types: a leaf with an
    EC P-256 key signed by an RSA 2048 CA (wsproxy/tls/ca.py), the same echo server behind."""
    import trustme

    nginx = find_nginx()
    if nginx is None:
        log(f"nginx: skipped: {NGINX_MISSING}")
        return []
    prefix = env.tmp / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    leaf = ca.issue_cert(HOST, key_type=trustme.KeyType.ECDSA)
    ca.cert_pem.write_to_path(str(prefix / "ca.pem"))
    leaf.private_key_pem.write_to_path(str(prefix / "leaf.key"))
    leaf.cert_chain_pems[0].write_to_path(str(prefix / "leaf.pem"))
    for extra in leaf.cert_chain_pems[1:]:
        extra.write_to_path(str(prefix / "leaf.pem"), append=True)
    tls_port = free_port()
    conf = write_nginx_conf(
        prefix,
        port,
        f"http://{HOST}:{env.ws_port}",
        tls_port=tls_port,
        tls_upstream=f"https://{HOST}:{env.tls_port}",
        cert=prefix / "leaf.pem",
        key=prefix / "leaf.key",
        upstream_ca=env.ca_file,
    )
    cmd = nginx_cmd(nginx, prefix, conf)
    return [
        Proxy("nginx", cmd, port, prefix / "ca.pem", env.tmp / "nginx.log", None, (port, tls_port))
    ]


# ----------------------------------------------------------------------------- (a) conns/s


class ClientProc:
    def __init__(self, cfg: dict[str, Any], errfile: Path) -> None:
        self.cfg, self.errfile = cfg, errfile
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with open(self.errfile, "ab") as ef:
            self.proc = await bench.spawn(
                [sys.executable, str(THIS), "_client", json.dumps(self.cfg)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=ef,
            )

    async def event(self, want: str, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"client exited before {want!r}:\n{bench.tail(self.errfile, 6)}")
        ev = json.loads(line)
        if ev.get("event") != want:
            raise RuntimeError(f"client: {ev.get('error', ev)}")
        return dict(ev)

    async def go(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        await self.proc.stdin.drain()

    async def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 10)
            await bench.terminate(self.proc)


async def measure_conns(
    env: Env, proxy: Proxy | None, tls: bool, args: argparse.Namespace
) -> dict[str, Any]:
    url = f"wss://{HOST}:{env.tls_port}/" if tls else f"ws://{HOST}:{env.ws_port}/"
    via = f"http://{HOST}:{proxy.port}" if proxy else None
    if proxy is not None and proxy.reverse_ports is not None:  # nginx: its own ports, no proxy
        url = f"{'wss' if tls else 'ws'}://{HOST}:{proxy.reverse_ports[1 if tls else 0]}/"
        via = None
    cafile = str(proxy.cafile if proxy else env.ca_file)
    per, extra = divmod(args.concurrency, args.clients)
    clients = [
        ClientProc(
            {
                "url": url,
                "proxy": via,
                "cafile": cafile,
                "concurrency": per + (1 if i < extra else 0),
                "warmup": args.warmup,
                "duration": args.duration,
                "times_file": str(env.tmp / f"times-{i}.json"),
            },
            env.tmp / "client.stderr",
        )
        for i in range(args.clients)
    ]
    clients = [c for c in clients if c.cfg["concurrency"] > 0]
    try:
        for c in clients:
            await c.start()
        await asyncio.gather(*(c.event("ready", 60 + args.warmup) for c in clients))
        pids = proxy.pids() if proxy else []
        if proxy and not pids:
            raise RuntimeError(f"{proxy.name} is not running")
        cpu0 = cpu_seconds(pids)
        echo0 = cpu_seconds([env.echo_proc.pid])
        t0 = time.monotonic()
        for c in clients:
            await c.go()
        results = await asyncio.gather(*(c.event("done", args.duration + 60) for c in clients))
        await asyncio.sleep(0.3)  # let the proxy finish the last closes
        wall = time.monotonic() - t0
        cpu1 = cpu_seconds(pids)
        echo1 = cpu_seconds([env.echo_proc.pid])
    finally:
        for c in clients:
            await c.stop()
    n = sum(r["connections"] for r in results)
    errors = sum(r["errors"] for r in results)
    times = [t for c in clients for t in json.loads(Path(c.cfg["times_file"]).read_text())]
    elapsed = max(r["elapsed"] for r in results)
    if n == 0:
        raise RuntimeError(f"no connection completed: {results[0]['last_error']}")
    out: dict[str, Any] = {
        "connections": n,
        "errors": errors,
        "last_error": next((r["last_error"] for r in results if r["last_error"]), None),
        "conns_per_s": n / elapsed,
        "open_echo_close_p50_ms": statistics.median(times) * 1e3,
        "open_echo_close_p90_ms": pct(times, 0.9) * 1e3,
        "echo_cpu_pct": 100 * (echo1 - echo0) / wall,
        # each client process's own CPU over its phase, summed (% of one core)
        "clients_cpu_pct": 100 * sum(r["cpu_s"] / r["elapsed"] for r in results),
    }
    if proxy:
        out["proxy_cpu_ms_per_conn"] = (cpu1 - cpu0) / n * 1e3
        out["proxy_cpu_pct"] = 100 * (cpu1 - cpu0) / wall
    return out


# ----------------------------------------------------------------------------- (b) leaves


def leaf_inprocess(n: int, repeats: int) -> dict[str, Any]:
    from wsproxy.tls.ca import CertAuthority

    with tempfile.TemporaryDirectory(prefix="wsproxy-tlsbench-ca-") as d:
        t = time.perf_counter()
        ca = CertAuthority.load_or_create(Path(d))
        create_ms = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        ca.leaf_context("first.example")  # also makes the one leaf key of this CA
        first_ms = (time.perf_counter() - t) * 1e3
        new = []
        for i in range(n):
            t = time.perf_counter()
            ca.leaf_context(f"host{i}.example")
            new.append((time.perf_counter() - t) * 1e3)
        cached = []
        for i in range(max(repeats, n)):
            t = time.perf_counter()
            ca.leaf_context(f"host{i % n}.example")
            cached.append((time.perf_counter() - t) * 1e3)
    return {
        "ca_create_ms": create_ms,
        "first_leaf_ms": first_ms,
        "new": new,
        "cached": cached,
    }


async def tls_through_proxy(proxy: Proxy, env: Env, sni: str, ctx: ssl.SSLContext) -> float:
    """CONNECT 127.0.0.1:TLS_PORT, then the TLS handshake with SNI `sni`: its time in ms."""
    reader, writer = await asyncio.open_connection(HOST, proxy.port)
    try:
        target = f"{HOST}:{env.tls_port}"
        writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"CONNECT refused: {head[:80]!r}")
        t = time.perf_counter()
        await asyncio.wait_for(writer.start_tls(ctx, server_hostname=sni), 20)
        return (time.perf_counter() - t) * 1e3
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def ws_through_proxy(proxy: Proxy, env: Env, sni: str, ctx: ssl.SSLContext) -> float:
    """A whole wss:// connection (CONNECT, TLS with SNI `sni`, upgrade, one echo), in ms."""
    from websockets.asyncio.client import connect

    t = time.perf_counter()
    async with connect(
        f"wss://{HOST}:{env.tls_port}/",
        proxy=f"http://{HOST}:{proxy.port}",
        ssl=ctx,
        server_hostname=sni,
        compression=None,
        open_timeout=20,
    ) as ws:
        await ws.send("x" * 64)
        await ws.recv()
        ms = (time.perf_counter() - t) * 1e3
    return ms


async def leaf_end_to_end(proxy: Proxy, env: Env, n: int) -> dict[str, list[float]]:
    ctx = ssl.create_default_context(cafile=str(proxy.cafile))
    tag = f"{os.getpid()}-{int(time.time())}"
    # One warm-up with a name not measured: connections, imports, the CONNECT host's leaf.
    await tls_through_proxy(proxy, env, f"warm-{tag}.bench.test", ctx)
    await ws_through_proxy(proxy, env, f"warmws-{tag}.bench.test", ctx)
    out: dict[str, list[float]] = {"tls_new": [], "tls_repeat": [], "ws_new": [], "ws_repeat": []}
    for i in range(n):
        name = f"h{i}-{tag}.bench.test"
        out["tls_new"].append(await tls_through_proxy(proxy, env, name, ctx))
        out["tls_repeat"].append(await tls_through_proxy(proxy, env, name, ctx))
        name = f"w{i}-{tag}.bench.test"
        out["ws_new"].append(await ws_through_proxy(proxy, env, name, ctx))
        out["ws_repeat"].append(await ws_through_proxy(proxy, env, name, ctx))
    return out


# ----------------------------------------------------------------------------- main


async def amain(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    tmp = Path(tempfile.mkdtemp(prefix="wsproxy-tlsbench-"))
    args.tmp = tmp
    doc: dict[str, Any] = {"argv": sys.argv[1:], "cpus": os.cpu_count()}
    failed = False
    proxies: list[Proxy] = []
    try:
        env = await start_echo(tmp)
        log(f"echo server: wss on {env.tls_port}, ws on {env.ws_port}; logs in {tmp}")
        names = [p for p in args.proxies.split(",") if p]
        proxies = make_proxies(env, names, args.wsproxy_args, args.baseline)
        for p in proxies:
            await p.start()
            log(f"{p.name}: listening on {p.port} (pid {p.proc.pid if p.proc else '?'})")

        # (a) connections per second, round-robin over (target, scheme), R rounds
        cases: list[tuple[str, Proxy | None, bool]] = [("direct", None, True)]
        cases += [("direct", None, False)]
        for p in proxies:
            cases += [(p.name, p, True), (p.name, p, False)]
        runs: dict[str, list[dict[str, Any]]] = {}
        for r in range(args.repeats):
            k = r % len(cases)
            for name, proxy, tls in cases[k:] + cases[:k]:
                key = f"{name} {'wss' if tls else 'ws'}"
                try:
                    res = await measure_conns(env, proxy, tls, args)
                except (RuntimeError, TimeoutError, OSError) as e:
                    failed = True
                    log(f"[conns {r + 1}/{args.repeats}] {key}: ERROR {e}")
                    if proxy is not None and not proxy.pids():
                        log(bench.tail(proxy.logfile, 8))
                        await proxy.stop()
                        await proxy.start()
                    continue
                runs.setdefault(key, []).append(res)
                shown = {k2: v for k2, v in res.items() if isinstance(v, float)}
                log(
                    f"[conns {r + 1}/{args.repeats}] {key}: "
                    + ", ".join(f"{k2}={v:.2f}" for k2, v in shown.items())
                    + (f", errors={res['errors']} ({res['last_error']})" if res["errors"] else "")
                )
        doc["connections"] = runs

        # (b) the first leaf for a new host (through the proxies that make leaves)
        inproc = {} if args.connections_only else leaf_inprocess(args.hosts, 200)
        doc["leaf_inprocess"] = inproc
        e2e: dict[str, dict[str, list[float]]] = {}
        for p in proxies:
            if args.connections_only or p.reverse_ports is not None:
                continue
            try:
                e2e[p.name] = await leaf_end_to_end(p, env, args.hosts)
            except Exception as e:  # InvalidStatus, SSLError, timeouts...
                failed = True
                log(f"[leaf] {p.name}: ERROR {type(e).__name__}: {e}")
        doc["leaf_end_to_end"] = e2e
    finally:
        for p in proxies:
            with contextlib.suppress(Exception):
                await p.stop()
        await bench.terminate_all()

    def med(key: str, field: str) -> float | None:
        vals = [r[field] for r in runs.get(key, []) if field in r]
        return statistics.median(vals) if vals else None

    print()
    print(
        f"(a) new connections through CONNECT (nginx: to its own ports, a reverse proxy): "
        f"open, one 64 B echo, close; "
        f"{args.concurrency} at a time in {args.clients} client processes, "
        f"{args.duration:g} s, median of {args.repeats}; {os.cpu_count()} CPUs"
    )
    rows = [
        [
            "target",
            "conns/s",
            "proxy CPU ms/conn",
            "proxy CPU %",
            "open→close p50 ms",
            "p90 ms",
            "clients CPU %",
            "echo CPU %",
            "errors",
        ]
    ]
    for name, _proxy, tls in cases:
        key = f"{name} {'wss' if tls else 'ws'}"
        if key not in runs:
            rows.append([key] + ["n/a"] * 8)
            continue
        rows.append(
            [
                key,
                fmt(med(key, "conns_per_s"), 1),
                fmt(med(key, "proxy_cpu_ms_per_conn")),
                fmt(med(key, "proxy_cpu_pct"), 0),
                fmt(med(key, "open_echo_close_p50_ms")),
                fmt(med(key, "open_echo_close_p90_ms")),
                fmt(med(key, "clients_cpu_pct"), 0),
                fmt(med(key, "echo_cpu_pct"), 0),
                str(sum(r["errors"] for r in runs[key])),
            ]
        )
    print(render(rows))

    if not args.connections_only:
        print()
        print(f"(b) time to a leaf certificate, {args.hosts} new host names (ms)")
        rows = [["measure", "median", "p90", "max", "n"]]

        def row(label: str, vals: list[float]) -> list[str]:
            if not vals:
                return [label, "-", "-", "-", "0"]
            return [
                label,
                fmt(statistics.median(vals), 3),
                fmt(pct(vals, 0.9), 3),
                fmt(max(vals), 3),
                str(len(vals)),
            ]

        rows.append(
            ["in-process: CertAuthority.load_or_create (new CA)", fmt(inproc["ca_create_ms"])]
        )
        rows[-1] += ["", "", "1"]
        rows.append(
            ["in-process: first leaf_context (makes the leaf key)", fmt(inproc["first_leaf_ms"])]
        )
        rows[-1] += ["", "", "1"]
        rows.append(row("in-process: leaf_context, new host", inproc["new"]))
        rows.append(row("in-process: leaf_context, cached host", inproc["cached"]))
        for name, res in e2e.items():
            rows.append(row(f"{name}: TLS handshake after CONNECT, new SNI", res["tls_new"]))
            rows.append(row(f"{name}: TLS handshake after CONNECT, repeat SNI", res["tls_repeat"]))
            rows.append(row(f"{name}: CONNECT+TLS+upgrade+echo, new SNI", res["ws_new"]))
            rows.append(row(f"{name}: CONNECT+TLS+upgrade+echo, repeat SNI", res["ws_repeat"]))
        print(render(rows))

    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.json}")
    if failed or args.keep_logs:
        log(f"logs kept in {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_echo"]:
        asyncio.run(echo_main(json.loads(argv[1])))
        return 0
    if argv[:1] == ["_client"]:
        asyncio.run(client_main(json.loads(argv[1])))
        return 0
    ap = argparse.ArgumentParser(description="wss:// interception cost (see bench/README.md)")
    ap.add_argument("--duration", type=float, default=10, help="seconds measured per run (10)")
    ap.add_argument("--warmup", type=float, default=1, help="seconds of warm-up per run (1)")
    ap.add_argument("-r", "--repeats", type=int, default=1, help="rounds over all cases (1)")
    ap.add_argument("--concurrency", type=int, default=4, help="connections at a time (4)")
    ap.add_argument("--clients", type=int, default=2, help="client processes (2)")
    ap.add_argument("--hosts", type=int, default=50, help="new host names in part (b) (50)")
    ap.add_argument(
        "--proxies",
        default="wsproxy,mitmproxy",
        help="from wsproxy,mitmproxy,nginx,wsproxy-base (the --baseline checkout)",
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        help="another wsproxy checkout, run as the proxy wsproxy-base (its own code beside "
        "this one's, in the same run)",
    )
    ap.add_argument(
        "--connections-only", action="store_true", help="part (a) only (bench.py connect-tls)"
    )
    ap.add_argument("--wsproxy-args", default="", help="extra flags for python -m wsproxy")
    ap.add_argument("--json", metavar="FILE", help="every run and every timing as JSON")
    ap.add_argument("--keep-logs", action="store_true", help="keep the temporary directory")
    for i, a in enumerate(argv[:-1]):
        if a == "--wsproxy-args":
            argv[i : i + 2] = [f"--wsproxy-args={argv[i + 1]}"]
            break
    args = ap.parse_args(argv)
    require_modules("bench/tls_bench.py", "websockets", "trustme")
    bench.raise_nofile(4096)
    rc = 130
    try:
        rc = asyncio.run(amain(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted")
    except Exception:
        log(f"failed; logs kept in {getattr(args, 'tmp', '?')}")
        raise
    finally:
        bench.kill_all_sync()
    return rc


if __name__ == "__main__":
    sys.exit(main())
