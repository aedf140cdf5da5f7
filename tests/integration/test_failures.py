"""Peers that break the protocol or vanish: each side gets the close code SEED-NOTES section 4
asks for, and nobody is left hanging."""

from __future__ import annotations

import asyncio
import os

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.harness import (
    HOST,
    Proxy,
    RawClient,
    RawServerFactory,
    StartProxy,
    WsUpstream,
)
from tests.integration import wsraw
from tests.integration.wsraw import OP_BINARY, OP_CLOSE, OP_TEXT, RawConnection

pytestmark = pytest.mark.timeout(60)


async def raw_ws_via_proxy(
    raw_client: RawClient, proxy: Proxy, port: int, path: str = "/"
) -> RawConnection:
    """A raw client connection with a completed upgrade through the proxy (absolute form)."""
    conn: RawConnection = await raw_client(proxy.port)
    authority = f"{HOST}:{port}"
    key = wsraw.new_key()
    conn.writer.write(wsraw.upgrade_request(f"ws://{authority}{path}", authority, key=key))
    head = await asyncio.wait_for(wsraw.read_head(conn.reader), 10)
    assert head.status == 101, head
    assert head.get("Sec-WebSocket-Accept") == wsraw.accept_for(key)
    return conn


def client(url: str, proxy: Proxy, **kwargs: object) -> connect:
    return connect(
        url,
        proxy=proxy.url,
        max_size=None,
        open_timeout=10,
        close_timeout=10,
        ping_interval=None,
        **kwargs,  # type: ignore[arg-type]
    )


# -- the client breaks the protocol -----------------------------------------------------------


async def test_unmasked_client_frame(
    proxy: Proxy, ws_echo: WsUpstream, raw_client: RawClient
) -> None:
    """The client gets 1002 (after the upstream finished its close), the upstream 1001."""
    conn = await raw_ws_via_proxy(raw_client, proxy, ws_echo.port, "/echo")
    conn.writer.write(wsraw.encode_frame(OP_TEXT, b"first", mask=True))
    echoed = await asyncio.wait_for(wsraw.read_frame(conn.reader), 10)
    assert echoed.payload == b"first"
    conn.writer.write(wsraw.encode_frame(OP_TEXT, b"unmasked", mask=False))
    frames, close = await asyncio.wait_for(wsraw.read_until_close(conn.reader), 10)
    assert frames == []
    assert close is not None, "the client got no close frame"
    assert close.close_code == 1002
    assert not close.masked
    closed = await ws_echo.next_close()
    assert closed.code == 1001
    # The proxy then closes the TCP connection.
    assert await asyncio.wait_for(conn.reader.read(), 10) == b""
    await proxy.wait_log(lambda text: "1002" in text)


async def test_client_vanishes(proxy: Proxy, ws_echo: WsUpstream, raw_client: RawClient) -> None:
    """The client's TCP connection ends without a close frame: the upstream gets 1001."""
    conn = await raw_ws_via_proxy(raw_client, proxy, ws_echo.port, "/echo")
    conn.writer.write(wsraw.encode_frame(OP_BINARY, b"\x01\x02", mask=True))
    assert (await asyncio.wait_for(wsraw.read_frame(conn.reader), 10)).payload == b"\x01\x02"
    await conn.close()
    closed = await ws_echo.next_close()
    assert closed.code == 1001


async def test_client_vanishes_by_reset(
    proxy: Proxy, ws_echo: WsUpstream, raw_client: RawClient
) -> None:
    conn = await raw_ws_via_proxy(raw_client, proxy, ws_echo.port, "/echo")
    conn.writer.transport.abort()  # RST when nothing is unread
    closed = await ws_echo.next_close()
    assert closed.code == 1001


async def test_client_message_over_the_limit(start_proxy: StartProxy, ws_echo: WsUpstream) -> None:
    proxy = await start_proxy("--max-message-size", "1KiB")
    async with client(f"{ws_echo.url}/echo", proxy) as ws:
        await ws.send(b"x" * 1024)  # at the limit: fine
        assert await ws.recv() == b"x" * 1024
        await ws.send(os.urandom(2000))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009
    assert (await ws_echo.next_close()).code == 1001


