"""WebSocket traffic through a real proxy process: every client path, payload size and close."""

from __future__ import annotations

import asyncio
import base64
import os

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.harness import (
    HOST,
    AioServer,
    Proxy,
    ProxyProcess,
    RawClient,
    RawServer,
    RawServerFactory,
    StartProxy,
    StartWsEcho,
    WsUpstream,
    aiohttp_ws_via,
)
from tests.integration import wsraw
from tests.integration.wsraw import OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawConnection

pytestmark = pytest.mark.timeout(60)

SIZES = [0, 1, 125, 126, 65535, 65536, 16 * 1024 * 1024]


def text_of(size: int) -> str:
    """``size`` bytes of ASCII text that do not compress to nothing."""
    return base64.b64encode(os.urandom(size))[:size].decode()


def payloads() -> list[str | bytes]:
    out: list[str | bytes] = []
    for size in SIZES:
        out.append(os.urandom(size))
        out.append(text_of(size))
    return out


def ws_client(url: str, proxy: str | None, *, compression: str | None = "deflate") -> connect:
    return connect(
        url,
        proxy=proxy,
        max_size=None,
        compression=compression,
        open_timeout=10,
        close_timeout=10,
        ping_interval=None,
    )


def extensions_of(ws: ClientConnection) -> str:
    assert ws.response is not None
    return ws.response.headers.get("Sec-WebSocket-Extensions", "")


# -- payloads, over CONNECT (websockets) and absolute-form (aiohttp) ---------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_connect_path_echoes_every_size(
    proxy: Proxy, ws_echo: WsUpstream, compression: str | None
) -> None:
    async with ws_client(f"{ws_echo.url}/echo", proxy.url, compression=compression) as ws:
        if compression:
            assert "permessage-deflate" in extensions_of(ws)
        else:
            assert extensions_of(ws) == ""
        for payload in payloads():
            await ws.send(payload)
            echoed = await asyncio.wait_for(ws.recv(), 30)
            assert type(echoed) is type(payload)
            assert echoed == payload, f"{type(payload).__name__} of {len(payload)} bytes"
    closed = await ws_echo.next_close()
    assert closed.code == 1000
    assert ws_echo.connections == 1
    # The proxy saw a CONNECT and then the upgrade inside the tunnel.
    log = await proxy.wait_log(lambda t: f"GET ws://{HOST}:{ws_echo.port}/echo" in t)
    assert f"CONNECT {HOST}:{ws_echo.port}" in log


@pytest.mark.parametrize("compress", [15, 0])
async def test_absolute_path_echoes_every_size(
    proxy: Proxy, aiohttp_server: AioServer, compress: int
) -> None:
    """aiohttp sends ``GET ws://host:port/path`` to an HTTP proxy (no CONNECT for ws://)."""
    async with (
        aiohttp.ClientSession() as session,
        aiohttp_ws_via(session, f"{aiohttp_server.ws_url}/ws", proxy.url, compress=compress) as ws,
    ):
        if compress:
            assert "permessage-deflate" in ws._response.headers.get("Sec-WebSocket-Extensions", "")
        else:
            assert "Sec-WebSocket-Extensions" not in ws._response.headers
        for payload in payloads():
            if isinstance(payload, str):
                await ws.send_str(payload)
                msg = await ws.receive(timeout=30)
                assert msg.type == aiohttp.WSMsgType.TEXT
            else:
                await ws.send_bytes(payload)
                msg = await ws.receive(timeout=30)
                assert msg.type == aiohttp.WSMsgType.BINARY
            assert msg.data == payload, f"{type(payload).__name__} of {len(payload)} bytes"
        await ws.close()
    closed = await aiohttp_server.next_close()
    assert closed.code == 1000
    log = await proxy.wait_log(lambda t: f"GET ws://{HOST}:{aiohttp_server.port}/ws" in t)
    assert "CONNECT" not in log


