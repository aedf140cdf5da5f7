"""Limits of a real proxy process: heads, slow clients, idle WebSockets, sizes, connections.

Each limit is set low with its flag and then crossed by a raw client, so the exact answer
(status line or close code) can be checked, and the proxy must stay up for the next client.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.harness import (
    HOST,
    POLL,
    ProxyProcess,
    RawClient,
    StartProxy,
    WsUpstream,
)
from tests.integration import wsraw
from tests.integration.wsraw import OP_BINARY, OP_CONT, OP_TEXT, RawConnection

pytestmark = pytest.mark.timeout(60)


async def request(
    raw_client: RawClient, proxy: ProxyProcess, data: bytes
) -> tuple[RawConnection, wsraw.Head]:
    conn = await raw_client(proxy.port)
    conn.writer.write(data)
    return conn, await asyncio.wait_for(wsraw.read_response(conn.reader), 10)


async def upgraded(raw_client: RawClient, proxy: ProxyProcess, upstream: int) -> RawConnection:
    conn = await raw_client(proxy.port)
    authority = f"{HOST}:{upstream}"
    conn.writer.write(wsraw.upgrade_request(f"ws://{authority}/limits", authority))
    head = await asyncio.wait_for(wsraw.read_head(conn.reader), 10)
    assert head.status == 101, head
    return conn


async def still_works(proxy: ProxyProcess, echo: WsUpstream) -> None:
    async with connect(
        f"{echo.url}/after", proxy=proxy.url, open_timeout=10, ping_interval=None
    ) as ws:
        await ws.send("ok")
        assert await asyncio.wait_for(ws.recv(), 10) == "ok"


# -- heads -----------------------------------------------------------------------------------


async def test_too_many_headers_is_431(
    start_proxy: StartProxy, ws_echo: WsUpstream, raw_client: RawClient
) -> None:
    proxy = await start_proxy("--max-headers", "5")
    authority = f"{HOST}:{ws_echo.port}"
    # The five standard upgrade headers are fine...
    conn = await upgraded(raw_client, proxy, ws_echo.port)
    await conn.close()
    # ...a sixth is one too many.
    data = wsraw.upgrade_request(f"ws://{authority}/", authority, extra=[("X-Sixth", "1")])
    _, head = await request(raw_client, proxy, data)
    assert head.status == 431
    assert ws_echo.connections == 1
    conn = await upgraded(raw_client, proxy, ws_echo.port)  # still serving
    await conn.close()


async def test_head_over_max_head_size_is_431(
    start_proxy: StartProxy, ws_echo: WsUpstream, raw_client: RawClient
) -> None:
    proxy = await start_proxy("--max-head-size", "2KiB")
    authority = f"{HOST}:{ws_echo.port}"
    fits = wsraw.upgrade_request(f"ws://{authority}/", authority, extra=[("X-Pad", "p" * 1500)])
    conn, head = await request(raw_client, proxy, fits)
    assert head.status == 101
    await conn.close()
    big = wsraw.upgrade_request(f"ws://{authority}/", authority, extra=[("X-Pad", "p" * 2100)])
    _, head = await request(raw_client, proxy, big)
    assert head.status == 431
    # Many small header lines add up the same way.
    lines = [(f"X-{i}", "v" * 40) for i in range(60)]
    _, head = await request(raw_client, proxy, wsraw.upgrade_request("/", authority, extra=lines))
    assert head.status == 431
    await still_works(proxy, ws_echo)


async def test_head_that_never_ends_is_cut_at_the_limit(
    start_proxy: StartProxy, raw_client: RawClient
) -> None:
    """A client streaming one endless header gets its 431 as soon as the limit is passed,
    not when it stops sending."""
    proxy = await start_proxy("--max-head-size", "4KiB")
    conn = await raw_client(proxy.port)
    conn.writer.write(b"GET http://example.test/ HTTP/1.1\r\nX-Endless: ")
    for _ in range(10):
        conn.writer.write(b"a" * 1024)
    head = await asyncio.wait_for(wsraw.read_head(conn.reader), 5)
    assert head.status == 431


async def test_long_request_line_is_414(
    start_proxy: StartProxy, ws_echo: WsUpstream, raw_client: RawClient
) -> None:
    proxy = await start_proxy("--max-request-line", "200")
    authority = f"{HOST}:{ws_echo.port}"
    path = "/" + "a" * 300
    _, head = await request(
        raw_client, proxy, wsraw.upgrade_request(f"ws://{authority}{path}", authority)
    )
    assert head.status == 414
    await still_works(proxy, ws_echo)
    assert ws_echo.connections == 1  # only the one after it


# -- time ------------------------------------------------------------------------------------


async def test_slowloris_is_cut_off_at_the_handshake_timeout(
    start_proxy: StartProxy, ws_echo: WsUpstream, raw_client: RawClient
) -> None:
    """One header byte every 0.3 s keeps the connection busy but never finishes the head:
    the handshake timeout counts from the first byte, not from the last one."""
    proxy = await start_proxy("--handshake-timeout", "1")
    conn = await raw_client(proxy.port)
    authority = f"{HOST}:{ws_echo.port}"
    data = wsraw.upgrade_request(f"ws://{authority}/", authority, extra=[("X-Slow", "s" * 100)])
    start = time.monotonic()

    async def dribble() -> None:
        for byte in data:
            conn.writer.write(bytes([byte]))
            await conn.writer.drain()
            await asyncio.sleep(0.3)  # the slow client's own pace: the behaviour under test

    sender = asyncio.create_task(dribble())
    try:
        answer = await asyncio.wait_for(conn.reader.read(4096), 5)
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
    elapsed = time.monotonic() - start
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer
    assert 0.9 <= elapsed <= 2.5, elapsed
    assert ws_echo.connections == 0


async def test_idle_websocket_gets_1001_on_both_sides(
    start_proxy: StartProxy, ws_echo: WsUpstream, raw_client: RawClient
) -> None:
    proxy = await start_proxy("--idle-timeout", "1")
    conn = await upgraded(raw_client, proxy, ws_echo.port)
    # Traffic keeps it open...
    for _ in range(3):
        await asyncio.sleep(0.5)  # the client's own pace: traffic every 0.5 s, under the 1 s
        conn.writer.write(wsraw.encode_frame(OP_TEXT, b"tick", mask=True))
        assert (await asyncio.wait_for(wsraw.read_frame(conn.reader), 5)).payload == b"tick"
    # ...silence does not.
    start = time.monotonic()
    frames, close = await asyncio.wait_for(wsraw.read_until_close(conn.reader), 5)
    assert time.monotonic() - start < 2.5
    assert frames == []
    assert close is not None and close.close_code == 1001
    conn.writer.write(wsraw.encode_frame(wsraw.OP_CLOSE, wsraw.close_payload(1001), mask=True))
    assert (await ws_echo.next_close()).code == 1001


# -- sizes -----------------------------------------------------------------------------------


async def test_client_frame_over_max_frame_size_is_1009(
    start_proxy: StartProxy, ws_echo: WsUpstream, raw_client: RawClient
) -> None:
    proxy = await start_proxy("--max-frame-size", "1KiB")
    conn = await upgraded(raw_client, proxy, ws_echo.port)
    conn.writer.write(wsraw.encode_frame(OP_BINARY, b"f" * 1024, mask=True))
    assert len((await asyncio.wait_for(wsraw.read_frame(conn.reader), 5)).payload) == 1024
    conn.writer.write(wsraw.encode_frame(OP_BINARY, b"f" * 1025, mask=True))
    frames, close = await asyncio.wait_for(wsraw.read_until_close(conn.reader), 10)
    assert frames == []
    assert close is not None and close.close_code == 1009
    assert (await ws_echo.next_close()).code == 1001


async def test_fragments_within_max_frame_size_pass_and_message_limit_counts_them(
    start_proxy: StartProxy, ws_echo: WsUpstream, raw_client: RawClient
) -> None:
    """Frames under the frame limit pass; their sum over the message limit is a 1009."""
    proxy = await start_proxy("--max-frame-size", "1KiB", "--max-message-size", "2KiB")
    conn = await upgraded(raw_client, proxy, ws_echo.port)
    conn.writer.write(
        wsraw.encode_frame(OP_TEXT, b"m" * 500, fin=False, mask=True)
        + wsraw.encode_frame(OP_CONT, b"m" * 500, mask=True)
    )
    # (the echo answers with one frame of 1000 bytes, under the frame limit too)
    assert len((await asyncio.wait_for(wsraw.read_frame(conn.reader), 5)).payload) == 1000
    for i in range(3):
        opcode = OP_CONT if i else OP_TEXT
        conn.writer.write(wsraw.encode_frame(opcode, b"m" * 1000, fin=False, mask=True))
    frames, close = await asyncio.wait_for(wsraw.read_until_close(conn.reader), 10)
    assert frames == []
    assert close is not None and close.close_code == 1009
    assert (await ws_echo.next_close()).code == 1001


async def test_server_frame_over_max_frame_size_is_1009_and_client_1014(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--max-frame-size", "1KiB")
    async with connect(
        f"{ws_echo.url}/send?n=1025", proxy=proxy.url, ping_interval=None, max_size=None
    ) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1014
    assert (await ws_echo.next_close()).code == 1009


# -- connections -----------------------------------------------------------------------------


async def hold(proxy: ProxyProcess, echo: WsUpstream, n: int) -> list[RawConnection]:
    conns = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection(HOST, proxy.port)
        conn = RawConnection(reader, writer)
        conns.append(conn)
        authority = f"{HOST}:{echo.port}"
        conn.writer.write(wsraw.upgrade_request(f"ws://{authority}/", authority))
        head = await asyncio.wait_for(wsraw.read_head(conn.reader), 10)
        if head.status != 101:
            for held in conns:
                await held.close()
            raise AssertionError(f"connection {len(conns)} of {n}: {head.status}")
    return conns


async def hold_again(proxy: ProxyProcess, echo: WsUpstream, n: int) -> list[RawConnection]:
    """``hold`` once the proxy released the slots of the connections closed before: it logs
    every WebSocket's end, then frees its slot as the connection's task ends, so a refusal
    in between is tried again (for 5 s at most)."""
    await proxy.wait_log(
        lambda text: text.count("WebSocket closed") >= text.count("WebSocket open")
    )
    deadline = time.monotonic() + 5
    while True:
        try:
            return await hold(proxy, echo, n)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(POLL)


async def refused_503(proxy: ProxyProcess) -> bool:
    reader, writer = await asyncio.open_connection(HOST, proxy.port)
    try:
        writer.write(b"GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n")
        head = await asyncio.wait_for(wsraw.read_head(reader), 10)
        return head.status == 503
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def close_all(conns: list[RawConnection], echo: WsUpstream) -> None:
    for conn in conns:
        await conn.close()
    for _ in conns:
        await echo.next_close()


async def test_max_connections(start_proxy: StartProxy, ws_echo: WsUpstream) -> None:
    proxy = await start_proxy("--max-connections", "3")
    conns = await hold(proxy, ws_echo, 3)
    assert await refused_503(proxy)
    await proxy.wait_log(lambda text: "over --max-connections 3" in text)
    await close_all(conns, ws_echo)
    conns = await hold_again(proxy, ws_echo, 3)  # every slot came back
    await close_all(conns, ws_echo)


async def test_max_connections_per_client(start_proxy: StartProxy, ws_echo: WsUpstream) -> None:
    proxy = await start_proxy("--max-connections-per-client", "2")
    conns = await hold(proxy, ws_echo, 2)
    assert await refused_503(proxy)
    await proxy.wait_log(lambda text: "over --max-connections-per-client 2" in text)
    await close_all(conns, ws_echo)
    # The count was released: two at once work again, and a third is refused again.
    for _ in range(2):
        conns = await hold_again(proxy, ws_echo, 2)
        assert await refused_503(proxy)
        await close_all(conns, ws_echo)
    await close_all(await hold_again(proxy, ws_echo, 1), ws_echo)  # released once more
    await still_works(proxy, ws_echo)