async def test_compressed_client_message_over_the_limit_once_inflated(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    """The limit counts decompressed bytes: 4000 bytes of "a" deflate to a few bytes."""
    proxy = await start_proxy("--max-message-size", "1KiB")
    async with client(f"{ws_echo.url}/echo", proxy, compression="deflate") as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
        await ws.send("a" * 4000)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    assert (await ws_echo.next_close()).code == 1001


async def test_fragmented_client_message_over_the_limit(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--max-message-size", "1KiB")
    async with client(f"{ws_echo.url}/echo", proxy, compression=None) as ws:
        await ws.send([b"y" * 600, b"y" * 600])
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    assert (await ws_echo.next_close()).code == 1001


async def test_server_message_over_the_limit(start_proxy: StartProxy, ws_echo: WsUpstream) -> None:
    """The upstream breaks the limit: it gets 1009, the client 1014."""
    proxy = await start_proxy("--max-message-size", "1KiB")
    async with client(f"{ws_echo.url}/send?n=2000", proxy) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1014
    assert (await ws_echo.next_close()).code == 1009


# -- the upstream breaks the protocol ---------------------------------------------------------


async def _upstream_sends(
    proxy: Proxy, raw_server: RawServerFactory, bad_frame: bytes
) -> tuple[int, wsraw.Frame | None]:
    """A raw upstream sends ``bad_frame`` after the upgrade: the close code the client got
    and the close frame the upstream got."""
    upstream_close: asyncio.Future[wsraw.Frame | None] = asyncio.get_running_loop().create_future()

    async def upstream(conn: RawConnection) -> None:
        await wsraw.accept_upgrade(conn)
        conn.writer.write(bad_frame)
        _, close = await wsraw.read_until_close(conn.reader)
        upstream_close.set_result(close)
        await conn.reader.read()

    server = await raw_server(upstream)
    async with client(f"{server.url}/", proxy) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None
    return info.value.rcvd.code, await asyncio.wait_for(upstream_close, 10)


async def test_masked_server_frame(proxy: Proxy, raw_server: RawServerFactory) -> None:
    """A masked frame from the upstream: the client gets 1014, the upstream 1002."""
    bad = wsraw.encode_frame(OP_TEXT, b"masked!", mask=True)
    code, close = await _upstream_sends(proxy, raw_server, bad)
    assert code == 1014
    assert close is not None, "the upstream got no close frame"
    assert close.close_code == 1002
    assert close.masked  # the proxy is the client towards the upstream


async def test_reserved_opcode_from_server(proxy: Proxy, raw_server: RawServerFactory) -> None:
    code, close = await _upstream_sends(proxy, raw_server, wsraw.encode_frame(0x3, b"?"))
    assert code == 1014
    assert close is not None and close.close_code == 1002


async def test_upstream_dies_mid_small_message(proxy: Proxy, raw_server: RawServerFactory) -> None:
    """Header of a 1000-byte frame, 10 bytes, then TCP close. Frames up to STREAM_THRESHOLD
    (64 KiB) are held until whole, so nothing of it reached the client, which gets a clean
    close 1014."""

    async def upstream(conn: RawConnection) -> None:
        await wsraw.accept_upgrade(conn)
        conn.writer.write(wsraw.encode_frame(OP_BINARY, b"z" * 10, length=1000))
        await conn.writer.drain()
        conn.writer.close()

    server = await raw_server(upstream)
    async with client(f"{server.url}/", proxy) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None, "the client connection was aborted"
    assert info.value.rcvd.code == 1014


async def test_upstream_dies_mid_large_frame(
    proxy: Proxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """Header of a 1 MiB frame, 100 KiB of it, then TCP close. A frame over 64 KiB streams
    through, so the client already has a half-sent frame: no close frame fits, the proxy cuts
    the client connection (it sees EOF, no close frame)."""

    async def upstream(conn: RawConnection) -> None:
        await wsraw.accept_upgrade(conn)
        conn.writer.write(wsraw.encode_frame(OP_BINARY, b"z" * 100_000, length=1 << 20))
        await conn.writer.drain()
        conn.writer.close()

    server = await raw_server(upstream)
    conn = await raw_ws_via_proxy(raw_client, proxy, server.port)
    received = b""
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        while True:
            chunk = await asyncio.wait_for(conn.reader.read(65536), 10)
            if not chunk:
                raise asyncio.IncompleteReadError(received, None)
            received += chunk
    # What arrived: the header announcing 1 MiB and part of the payload, nothing after it.
    assert received[:2] == bytes([0x80 | OP_BINARY, 127])
    assert int.from_bytes(received[2:10], "big") == 1 << 20
    assert 0 < len(received) - 10 <= 100_000
    assert set(received[10:]) == {ord("z")}
    await proxy.wait_log(lambda text: "half-sent" in text)


async def test_upstream_dies_mid_large_frame_websockets_client(
    proxy: Proxy, raw_server: RawServerFactory
) -> None:
    async def upstream(conn: RawConnection) -> None:
        await wsraw.accept_upgrade(conn)
        conn.writer.write(wsraw.encode_frame(OP_BINARY, b"z" * 100_000, length=1 << 20))
        await conn.writer.drain()
        conn.writer.close()

    server = await raw_server(upstream)
    async with client(f"{server.url}/", proxy) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is None  # aborted: no close frame (1006)


async def test_upstream_vanishes_between_messages(
    proxy: Proxy, raw_server: RawServerFactory
) -> None:
    async def upstream(conn: RawConnection) -> None:
        await wsraw.accept_upgrade(conn)
        conn.writer.write(wsraw.encode_frame(OP_TEXT, b"last words"))
        await conn.writer.drain()
        conn.writer.close()

    server = await raw_server(upstream)
    async with client(f"{server.url}/", proxy) as ws:
        assert await asyncio.wait_for(ws.recv(), 10) == "last words"
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1014


async def test_upstream_close_answer_never_comes(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """The client closes; the upstream never answers: after --close-timeout the client still
    gets a close frame and both TCP connections end."""
    proxy = await start_proxy("--close-timeout", "1")
    got_close = asyncio.Event()

    async def upstream(conn: RawConnection) -> None:
        await wsraw.accept_upgrade(conn)
        _, close = await wsraw.read_until_close(conn.reader)
        assert close is not None and close.close_code == 1000
        got_close.set()
        await conn.reader.read()  # never answers, waits for the proxy to hang up

    server = await raw_server(upstream)
    conn = await raw_ws_via_proxy(raw_client, proxy, server.port)
    conn.writer.write(wsraw.encode_frame(OP_CLOSE, wsraw.close_payload(1000, "bye"), mask=True))
    await asyncio.wait_for(got_close.wait(), 10)
    _, close = await asyncio.wait_for(wsraw.read_until_close(conn.reader), 10)
    assert close is not None, "the client got no close frame"
    assert await asyncio.wait_for(conn.reader.read(), 10) == b""