async def test_cross_clients_and_servers(
    proxy: Proxy, ws_echo: WsUpstream, aiohttp_server: AioServer
) -> None:
    """websockets client to the aiohttp server, aiohttp client to the websockets server."""
    async with ws_client(f"{aiohttp_server.ws_url}/ws", proxy.url) as ws:
        for payload in (b"x" * 70000, "hé ✓"):
            await ws.send(payload)
            assert await ws.recv() == payload
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{ws_echo.url}/echo", proxy=proxy.url, compress=15) as ws2,
    ):
        await ws2.send_str("hé ✓")
        assert await ws2.receive_str(timeout=10) == "hé ✓"
        await ws2.send_bytes(b"\x00" * 70000)
        assert await ws2.receive_bytes(timeout=10) == b"\x00" * 70000


@pytest.mark.parametrize("scheme", ["ws", "http"])
async def test_raw_absolute_form_upgrade(
    proxy: Proxy,
    ws_echo: WsUpstream,
    raw_client: RawClient,
    scheme: str,
) -> None:
    """``GET ws://host:port/path`` and ``GET http://host:port/path`` upgrades, byte by byte."""
    conn: RawConnection = await raw_client(proxy.port)
    key = wsraw.new_key()
    authority = f"{HOST}:{ws_echo.port}"
    conn.writer.write(wsraw.upgrade_request(f"{scheme}://{authority}/raw?x=1", authority, key=key))
    head = await asyncio.wait_for(wsraw.read_head(conn.reader), 10)
    assert head.status == 101
    assert head.get("Sec-WebSocket-Accept") == wsraw.accept_for(key)
    assert (head.get("Upgrade") or "").lower() == "websocket"
    conn.writer.write(wsraw.encode_frame(OP_TEXT, b"hello", mask=True))
    frame = await asyncio.wait_for(wsraw.read_frame(conn.reader), 10)
    assert (frame.opcode, frame.fin, frame.masked, frame.payload) == (
        OP_TEXT,
        True,
        False,
        b"hello",
    )
    conn.writer.write(wsraw.encode_frame(0x8, wsraw.close_payload(1000, "done"), mask=True))
    _, close = await asyncio.wait_for(wsraw.read_until_close(conn.reader), 10)
    assert close is not None
    assert (close.close_code, close.close_reason) == (1000, "done")
    # The proxy, as the server towards its client, closes the TCP connection first.
    assert await asyncio.wait_for(conn.reader.read(), 10) == b""
    closed = await ws_echo.next_close()
    assert (closed.path, closed.code, closed.reason) == ("/raw?x=1", 1000, "done")
    assert ws_echo.requests[0].headers["Host"] == authority


# -- fragments ---------------------------------------------------------------------------------


async def test_fragment_boundaries_client_to_server(
    proxy: Proxy, raw_server: RawServerFactory
) -> None:
    """A fragmented message from a websockets client reaches the upstream with the same
    frames as without the proxy: same opcodes, FIN bits and payload boundaries, re-masked."""
    seen: asyncio.Queue[list[wsraw.Frame]] = asyncio.Queue()

    async def upstream(conn: RawConnection) -> None:
        await wsraw.accept_upgrade(conn)
        frames, close = await wsraw.read_until_close(conn.reader)
        seen.put_nowait(frames)
        assert close is not None
        conn.writer.write(wsraw.encode_frame(0x8, close.payload))
        await conn.writer.drain()

    server: RawServer = await raw_server(upstream)
    got = []
    for via in (None, proxy.url):
        async with ws_client(f"{server.url}/frag", via, compression=None) as ws:
            await ws.send([b"ab", b"cde", b"", b"f" * 70000])
            await ws.send(["t1", "t2"])
        frames = await asyncio.wait_for(seen.get(), 10)
        got.append([(f.opcode, f.fin, f.masked, f.payload) for f in frames])
    direct, proxied = got
    assert proxied == direct
    # websockets sends each piece as a frame, then an empty final continuation frame.
    assert direct[:4] == [
        (OP_BINARY, False, True, b"ab"),
        (OP_CONT, False, True, b"cde"),
        (OP_CONT, False, True, b""),
        (OP_CONT, False, True, b"f" * 70000),
    ]
    assert [f[:2] for f in direct] == [
        (OP_BINARY, False),
        (OP_CONT, False),
        (OP_CONT, False),
        (OP_CONT, False),
        (OP_CONT, True),
        (OP_TEXT, False),
        (OP_CONT, False),
        (OP_CONT, True),
    ]


