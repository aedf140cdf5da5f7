"""The short soak of issue 17, in CI: 1,000 concurrent WebSockets through ``--workers 2`` for
15 s of traffic. No message lost or changed, every worker's RSS bounded, every descriptor
given back once the connections closed. (The long one, 10,000 WebSockets for 10 minutes, is
run by hand: ``bench/soak.py --conns 10000 --duration 600 --proxy-workers 2``.)

Each connection sends a 64-byte text message about once a second (a random phase spreads
them) and waits for its echo before the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import resource
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.harness import StartProxy, WsUpstream, status_kib, wait_until

pytestmark = pytest.mark.timeout(120)

CONNECTIONS = 1000
TRAFFIC = 15.0  # seconds
INTERVAL = 1.0  # seconds between two messages of one connection
LEAST_ROUND_TRIPS = 5  # of each connection in TRAFFIC seconds (a loaded machine is slow)
OPEN_AT_ONCE = 100
# Bounds, generous (a worker holds ~500 of the connections): what is measured is that
# nothing grows with the traffic, not a tight budget.
GROWTH_OPEN_MIB = 150  # RSS with every connection open, over the idle worker's
GROWTH_TRAFFIC_MIB = 40  # RSS at the end of the traffic, over the RSS when it started


@pytest.fixture
def enough_descriptors() -> Iterator[None]:
    """The test holds both ends of 1,000 WebSockets: raise the soft RLIMIT_NOFILE (the proxy,
    started after, inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 4 * CONNECTIONS + 500
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {need}: raise it (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def rss_mib(pid: int) -> float:
    return status_kib(pid, "VmRSS") / 1024


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_1000_websockets_through_two_workers(
    enough_descriptors: None, start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy(
        "--workers",
        "2",
        "--mode",
        f"reverse:{ws_echo.url}",
        "--parallel-handshakes",
        "--no-compression",
        verbose=False,
    )
    workers = await proxy.wait_workers(2)
    idle = {pid: rss_mib(pid) for pid in workers}
    idle_fds = {pid: fds(pid) for pid in workers}

    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def open_one() -> ClientConnection:
        async with gate:
            return await connect(
                f"ws://127.0.0.1:{proxy.port}/soak",
                ping_interval=None,
                compression=None,
                open_timeout=30,
            )

    sockets = await asyncio.gather(*(open_one() for _ in range(CONNECTIONS)))
    opened = {pid: rss_mib(pid) for pid in workers}
    served = {pid: fds(pid) - idle_fds[pid] for pid in workers}
    assert all(n > 0 for n in served.values()), f"a worker holds no connection: {served}"

    loop = asyncio.get_running_loop()
    stop_at = loop.time() + TRAFFIC
    sent = received = 0
    wrong: list[str] = []
    round_trips = [0] * CONNECTIONS

    async def talk(i: int, ws: ClientConnection) -> None:
        nonlocal sent, received
        await asyncio.sleep(random.random() * INTERVAL)
        seq = 0
        while loop.time() < stop_at:
            message = f"c{i}s{seq}-".ljust(64, "x")
            await ws.send(message)
            sent += 1
            echo = await asyncio.wait_for(ws.recv(), 10)
            if echo == message:
                received += 1
                round_trips[i] += 1
            elif len(wrong) < 5:
                wrong.append(f"c{i}: {str(echo)[:30]!r} for {message[:30]!r}")
            seq += 1
            await asyncio.sleep(INTERVAL)
        await ws.close()

    traffic = [asyncio.ensure_future(talk(i, ws)) for i, ws in enumerate(sockets)]
    # The second baseline once the traffic is under way: every connection sent twice.
    await wait_until(lambda: sent >= 2 * CONNECTIONS, 10, "the traffic under way")
    during = {pid: rss_mib(pid) for pid in workers}
    try:
        await asyncio.gather(*traffic)
    finally:
        for task in traffic:
            task.cancel()
        for ws in sockets:
            with contextlib.suppress(Exception):
                await ws.close()
    end = {pid: rss_mib(pid) for pid in workers}

    assert not wrong, wrong
    assert sent == received, f"{sent - received} of {sent} messages lost"
    assert min(round_trips) >= LEAST_ROUND_TRIPS, (
        f"{sent} messages, fewest on one: {min(round_trips)}"
    )
    for pid in workers:
        assert opened[pid] - idle[pid] < GROWTH_OPEN_MIB, (pid, idle[pid], opened[pid])
        assert end[pid] - during[pid] < GROWTH_TRAFFIC_MIB, (pid, during[pid], end[pid])
    await wait_until(
        lambda: all(fds(pid) <= idle_fds[pid] + 2 for pid in workers),
        15,
        lambda: f"descriptors back: {[(fds(p), idle_fds[p]) for p in workers]}",
    )
    assert proxy.worker_pids() == workers  # none died and was started again
