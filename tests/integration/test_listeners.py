"""Several listeners in one process (repeated ``--mode``, ``MODE@PORT``) and the
``reverse:http://`` / ``https://`` spellings, through a real proxy process."""

from __future__ import annotations

import aiohttp
import pytest
from websockets.asyncio.client import connect

from tests.harness import HOST, AioServer, ProxyProcess, StartProxy, WsUpstream, free_port

pytestmark = pytest.mark.timeout(60)


async def test_regular_and_reverse_listeners_in_one_process(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    reverse_port = free_port()
    proxy: ProxyProcess = await start_proxy(
        "--mode", "regular", "--mode", f"reverse:http://{HOST}:{ws_echo.port}@{reverse_port}"
    )
    await proxy.wait_log(lambda text: f"listening on {HOST}:{reverse_port} (reverse:ws://" in text)
    await proxy.wait_log(lambda text: f"listening on {HOST}:{proxy.port} (regular mode)" in text)
    # The reverse listener is the server; the regular one a proxy to the same echo server.
    async with connect(f"ws://{HOST}:{reverse_port}/via-reverse") as ws:
        await ws.send("reverse")
        assert await ws.recv() == "reverse"
    async with connect(f"ws://{HOST}:{ws_echo.port}/via-regular", proxy=proxy.url) as ws:
        await ws.send("regular")
        assert await ws.recv() == "regular"
    paths = sorted([(await ws_echo.next_close()).path for _ in range(2)])
    assert paths == ["/via-regular", "/via-reverse"]


async def test_reverse_http_relays_plain_http_and_upgrades(
    start_proxy: StartProxy, aiohttp_server: AioServer
) -> None:
    proxy = await start_proxy("--mode", f"reverse:http://{HOST}:{aiohttp_server.port}")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{HOST}:{proxy.port}/hello") as response:
            assert response.status == 200
        async with session.ws_connect(f"ws://{HOST}:{proxy.port}/ws") as ws:
            await ws.send_str("up")
            assert await ws.receive_str(timeout=10) == "up"


async def test_a_taken_second_port_names_its_listener(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    taken = ws_echo.port  # something already listens there
    proxy = await start_proxy("--mode", "regular", "--mode", f"socks5@{taken}", ready=False)
    assert await proxy.wait_exit(20) == 1
    proxy.expect_exit()
    assert (
        f"cannot listen on {HOST}:{taken}: Address already in use (socks5 mode)" in proxy.stderr()
    )


async def test_two_listeners_on_one_port_are_refused_before_binding(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy("--mode", "regular", "--mode", "transparent", ready=False)
    assert await proxy.wait_exit(20) == 2
    proxy.expect_exit()
    assert "would both listen on" in proxy.stderr()
    assert "give one its own port with MODE@PORT" in proxy.stderr()