async def test_fragment_boundaries_server_to_client_with_interleaved_ping(
    proxy: Proxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """Fragments from the upstream reach the client unchanged, a ping between them stays
    between them, and the client's pong goes back to the upstream."""
    pong: asyncio.Future[wsraw.Frame] = asyncio.get_running_loop().create_future()

    async def upstream(conn: RawConnection) -> None:
        await wsraw.accept_upgrade(conn)
        conn.writer.write(wsraw.encode_frame(OP_TEXT, b"he", fin=False))
        conn.writer.write(wsraw.encode_frame(OP_PING, b"p1"))
        conn.writer.write(wsraw.encode_frame(OP_CONT, b"llo", fin=False))
        conn.writer.write(wsraw.encode_frame(OP_CONT, b"!", fin=True))
        frame = await wsraw.read_frame(conn.reader)
        pong.set_result(frame)
        _, close = await wsraw.read_until_close(conn.reader)
        assert close is not None
        conn.writer.write(wsraw.encode_frame(0x8, close.payload))

    server: RawServer = await raw_server(upstream)
    conn: RawConnection = await raw_client(proxy.port)
    authority = f"{HOST}:{server.port}"
    conn.writer.write(wsraw.upgrade_request(f"ws://{authority}/", authority))
    head = await asyncio.wait_for(wsraw.read_head(conn.reader), 10)
    assert head.status == 101
    frames = [await asyncio.wait_for(wsraw.read_frame(conn.reader), 10) for _ in range(4)]
    assert [(f.opcode, f.fin, f.masked, f.payload) for f in frames] == [
        (OP_TEXT, False, False, b"he"),
        (OP_PING, True, False, b"p1"),
        (OP_CONT, False, False, b"llo"),
        (OP_CONT, True, False, b"!"),
    ]
    conn.writer.write(wsraw.encode_frame(OP_PONG, b"p1", mask=True))
    got = await asyncio.wait_for(pong, 10)
    assert (got.opcode, got.payload, got.masked) == (OP_PONG, b"p1", True)
    conn.writer.write(wsraw.encode_frame(0x8, wsraw.close_payload(1000), mask=True))
    _, close = await asyncio.wait_for(wsraw.read_until_close(conn.reader), 10)
    assert close is not None and close.close_code == 1000


# -- ping / pong -------------------------------------------------------------------------------


async def test_ping_pong_connect_path(proxy: Proxy, ws_echo: WsUpstream) -> None:
    async with ws_client(f"{ws_echo.url}/echo", proxy.url) as ws:
        waiter = await ws.ping(b"are you there")
        await asyncio.wait_for(waiter, 10)  # resolved only by a pong with this payload
    await proxy.wait_log(
        lambda t: (
            "client -> server PING F len=13 'are you there'" in t
            and "server -> client PONG F len=13 'are you there'" in t
        )
    )


async def test_ping_pong_absolute_path(proxy: Proxy, aiohttp_server: AioServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{aiohttp_server.ws_url}/ws", proxy=proxy.url, autoping=False) as ws,
    ):
        await ws.ping(b"abc")
        msg = await ws.receive(timeout=10)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"abc")


# -- closing -----------------------------------------------------------------------------------


