"""The ``-v`` log decodes messages through a real ``python -m wsproxy -v``: a summary in place
of the raw preview, cut at ``--preview-length``, chosen by URL, subprotocol or sniffing, whole
messages from fragments, and ``--no-decode`` for the raw previews."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect

from tests.harness import StartProxy, StartWsEcho, WsUpstream


async def echo_through(proxy_url: str, url: str, *messages: str | bytes, **kw: object) -> None:
    async with connect(url, proxy=proxy_url, compression=None, **kw) as ws:  # type: ignore[arg-type]
        for message in messages:
            await ws.send(message)
            assert await ws.recv() == message


def lines(log: str, needle: str) -> list[str]:
    return [line for line in log.splitlines() if needle in line]


async def test_socketio_by_url(start_proxy: StartProxy, ws_echo: WsUpstream) -> None:
    proxy = await start_proxy()
    await echo_through(
        proxy.url, f"{ws_echo.url}/socket.io/?EIO=4&transport=websocket", '42["chat","hi",{"a":1}]'
    )
    log = await proxy.wait_log(lambda t: "WebSocket closed" in t)
    (line,) = lines(log, "client -> server TEXT")
    assert line.endswith('TEXT F len=23 socket.io EVENT "chat" ["hi", {…}]'), line
    (line,) = lines(log, "server -> client TEXT")
    assert line.endswith('socket.io EVENT "chat" ["hi", {…}]'), line


async def test_graphql_by_subprotocol_cut_at_preview_length(
    start_proxy: StartProxy, start_ws_echo: StartWsEcho
) -> None:
    ws_echo = await start_ws_echo(subprotocols=["graphql-transport-ws"])
    proxy = await start_proxy("--preview-length", "20")
    message = '{"id":"3","type":"next","payload":{"data":{"x":1}}}'
    await echo_through(
        proxy.url, f"{ws_echo.url}/graphql", message, subprotocols=["graphql-transport-ws"]
    )
    log = await proxy.wait_log(lambda t: "WebSocket closed" in t)
    (line,) = lines(log, "client -> server TEXT")
    assert line.endswith(f'len={len(message)} graphql next id=3 {{"…'), line


async def test_sniffed_jsonrpc_and_fragmented_message(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy()
    async with connect(f"{ws_echo.url}/rpc", proxy=proxy.url, compression=None) as ws:
        await ws.send('{"jsonrpc":"2.0","method":"sum","params":[1,2],"id":1}')
        await ws.recv()
        await ws.send(['{"jsonrpc":"2.0",', '"method":"tick"}'])
        await ws.recv()
    log = await proxy.wait_log(lambda t: "WebSocket closed" in t)
    client = lines(log, "client -> server")
    assert client[0].endswith('jsonrpc request "sum" id=1 [1, 2]'), client
    # The fragments show raw, the final one (websockets ends with an empty frame) the whole
    # message decoded.
    assert client[1].endswith("""TEXT - len=17 '{"jsonrpc":"2.0",'"""), client
    assert client[2].endswith("""CONTINUATION - len=16 '"method":"tick"}'"""), client
    assert client[3].endswith('CONTINUATION F len=0 jsonrpc notification "tick"'), client


async def test_binary_attachments_joined(start_proxy: StartProxy, ws_echo: WsUpstream) -> None:
    proxy = await start_proxy("--preview-length", "100")
    await echo_through(
        proxy.url,
        f"{ws_echo.url}/socket.io/?EIO=4&transport=websocket",
        '451-["up",{"_placeholder":true,"num":0}]',
        b"\x01\x02\x03",
    )
    log = await proxy.wait_log(lambda t: "WebSocket closed" in t)
    client = lines(log, "client -> server")
    assert client[0].endswith('socket.io BINARY_EVENT "up" [{…}] +1 attachment'), client
    assert client[1].endswith(
        'BINARY F len=3 socket.io BINARY_EVENT "up" [<3 B>] (joined: 1 attachment)'
    ), client


@pytest.mark.parametrize("flag", ["--no-decode", None])
async def test_no_decode_and_undecodable(
    start_proxy: StartProxy, ws_echo: WsUpstream, flag: str | None
) -> None:
    proxy = await start_proxy(*([flag] if flag else []))
    await echo_through(proxy.url, f"{ws_echo.url}/p", '{"a":1}' if flag else "plain words")
    log = await proxy.wait_log(lambda t: "WebSocket closed" in t)
    (line,) = lines(log, "client -> server TEXT")
    assert line.endswith("""'{"a":1}'""" if flag else "'plain words'"), line
