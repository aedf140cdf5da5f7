"""The ``block`` plugin through a real proxy: refused handshakes, dropped and closing messages."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.harness import WsUpstream
from tests.plugins.conftest import PluginProxy, StartCli
from wsproxy.exceptions import ConfigError
from wsproxy.plugins import PluginChain

Load = Callable[[str], Any]


def block(load_plugin: Load, **values: Any) -> Any:
    plugin = load_plugin("block")
    plugin.configure(SimpleNamespace(**values))  # unset options take their defaults
    return plugin


async def refused_status(url: str, **kwargs: Any) -> int | None:
    """The HTTP status the client got instead of 101, or None when it was let through."""
    try:
        async with connect(url, **kwargs) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
    except InvalidStatus as error:
        return error.response.status_code
    return None


async def test_hosts_in_regular_mode(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy
) -> None:
    plugin = block(load_plugin, block_hosts=[r"^localhost$", "example"])
    proxy = await plugin_proxy(plugin, reverse=False)
    via = f"http://127.0.0.1:{proxy.port}"
    assert await refused_status(f"ws://localhost:{ws_echo.port}/a", proxy=via) == 403
    assert await refused_status(f"ws://127.0.0.1:{ws_echo.port}/b", proxy=via) is None
    assert ws_echo.paths == ["/b"]  # the refused one never reached the upstream


async def test_paths_with_a_status(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy
) -> None:
    plugin = block(load_plugin, block_paths="^/admin", block_status=451)  # a single string
    proxy = await plugin_proxy(plugin)
    assert await refused_status(f"ws://127.0.0.1:{proxy.port}/admin?x", proxy=None) == 451
    assert await refused_status(f"ws://127.0.0.1:{proxy.port}/user/admin", proxy=None) is None
    assert ws_echo.paths == ["/user/admin"]


async def test_origins(load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy) -> None:
    plugin = block(load_plugin, block_origins=[r"^https?://evil\."])
    proxy = await plugin_proxy(plugin)
    url = f"ws://127.0.0.1:{proxy.port}/"
    assert await refused_status(url, proxy=None, origin="https://evil.example") == 403
    assert await refused_status(url, proxy=None, origin="https://good.example") is None
    assert await refused_status(url, proxy=None) is None  # no Origin: nothing to match
    assert len(ws_echo.paths) == 2


async def test_handshake_only_leaves_messages_unhooked(load_plugin: Load) -> None:
    chain = PluginChain([block(load_plugin, block_hosts=["x"])])
    assert chain.has("handshake_request") and not chain.wants_messages
    chain = PluginChain([block(load_plugin, block_messages=["x"])])
    assert chain.wants_messages


async def test_drop_matching_messages(
    load_plugin: Load,
    ws_echo: WsUpstream,
    plugin_proxy: PluginProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wsproxy")
    plugin = block(load_plugin, block_messages=["secret", r"\x00\xff"])
    proxy = await plugin_proxy(plugin)
    async with connect(f"ws://127.0.0.1:{proxy.port}/", proxy=None) as ws:
        for message in ("one", "top secret", b"a\x00\xffb", "two", b"\x00"):
            await ws.send(message)
        assert [await ws.recv() for _ in range(3)] == ["one", "two", b"\x00"]
    assert ws_echo.received == ["one", "two", b"\x00"]
    assert caplog.messages.count("[c1] client: message dropped by block") == 2


async def test_close_on_a_client_message(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy
) -> None:
    plugin = block(load_plugin, block_messages=["rm -rf"], block_action="close")
    proxy = await plugin_proxy(plugin)
    async with connect(f"ws://127.0.0.1:{proxy.port}/", proxy=None) as ws:
        await ws.send("ls")
        assert await ws.recv() == "ls"
        await ws.send("rm -rf /")
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), 5)
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (1008, "blocked by policy")
    assert ws_echo.received == ["ls"]  # the offending message was not forwarded


async def test_close_on_a_server_message_with_a_code(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy
) -> None:
    plugin = block(
        load_plugin,
        block_messages=["forbidden"],
        block_direction="server",
        block_action="close",
        block_close_code=4000,
        block_close_reason="no echoes of that",
    )
    proxy = await plugin_proxy(plugin)
    async with connect(f"ws://127.0.0.1:{proxy.port}/", proxy=None) as ws:
        await ws.send("forbidden")  # the client may send it; the echo is blocked
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), 5)
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4000, "no echoes of that")
    assert ws_echo.received == ["forbidden"]


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"block_hosts": ["("]}, "block_hosts='(': invalid regex"),
        ({"block_messages": "[a-"}, "block_messages='[a-': invalid regex"),
        ({"block_status": 200}, "block_status=200"),
        ({"block_action": "reject"}, "block_action='reject': drop or close"),
        ({"block_direction": "up"}, "block_direction='up'"),
        ({"block_close_code": 1006}, "block_close_code=1006: not a code to send"),
        ({"block_close_reason": "x" * 124}, "at most 123 bytes"),
        ({"block_events": "("}, "block_events='(': invalid regex"),
    ],
)
def test_invalid_options(load_plugin: Load, values: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        block(load_plugin, **values)
    assert problem in str(caught.value)


async def test_through_the_cli(start_cli: StartCli, ws_echo: WsUpstream) -> None:
    cli = await start_cli(
        "-q",
        "-s",
        "block",
        *("--set", "block_paths=^/admin", "--set", "block_paths=^/secret"),  # a list option
        *("--set", "block_messages=DROP TABLE", "--set", "block_action=close"),
    )
    url = f"ws://127.0.0.1:{cli.port}"
    assert await refused_status(f"{url}/admin", proxy=None) == 403
    assert await refused_status(f"{url}/secret", proxy=None) == 403
    async with connect(f"{url}/ok", proxy=None) as ws:
        await ws.send("DROP TABLE users")
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), 5)
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1008
    assert ws_echo.paths == ["/ok"] and ws_echo.received == []


async def test_decoded_events_and_operations(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy
) -> None:
    """A Socket.IO event by name (its binary attachments with it), a JSON-RPC method (its
    answer too, were it to come)."""
    plugin = block(load_plugin, block_events=["^secret$"], block_operations=["^drop_me$"])
    proxy = await plugin_proxy(plugin)
    path = "/socket.io/?EIO=4&transport=websocket"
    async with connect(f"ws://127.0.0.1:{proxy.port}{path}", proxy=None) as ws:
        for message in ('42["secret",1]', '451-["secret",{"_placeholder":true,"num":0}]',
                        b"\x01", '42["open",1]', b"\x02"):  # fmt: skip
            await ws.send(message)
        assert [await ws.recv() for _ in range(2)] == ['42["open",1]', b"\x02"]
    assert ws_echo.received == ['42["open",1]', b"\x02"]
    async with connect(f"ws://127.0.0.1:{proxy.port}/rpc", proxy=None) as ws:
        await ws.send('{"jsonrpc":"2.0","method":"drop_me","id":1}')
        await ws.send('{"jsonrpc":"2.0","method":"keep","id":2}')
        assert json.loads(await ws.recv())["method"] == "keep"
