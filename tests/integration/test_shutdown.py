"""SIGTERM with WebSockets open: both peers get close 1001 and the proxy exits 0 promptly."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.harness import AioServer, StartProxy, WsUpstream

pytestmark = pytest.mark.timeout(60)


async def test_sigterm_closes_open_websockets_with_1001(
    start_proxy: StartProxy, ws_echo: WsUpstream, aiohttp_server: AioServer
) -> None:
    proxy = await start_proxy()
    async with (
        connect(f"{ws_echo.url}/echo", proxy=proxy.url, ping_interval=None) as ws,
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{aiohttp_server.ws_url}/ws", proxy=proxy.url) as ws2,
    ):
        await ws.send("before")
        assert await ws.recv() == "before"
        await ws2.send_str("before")
        assert await ws2.receive_str(timeout=10) == "before"

        started = time.monotonic()
        proxy.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
        msg = await ws2.receive(timeout=10)
        code = await proxy.wait_exit(10)
        elapsed = time.monotonic() - started

    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1001
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
    assert (await ws_echo.next_close()).code == 1001
    assert (await aiohttp_server.next_close()).code == 1001
    assert code == 0, proxy.describe()
    assert elapsed < 3, f"the proxy took {elapsed:.1f} s to exit"
    log = proxy.stderr()
    assert "shutting down: closing 2 WebSocket(s) with 1001" in log
    assert "Traceback" not in log


async def test_sigterm_when_idle(start_proxy: StartProxy) -> None:
    proxy = await start_proxy()
    started = time.monotonic()
    proxy.signal(signal.SIGTERM)
    assert await proxy.wait_exit(10) == 0, proxy.describe()
    assert time.monotonic() - started < 2
    assert "Traceback" not in proxy.stderr()


async def test_sigint_exits_cleanly(start_proxy: StartProxy, ws_echo: WsUpstream) -> None:
    proxy = await start_proxy()
    async with connect(f"{ws_echo.url}/echo", proxy=proxy.url, ping_interval=None) as ws:
        proxy.signal(signal.SIGINT)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert await proxy.wait_exit(10) == 0, proxy.describe()
    assert (await ws_echo.next_close()).code == 1001
