"""The quiet relay end to end: a proxy with no -v, no capture and no plugin, the way most runs
go (most other tests run the proxy with -v, which records frames and so takes the general
path). Its shortcuts pass runs of frames and pieces of large payloads on as views of each
read; these tests check, with real clients and servers, that what comes out is what went in,
over one connection and over several at once, writes waiting while other reads come in."""

from __future__ import annotations

import asyncio
import os
import random

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.harness import AioServer, ProxyProcess, StartProxy, WsUpstream, aiohttp_ws_via

pytestmark = pytest.mark.timeout(90)

KiB = 1024
MiB = 1024 * KiB
# Around the thresholds that choose a path: 125/126 and 65535/65536 (header sizes), 64 KiB
# (STREAM_THRESHOLD: larger binary frames stream), 256 KiB (one read), and a 16 MiB message.
SIZES = [0, 1, 125, 126, 65535, 65536, 65537, 256 * KiB - 7, 256 * KiB + 9, 3 * MiB, 16 * MiB]


def text_of(size: int, seed: int) -> str:
    """``size // 2`` characters, some of them two or three bytes in UTF-8: a random 4 KiB run
    repeated (drawing every character of 16 MiB would take seconds)."""
    rng = random.Random(seed)
    run = "".join(rng.choice("abcdefghij é✓") for _ in range(4096))
    return (run * (size // 2 // len(run) + 1))[: size // 2]


def client(url: str, proxy: ProxyProcess, compression: str | None) -> connect:
    return connect(
        url,
        proxy=proxy.url,
        max_size=None,
        compression=compression,
        open_timeout=10,
        close_timeout=10,
        ping_interval=None,
    )


async def quiet_proxy(start_proxy: StartProxy) -> ProxyProcess:
    return await start_proxy(
        "--max-message-size", "32MiB", "--max-frame-size", "32MiB", verbose=False
    )


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_every_size_both_ways(
    start_proxy: StartProxy, ws_echo: WsUpstream, compression: str | None
) -> None:
    proxy = await quiet_proxy(start_proxy)
    async with client(f"{ws_echo.url}/echo", proxy, compression) as ws:
        for size in SIZES:
            for payload in (os.urandom(size), text_of(size, size)):
                await ws.send(payload)
                echoed = await asyncio.wait_for(ws.recv(), 30)
                assert echoed == payload, f"{type(payload).__name__} of {len(payload)} bytes"
        # A fragmented message, pieces on both sides of the stream threshold.
        pieces = [os.urandom(n) for n in (10, 70 * KiB, 300 * KiB, 1)]
        await ws.send(pieces)
        assert await asyncio.wait_for(ws.recv(), 30) == b"".join(pieces)
        pong = await ws.ping(b"quiet")
        await asyncio.wait_for(pong, 10)
    closed = await ws_echo.next_close()
    assert closed.code == 1000


async def exchange(ws: ClientConnection, seed: int, count: int) -> None:
    """``count`` messages of random sizes sent while their echoes come back, each compared."""
    rng = random.Random(seed)
    sent: asyncio.Queue[bytes | str] = asyncio.Queue()

    async def send_all() -> None:
        for i in range(count):
            size = rng.choice(
                (rng.randrange(200), rng.randrange(90 * KiB), rng.randrange(700 * KiB))
            )
            payload: bytes | str = rng.randbytes(size) if i % 3 else text_of(size, seed + i)
            await ws.send(payload)
            sent.put_nowait(payload)

    sending = asyncio.create_task(send_all())
    try:
        for i in range(count):
            echoed = await asyncio.wait_for(ws.recv(), 30)
            expected = await asyncio.wait_for(sent.get(), 30)
            assert echoed == expected, f"connection {seed}, message {i}: differs"
        await sending
    finally:
        sending.cancel()


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_connections_at_once(
    start_proxy: StartProxy, ws_echo: WsUpstream, compression: str | None
) -> None:
    """Six connections sending and reading at once: their reads interleave, and writes a busy
    peer cannot take yet wait while other connections read."""
    proxy = await quiet_proxy(start_proxy)

    async def one(seed: int) -> None:
        async with client(f"{ws_echo.url}/echo", proxy, compression) as ws:
            await exchange(ws, seed, 60)

    await asyncio.gather(*(one(seed) for seed in range(6)))


@pytest.mark.parametrize("compress", [15, 0])
async def test_absolute_form_every_size(
    start_proxy: StartProxy, aiohttp_server: AioServer, compress: int
) -> None:
    """aiohttp's ``GET ws://...`` to the proxy, aiohttp's server behind it."""
    proxy = await quiet_proxy(start_proxy)
    async with (
        aiohttp.ClientSession() as session,
        aiohttp_ws_via(session, f"{aiohttp_server.ws_url}/ws", proxy.url, compress=compress) as ws,
    ):
        for size in SIZES:
            data = os.urandom(size)
            await ws.send_bytes(data)
            assert await ws.receive_bytes(timeout=30) == data, f"{size} bytes"
            text = text_of(size, size)
            await ws.send_str(text)
            assert await ws.receive_str(timeout=30) == text, f"{size} characters"
        await ws.close()
    closed = await aiohttp_server.next_close()
    assert closed.code == 1000
