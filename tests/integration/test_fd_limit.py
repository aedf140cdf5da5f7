"""A proxy process out of file descriptors: one warning per burst of failed accepts, with the
limit and how to raise it, no traceback, and the proxy serves again once connections close.

The proxy starts as usual; then its soft RLIMIT_NOFILE is lowered to 64 from outside
(``resource.prlimit`` on its pid, which is what ``prlimit --pid`` does), and the test opens
more connections than that. Those past the limit wait in the listen backlog while asyncio
retries ``accept()`` every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sys

import pytest

from tests.harness import HOST, ProxyProcess, StartProxy
from tests.integration import wsraw
from tests.integration.test_metrics import metrics_address, scrape

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(sys.platform != "linux", reason="resource.prlimit is Linux-only"),
]

LIMIT = 64
CLIENTS = 100  # more than LIMIT, fewer than LIMIT + the listen backlog (100)
WARNING = "cannot accept new connections"
AGAIN = "accepting connections again"


async def exhaust(proxy: ProxyProcess) -> list[asyncio.StreamWriter]:
    """Open CLIENTS connections that send nothing (the proxy keeps them waiting for a head)."""
    writers = []
    for _ in range(CLIENTS):
        _, writer = await asyncio.open_connection(HOST, proxy.port)
        writers.append(writer)
    return writers


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    for writer in writers:
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def magic_page_status(proxy: ProxyProcess) -> int:
    """A request the proxy answers itself (no upstream, no name lookup)."""
    reader, writer = await asyncio.open_connection(HOST, proxy.port)
    try:
        writer.write(b"GET http://wsproxy.invalid/ HTTP/1.1\r\nHost: wsproxy.invalid\r\n\r\n")
        return (await asyncio.wait_for(wsraw.read_head(reader), 10)).status
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_out_of_file_descriptors_warns_once_per_burst(start_proxy: StartProxy) -> None:
    # The handshake timeout is long enough that the idle connections stay open until we close.
    proxy = await start_proxy("--handshake-timeout", "60")
    _, hard = resource.prlimit(proxy.proc.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(proxy.proc.pid, resource.RLIMIT_NOFILE, (LIMIT, hard))
    assert await magic_page_status(proxy) == 200

    for burst in (1, 2):
        writers = await exhaust(proxy)
        try:
            await proxy.wait_count(WARNING, burst)
        finally:
            await close_all(writers)
        # The backlog drains (more failed accepts on the way); two seconds after the last one
        # the burst is over.
        log = await proxy.wait_count(AGAIN, burst)
        assert await magic_page_status(proxy) == 200
        warnings = [line for line in log.splitlines() if WARNING in line]
        assert len(warnings) == burst, log

    assert f"the open files limit is {LIMIT} (hard limit " in warnings[0]
    assert "ulimit -n" in warnings[0] and "LimitNOFILE" in warnings[0]
    assert "EMFILE" in warnings[0]
    again = [line for line in log.splitlines() if AGAIN in line]
    failed = [int(line.split(AGAIN + " (")[1].split()[0]) for line in again]
    # One warning for each burst, however many accepts failed in it: the proxy accepts one
    # connection per wake-up, so those the clients closed free their descriptors before the
    # next accept, and a burst may end after its first failure (the fake clock's unit test,
    # tests/proxy/test_accept.py, holds the many-failures case).
    assert all(n >= 1 for n in failed), again
    assert "Traceback" not in log  # the harness checks the whole log again at teardown


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_the_metrics_endpoint_out_of_descriptors_keeps_its_clients_waiting(
    start_proxy: StartProxy, loop: str
) -> None:
    """The metrics endpoint (an aiohttp app) accepts as the proxy's ports do on every loop: at
    EMFILE a scrape waits in the backlog, with the warning in the log, and is answered once
    descriptors are free (libuv's own accept would close it unanswered)."""
    if loop == "uvloop":
        pytest.importorskip("uvloop")  # the test extra installs it
    proxy = await start_proxy("--handshake-timeout", "60", "--metrics-port", "0", "--loop", loop)
    url, token = await metrics_address(proxy)
    _, hard = resource.prlimit(proxy.proc.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(proxy.proc.pid, resource.RLIMIT_NOFILE, (LIMIT, hard))
    writers = await exhaust(proxy)
    try:
        await proxy.wait_count(WARNING, 1)
        scraping = asyncio.create_task(scrape(url, token))
        done, _ = await asyncio.wait({scraping}, timeout=0.5)  # still waiting: not cut off
        assert not done, scraping.result() if not scraping.exception() else scraping.exception()
    finally:
        await close_all(writers)
    samples = await asyncio.wait_for(scraping, 30)
    assert ("wsproxy_event_loop_lag_seconds", ()) in samples
    await proxy.wait_count(AGAIN, 1)
