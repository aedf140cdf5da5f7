"""What the ``-v`` log says, through a real ``python -m wsproxy -v``: frame previews of
``--preview-length`` characters, the negotiated subprotocol and extensions on the open line,
the message counts on the close line, and IPv6 addresses in brackets wherever a host and a
port are written together."""

from __future__ import annotations

import asyncio
import re

import pytest
from websockets.asyncio.client import connect

from tests.harness import StartProxy, StartWsEcho, WsUpstream, free_port

UPGRADE = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


async def echo_through(proxy_url: str, url: str, *messages: str, **kwargs: object) -> None:
    async with connect(url, proxy=proxy_url, **kwargs) as ws:  # type: ignore[arg-type]
        for message in messages:
            await ws.send(message)
            assert await ws.recv() == message


LONG = "mark-" + "x" * 95  # 100 characters: beyond the relay's usual 64-byte preview


@pytest.mark.parametrize(
    ("length", "text", "shown"),
    [
        ("10", "mark-56789abcdef", " 'mark-56789…'"),
        ("100", LONG, f" {LONG!r}"),
        ("0", LONG, ""),
    ],
)
async def test_preview_length(
    start_proxy: StartProxy, ws_echo: WsUpstream, length: str, text: str, shown: str
) -> None:
    proxy = await start_proxy("--preview-length", length)
    await echo_through(proxy.url, f"{ws_echo.url}/p", text, compression=None)
    log = await proxy.wait_log(lambda t: "WebSocket closed" in t)
    (line,) = [line for line in log.splitlines() if "client -> server TEXT" in line]
    assert line.endswith(f"TEXT F len={len(text)}{shown}"), line


async def test_preview_length_of_multibyte_text(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    """40 characters of three-byte text are 120 bytes: all 40 show, then the cut."""
    proxy = await start_proxy()
    text = "€" * 50
    await echo_through(proxy.url, f"{ws_echo.url}/e", text, compression=None)
    log = await proxy.wait_log(lambda t: "WebSocket closed" in t)
    (line,) = [line for line in log.splitlines() if "client -> server TEXT" in line]
    assert line.endswith(repr("€" * 40 + "…")), line


async def test_preview_length_must_be_a_count(start_proxy: StartProxy) -> None:
    proxy = await start_proxy("--preview-length", "-1", ready=False)
    proxy.expect_exit()
    assert await proxy.wait_exit(30) == 2
    assert "--preview-length: not a count: '-1' (must be 0 or more)" in proxy.stderr()


async def test_open_line_names_subprotocol_and_extensions(
    start_proxy: StartProxy, start_ws_echo: StartWsEcho
) -> None:
    up = await start_ws_echo(subprotocols=["graphql-transport-ws"])
    proxy = await start_proxy()
    await echo_through(proxy.url, f"{up.url}/g", "hi", subprotocols=["graphql-transport-ws"])
    log = await proxy.wait_log(lambda t: "WebSocket closed" in t)
    (line,) = [line for line in log.splitlines() if "WebSocket open" in line]
    assert re.search(
        r"WebSocket open 127\.0\.0\.1:\d+/g subprotocol=graphql-transport-ws "
        r"extensions=permessage-deflate(; [a-z_]+(=\d+)?)*$",
        line,
    ), line


async def test_open_line_without_negotiation_says_nothing_more(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy()
    await echo_through(proxy.url, f"{ws_echo.url}/plain", "hi", compression=None)
    log = await proxy.wait_log(lambda t: "WebSocket closed" in t)
    (line,) = [line for line in log.splitlines() if "WebSocket open" in line]
    assert line.endswith(f"WebSocket open 127.0.0.1:{ws_echo.port}/plain"), line


async def test_a_credential_in_the_subprotocol_is_not_logged(
    start_proxy: StartProxy, start_ws_echo: StartWsEcho
) -> None:
    token = "access_token.eyJhbGciOiJIUzI1NiJ9"
    up = await start_ws_echo(subprotocols=[token])
    proxy = await start_proxy()
    await echo_through(proxy.url, f"{up.url}/t", "hi", subprotocols=[token], compression=None)
    log = await proxy.wait_log(lambda t: "WebSocket closed" in t)
    assert token not in log
    assert f"subprotocol=<hidden, {len(token)} characters>" in log


async def test_close_line_counts_each_direction(
    start_proxy: StartProxy, start_ws_echo: StartWsEcho
) -> None:
    async def three_for_two(ws, up):  # type: ignore[no-untyped-def]
        async for message in ws:
            await ws.send(message)
            if message == "b":
                await ws.send("extra")

    up = await start_ws_echo(three_for_two)
    proxy = await start_proxy()
    async with connect(f"{up.url}/c", proxy=proxy.url) as ws:
        await ws.send("a")
        assert await ws.recv() == "a"
        await ws.send("b")
        assert [await ws.recv(), await ws.recv()] == ["b", "extra"]
    log = await proxy.wait_log(lambda t: "WebSocket closed" in t)
    assert (
        "WebSocket closed: client close 1000, server close 1000; "
        "data messages: 2 from the client, 3 from the server"
    ) in log


async def test_ipv6_addresses_are_bracketed(
    start_proxy: StartProxy, start_ws_echo: StartWsEcho
) -> None:
    up = await start_ws_echo(host="::1")
    proxy = await start_proxy(host="::1")
    await echo_through(proxy.url, f"{up.url}/six", "hi")  # websockets sends CONNECT
    closed = free_port()
    with pytest.raises(Exception, match="502"):
        await echo_through(proxy.url, f"ws://[::1]:{closed}/none", "hi")
    log = await proxy.wait_log(lambda t: "WebSocket closed" in t and f":{closed}" in t)
    assert f"wsproxy listening on [::1]:{proxy.port} (regular mode)" in log
    assert f"::1 CONNECT [::1]:{up.port}" in log
    assert f"WebSocket open [::1]:{up.port}/six" in log
    assert f"cannot connect to [::1]:{closed}" in log
    assert not re.search(r"(?<!\[)::1:\d", log), log


async def test_ipv6_reverse_mode_names_its_upstream_bracketed(
    start_proxy: StartProxy, start_ws_echo: StartWsEcho
) -> None:
    up = await start_ws_echo(host="::1")
    proxy = await start_proxy("--mode", f"reverse:ws://[::1]:{up.port}")
    log = await proxy.wait_log(lambda t: "wsproxy listening" in t)
    assert f"(reverse:ws://[::1]:{up.port} mode)" in log


async def test_ipv6_loop_to_the_proxy_itself_is_a_508(start_proxy: StartProxy) -> None:
    """A CONNECT to the proxy's own IPv6 address: 508, named in brackets (IPv6 socket names
    have four fields; the loop check once failed on them with an internal error)."""
    proxy = await start_proxy(host="::1")
    reader, writer = await asyncio.open_connection("::1", proxy.port)
    own = f"[::1]:{proxy.port}"
    writer.write(f"GET ws://{own}/ HTTP/1.1\r\nHost: {own}\r\n{UPGRADE}\r\n".encode())
    try:
        status = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    assert status.startswith(b"HTTP/1.1 508 "), status
    log = await proxy.wait_log(lambda t: "loop detected" in t)
    assert f"loop detected: {own} is this proxy's own listening address" in log
    assert "internal error" not in log