async def test_close_from_client(proxy: Proxy, ws_echo: WsUpstream) -> None:
    async with ws_client(f"{ws_echo.url}/echo", proxy.url) as ws:
        await ws.send("one")
        assert await ws.recv() == "one"
        await asyncio.wait_for(ws.close(1000, "done"), 10)
        assert ws.close_code == 1000
    closed = await ws_echo.next_close()
    assert (closed.code, closed.reason) == (1000, "done")


async def test_close_from_server_connect_path(proxy: Proxy, ws_echo: WsUpstream) -> None:
    async with ws_client(f"{ws_echo.url}/bye", proxy.url) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "bye")
    closed = await ws_echo.next_close()
    assert closed.code == 4000  # the client's answer, relayed back


async def test_close_from_server_absolute_path(proxy: Proxy, aiohttp_server: AioServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{aiohttp_server.ws_url}/ws/bye", proxy=proxy.url) as ws,
    ):
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert (msg.data, msg.extra) == (4000, "bye")
    assert ws.close_code == 4000


# -- reverse mode ------------------------------------------------------------------------------


async def test_reverse_mode(start_proxy: StartProxy, ws_echo: WsUpstream) -> None:
    proxy: ProxyProcess = await start_proxy("--mode", f"reverse:ws://{HOST}:{ws_echo.port}")
    async with ws_client(f"ws://{HOST}:{proxy.port}/chat/room?id=7", None) as ws:
        assert "permessage-deflate" in extensions_of(ws)
        for payload in (b"", "hi", os.urandom(100_000)):
            await ws.send(payload)
            assert await ws.recv() == payload
    closed = await ws_echo.next_close()
    assert (closed.path, closed.code) == ("/chat/room?id=7", 1000)
    assert ws_echo.requests[0].headers["Host"] == f"{HOST}:{ws_echo.port}"
    await proxy.wait_log(lambda text: "reverse:ws://" in text)


async def test_reverse_mode_aiohttp_client(
    start_proxy: StartProxy, aiohttp_server: AioServer
) -> None:
    proxy: ProxyProcess = await start_proxy("--mode", f"reverse:ws://{HOST}:{aiohttp_server.port}")
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://{HOST}:{proxy.port}/ws", compress=15) as ws,
    ):
        await ws.send_str("reverse")
        assert await ws.receive_str(timeout=10) == "reverse"


# -- compression off at the proxy ------------------------------------------------------------


async def test_no_compression_flag_strips_the_offer(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy: ProxyProcess = await start_proxy("--no-compression")
    async with ws_client(f"{ws_echo.url}/echo", proxy.url) as ws:
        assert extensions_of(ws) == ""
        await ws.send("plain")
        assert await ws.recv() == "plain"
    assert "Sec-WebSocket-Extensions" not in ws_echo.requests[0].headers
    assert "'plain'" in proxy.stderr()  # frames are readable in the log


# -- subprotocols and idle timeout -------------------------------------------------------------


async def test_subprotocol_negotiated_end_to_end(proxy: Proxy, start_ws_echo: StartWsEcho) -> None:
    async def handler(ws: ServerConnection, up: WsUpstream) -> None:
        await ws.send(ws.subprotocol or "none")
        await ws.wait_closed()

    up = await start_ws_echo(handler, subprotocols=[Subprotocol("chat.v2")])
    async with connect(
        f"{up.url}/",
        proxy=proxy.url,
        subprotocols=[Subprotocol("chat.v1"), Subprotocol("chat.v2")],
    ) as ws:
        assert ws.subprotocol == "chat.v2"
        assert await ws.recv() == "chat.v2"
    assert up.subprotocols == ["chat.v2"]


async def test_idle_timeout_closes_both_sides_with_1001(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--idle-timeout", "1")
    async with ws_client(f"{ws_echo.url}/echo", proxy.url) as ws:
        await ws.send("wake")
        assert await ws.recv() == "wake"
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert (await ws_echo.next_close()).code == 1001
