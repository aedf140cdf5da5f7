"""``--workers N`` (wsproxy.workers, wsproxy.workerplan, wsproxy.workermetrics): N processes
on one set of ports, end to end with real sockets, plus the pure parts at unit level."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.harness import (
    HOST,
    ProxyProcess,
    StartProxy,
    WsUpstream,
    alive,
    child_pids,
    wait_until,
)
from wsproxy.argtypes import parse_workers
from wsproxy.workermetrics import merge_expositions
from wsproxy.workerplan import worker_capture_path, workers_unsupported
from wsproxy.workers import exit_text, without_workers_flag

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreads only on Linux"
    ),
]

WORKER_ID = re.compile(r"\[(w\d+)(?:r\d+)?-c\d+\]")


def workers_seen(log: str) -> set[str]:
    """The workers named by the connection ids of a log (w1, w2...)."""
    return set(WORKER_ID.findall(log))


async def echo_once(url: str, proxy: str, text: str) -> None:
    async with connect(url, proxy=proxy, ping_interval=None, open_timeout=10) as ws:
        await ws.send(text)
        assert await asyncio.wait_for(ws.recv(), 10) == text


async def open_until_both(
    proxy: ProxyProcess, url: str, workers: int = 2
) -> list[ClientConnection]:
    """WebSockets through ``proxy`` until every worker has served one (the kernel spreads new
    connections by a hash of their addresses: a few dozen reach both all but surely)."""
    opened: list[ClientConnection] = []
    for n in range(200):
        ws = await connect(url, proxy=proxy.url, ping_interval=None, open_timeout=10)
        opened.append(ws)
        await ws.send(f"m{n}")
        assert await asyncio.wait_for(ws.recv(), 10) == f"m{n}"
        if len(workers_seen(proxy.stderr())) == workers and n >= 3:
            return opened
    raise AssertionError(
        f"200 connections, not all served by {workers} workers\n{proxy.describe()}"
    )


# -- unit level --------------------------------------------------------------------------------


def test_parse_workers() -> None:
    assert parse_workers("1") == 1
    assert parse_workers("4") == 4
    assert parse_workers("auto") == (os.cpu_count() or 1)
    assert parse_workers(" AUTO ") == (os.cpu_count() or 1)
    for bad in ("0", "-1", "abc", "", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a number of workers"):
            parse_workers(bad)


def test_the_workers_flag_is_taken_out_of_the_workers_command_line() -> None:
    argv = ["-v", "--workers", "2", "-w", "x.jsonl", "--workers=3", "--work", "4", "-p", "1"]
    assert without_workers_flag(argv) == ["-v", "-w", "x.jsonl", "-p", "1"]
    assert without_workers_flag(["--wo", "2", "--web-port", "1"]) == ["--web-port", "1"]


def test_worker_capture_names() -> None:
    assert worker_capture_path(Path("/d/cap.jsonl"), "w2") == Path("/d/cap.w2.jsonl")
    assert worker_capture_path(Path("a.har"), "w1") == Path("a.w1.har")
    assert worker_capture_path(Path("x.y.mitm"), "w3r1") == Path("x.y.w3r1.mitm")


def test_workers_are_refused_where_so_reuseport_does_not_spread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert workers_unsupported() is None  # the tests run on Linux
    monkeypatch.setattr(sys, "platform", "darwin")
    reason = workers_unsupported()
    assert reason is not None and reason.startswith("--workers above 1 needs Linux")


def test_exit_texts() -> None:
    assert exit_text(1) == "exited with status 1"
    assert exit_text(-signal.SIGKILL) == "was killed by SIGKILL"


def test_merged_metrics_keep_each_family_together_with_a_worker_label() -> None:
    one = (
        "# HELP a_total things\n# TYPE a_total counter\n"
        'a_total{mode="regular"} 3.0\n# HELP lag_seconds lag\n# TYPE lag_seconds gauge\n'
        "lag_seconds 0.1\n"
    )
    two = one.replace("3.0", "4.0").replace("0.1", "0.2")
    merged = merge_expositions({1: one, 2: two})
    assert merged.splitlines() == [
        "# HELP a_total things",
        "# TYPE a_total counter",
        'a_total{mode="regular",worker="1"} 3.0',
        'a_total{mode="regular",worker="2"} 4.0',
        "# HELP lag_seconds lag",
        "# TYPE lag_seconds gauge",
        'lag_seconds{worker="1"} 0.1',
        'lag_seconds{worker="2"} 0.2',
    ]
    assert merge_expositions({}) == ""
    assert merge_expositions({3: 'x{a="}"} 1\n'}) == 'x{a="}",worker="3"} 1\n'


# -- processes ---------------------------------------------------------------------------------


async def test_two_workers_both_serve_and_write_one_capture_each(
    start_proxy: StartProxy, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    capture = tmp_path / "cap.jsonl"
    proxy = await start_proxy("--workers", "2", "-w", str(capture))
    pids = await proxy.wait_workers(2)
    log = proxy.stderr()
    assert log.count("wsproxy listening on") == 1, log  # said once, by the supervisor
    assert f"127.0.0.1:{proxy.port} (regular mode, 2 workers)" in log
    assert f"one file per worker: {tmp_path}/cap.w1.jsonl, {tmp_path}/cap.w2.jsonl" in log
    opened = await open_until_both(proxy, f"{ws_echo.url}/echo")
    for ws in opened:
        await ws.close()
    assert await proxy.stop() == 0
    assert not [pid for pid in pids if alive(pid)]
    assert not capture.exists()
    conns: dict[str, set[str]] = {}
    for worker in ("w1", "w2"):
        lines = (tmp_path / f"cap.{worker}.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        conns[worker] = {r["conn"] for r in records if r.get("type") == "handshake"}
        assert conns[worker], f"no connection in {worker}'s capture"
        assert all(c.startswith(f"{worker}-c") for c in conns[worker])
    assert len(conns["w1"]) + len(conns["w2"]) == len(opened)


async def test_plugins_are_loaded_in_every_worker(
    start_proxy: StartProxy, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    plugin = tmp_path / "whoami.py"
    plugin.write_text(
        "import logging, os\n"
        "def websocket_message(flow):\n"
        "    logging.warning('plugin in pid %d', os.getpid())\n"
    )
    proxy = await start_proxy("--workers", "2", "-s", str(plugin))
    pids = await proxy.wait_workers(2)
    opened = await open_until_both(proxy, f"{ws_echo.url}/echo")
    for ws in opened:
        await ws.close()
    seen = {int(pid) for pid in re.findall(r"plugin in pid (\d+)", proxy.stderr())}
    assert seen == set(pids), proxy.describe()


async def test_port_0_and_several_listeners_are_shared(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy(
        "--workers", "2", "--mode", "regular", "--mode", f"reverse:{ws_echo.url}@0"
    )
    await proxy.wait_workers(2)
    line = proxy.stderr()
    match = re.search(r"listening on 127\.0\.0\.1:(\d+) \(reverse:", line)
    assert match, line
    reverse_port = int(match.group(1))
    assert reverse_port not in (0, proxy.port)
    for n in range(40):  # both listeners, served by both workers
        async with connect(f"ws://{HOST}:{reverse_port}/echo", ping_interval=None) as ws:
            await ws.send(f"r{n}")
            assert await ws.recv() == f"r{n}"
        await echo_once(f"{ws_echo.url}/echo", proxy.url, f"p{n}")
        if len(workers_seen(proxy.stderr())) == 2 and n >= 3:
            break
    assert workers_seen(proxy.stderr()) == {"w1", "w2"}


async def test_sigterm_closes_every_workers_websockets_with_1001(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--workers", "2")
    pids = await proxy.wait_workers(2)
    opened = await open_until_both(proxy, f"{ws_echo.url}/echo")
    proxy.signal(signal.SIGTERM)
    for ws in opened:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    closes = [await ws_echo.next_close() for _ in opened]
    assert {c.code for c in closes} == {1001}
    assert await proxy.wait_exit(15) == 0, proxy.describe()
    await wait_until(lambda: not any(alive(pid) for pid in pids), 5, "workers gone")
    log = proxy.stderr()
    assert re.search(r" w1 shutting down: closing \d+ WebSocket\(s\) with 1001", log), log
    assert re.search(r" w2 shutting down: closing \d+ WebSocket\(s\) with 1001", log), log


async def test_sigterm_to_the_whole_process_group_stops_cleanly(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    """As Ctrl-C in a terminal or a service manager: every worker gets the signal twice
    (from the group's and from the supervisor), and ends as after one."""
    proxy = await start_proxy("--workers", "2")
    pids = await proxy.wait_workers(2)
    opened = await open_until_both(proxy, f"{ws_echo.url}/echo")
    os.killpg(proxy.proc.pid, signal.SIGTERM)
    for ws in opened:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert await proxy.wait_exit(15) == 0, proxy.describe()
    await wait_until(lambda: not any(alive(pid) for pid in pids), 5, "workers gone")
    assert "Traceback" not in proxy.stderr() and "Exception ignored" not in proxy.stderr()


async def test_a_killed_worker_is_started_again_and_the_port_keeps_serving(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--workers", "2")
    first, second = await proxy.wait_workers(2)
    os.kill(second, signal.SIGKILL)
    await proxy.wait_log(lambda t: "was killed by SIGKILL: starting it again" in t)
    await proxy.wait_log(lambda t: "listens again" in t, timeout=20)
    now = proxy.worker_pids()
    assert first in now and second not in now and len(now) == 2
    for n in range(60):  # no connection refused meanwhile or after; the new life serves too
        await echo_once(f"{ws_echo.url}/echo", proxy.url, f"m{n}")
        if re.search(r"\[w\dr1-c\d+\]", proxy.stderr()) and n >= 3:
            break
    assert re.search(r"\[w\dr1-c\d+\]", proxy.stderr()), proxy.describe()


async def test_the_supervisor_killed_leaves_no_worker_behind(start_proxy: StartProxy) -> None:
    proxy = await start_proxy("--workers", "2")
    pids = await proxy.wait_workers(2)
    proxy.expect_exit()
    os.kill(proxy.proc.pid, signal.SIGKILL)  # its process group is left alone
    await proxy.wait_exit(5)
    await wait_until(lambda: not any(alive(pid) for pid in pids), 15, "workers gone")


def one_line_failure(proxy: ProxyProcess) -> str:
    lines = [line for line in proxy.stderr().splitlines() if line.strip()]
    assert len(lines) == 1, proxy.describe()
    return lines[0]


async def test_a_taken_port_fails_the_start_in_one_line(start_proxy: StartProxy) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        proxy = await start_proxy("--workers", "2", "--mode", f"regular@{port}", ready=False)
        proxy.expect_exit()
        assert await proxy.wait_exit(15) == 1
    line = one_line_failure(proxy)
    assert (
        line == f"wsproxy: cannot listen on 127.0.0.1:{port}: Address already in use (regular mode)"
    )


async def test_a_worker_that_cannot_start_fails_the_start_in_one_line(
    start_proxy: StartProxy, tmp_path: Path
) -> None:
    bad = tmp_path / "missing" / "cap.jsonl"
    proxy = await start_proxy("--workers", "2", "-q", "-w", str(bad), ready=False)
    proxy.expect_exit()
    assert await proxy.wait_exit(20) == 1
    line = one_line_failure(proxy)
    assert re.fullmatch(
        rf"wsproxy: cannot write the capture {tmp_path}/missing/cap\.w[12]\.jsonl: .*", line
    ), line
    assert not child_pids(proxy.proc.pid)


async def test_metrics_of_every_worker_through_the_supervisor(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--workers", "2", "--metrics-port", "0")
    await proxy.wait_workers(2)
    printed = proxy.stdout_path.read_text()
    match = re.search(r"wsproxy metrics: (\S+) \(bearer token (\S+)\)", printed)
    assert match, printed
    url, token = match.groups()
    opened = await open_until_both(proxy, f"{ws_echo.url}/echo")
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as refused:
            assert refused.status == 401
        async with session.get(url, headers={"Host": "evil.example"}) as rebound:
            assert rebound.status == 403
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as answer:
            assert answer.status == 200
            text = await answer.text()
    for ws in opened:
        await ws.close()
    assert 'wsproxy_worker_up{worker="1"} 1' in text
    assert 'wsproxy_worker_up{worker="2"} 1' in text
    accepted = {
        worker: float(value)
        for worker, value in re.findall(
            r'^wsproxy_connections_total\{mode="regular",worker="(\d)"\} (\S+)$', text, re.M
        )
    }
    assert set(accepted) == {"1", "2"}, text
    # Ids count each worker's connections (the harness's readiness probe, c1 of one of them,
    # says nothing in the log; each worker served more after it).
    ids = re.findall(r"\[w(\d)-c(\d+)\]", proxy.stderr())
    assert accepted == {w: max(float(n) for i, n in ids if i == w) for w in ("1", "2")}
    assert text.count("# TYPE wsproxy_connections_total counter") == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", "not a number of workers: '0'"), ("abc", "not a number of workers: 'abc'")],
)
async def test_bad_worker_counts_are_refused(
    start_proxy: StartProxy, value: str, expected: str
) -> None:
    proxy = await start_proxy("--workers", value, ready=False)
    proxy.expect_exit()
    assert await proxy.wait_exit(10) == 2
    assert expected in proxy.stderr()
    assert "Traceback" not in proxy.stderr()


async def test_auto_starts_one_worker_per_core(start_proxy: StartProxy) -> None:
    cores = os.cpu_count() or 1
    proxy = await start_proxy("--workers", "auto")
    if cores == 1:  # one process, as without --workers
        assert "workers)" not in proxy.stderr()
        return
    assert len(await proxy.wait_workers(cores)) == cores
