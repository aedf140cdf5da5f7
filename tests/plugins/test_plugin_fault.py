"""The ``fault`` plugin through a real proxy: seeded drops, delays, cuts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.harness import WsUpstream, wait_until
from tests.plugins.conftest import PluginProxy, StartCli
from wsproxy.exceptions import ConfigError

Load = Callable[[str], Any]


def fault(load_plugin: Load, **values: Any) -> Any:
    plugin = load_plugin("fault")
    plugin.configure(SimpleNamespace(**values))
    return plugin


async def forwarded_upstream(
    port: int, ws_echo: WsUpstream, flows: int = 2, count: int = 40
) -> list[Any]:
    """Open ``flows`` WebSockets one after the other, send ``count`` numbered messages on
    each; return what the upstream got from each."""
    got = []
    ws_echo.echo = False
    for _ in range(flows):
        ws_echo.received.clear()
        async with connect(f"ws://127.0.0.1:{port}/", proxy=None) as ws:
            for i in range(count):
                await ws.send(str(i))
        await ws_echo.next_close(5)  # the upstream has seen every message and the close
        got.append([int(m) for m in ws_echo.received])
    return got


async def test_seeded_drops_repeat(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy
) -> None:
    runs = []
    for seed in (7, 7, 8):
        plugin = fault(load_plugin, fault_drop_rate=0.5, fault_seed=seed, fault_direction="client")
        proxy = await plugin_proxy(plugin)
        runs.append(await forwarded_upstream(proxy.port, ws_echo))
    first, again, other = runs
    assert first == again  # same seed, same traffic: the same messages dropped, flow by flow
    assert first[0] != first[1]  # each flow has its own sequence
    assert other != first
    for kept in first:
        assert 5 < len(kept) < 35 and kept == sorted(kept)


async def test_drop_all_and_none(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy
) -> None:
    proxy = await plugin_proxy(fault(load_plugin, fault_drop_rate=1.0, fault_direction="client"))
    assert await forwarded_upstream(proxy.port, ws_echo, flows=1, count=5) == [[]]
    plugin = fault(load_plugin, fault_drop_rate=0.0)
    assert plugin.message is None  # nothing to do: the chain does not reassemble messages


async def test_delay(load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy) -> None:
    proxy = await plugin_proxy(fault(load_plugin, fault_delay_ms=100))
    async with connect(f"ws://127.0.0.1:{proxy.port}/", proxy=None) as ws:
        start = time.monotonic()
        for text in ("a", "b"):
            await ws.send(text)
            assert await ws.recv() == text
        elapsed = time.monotonic() - start
    assert elapsed >= 0.4  # 2 round trips, each delayed both ways
    assert elapsed < 3


async def test_delay_one_direction(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy
) -> None:
    proxy = await plugin_proxy(fault(load_plugin, fault_delay_ms=150, fault_direction="server"))
    async with connect(f"ws://127.0.0.1:{proxy.port}/", proxy=None) as ws:
        start = time.monotonic()
        for text in ("a", "b", "c"):
            await ws.send(text)
        await wait_until(lambda: len(ws_echo.received) >= 3, 5, interval=0.005)
        assert time.monotonic() - start < 0.15  # the client's messages are not held
        assert [await ws.recv() for _ in range(3)] == ["a", "b", "c"]  # in order
        assert time.monotonic() - start >= 0.45


async def cut(port: int, messages: list[str]) -> tuple[list[Any], int, str]:
    """Send ``messages`` one by one, each after the echo of the last; what came back before
    the close, and the close code and reason."""
    answers = []
    async with connect(f"ws://127.0.0.1:{port}/", proxy=None) as ws:
        with pytest.raises(ConnectionClosed) as caught:
            for message in messages:
                await ws.send(message)
                answers.append(await asyncio.wait_for(ws.recv(), 5))
    assert caught.value.rcvd is not None
    return answers, caught.value.rcvd.code, caught.value.rcvd.reason


async def test_cut_after_messages(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy
) -> None:
    plugin = fault(load_plugin, fault_cut_after_messages=3, fault_direction="client")
    proxy = await plugin_proxy(plugin)
    answers, code, reason = await cut(proxy.port, [str(i) for i in range(6)])
    assert answers == ["0", "1", "2"]
    assert (code, reason) == (1011, "fault injected")
    assert ws_echo.received == ["0", "1", "2"]


async def test_cut_after_bytes(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy
) -> None:
    proxy = await plugin_proxy(fault(load_plugin, fault_cut_after_bytes=10))
    # both directions count: 4 bytes up and 4 back make 8; the next 4 up would make 12
    answers, code, _ = await cut(proxy.port, ["abcd", "efgh"])
    assert answers == ["abcd"] and ws_echo.received == ["abcd"]
    assert code == 1011


async def test_cut_abort_drops_tcp(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy
) -> None:
    plugin = fault(load_plugin, fault_cut_after_messages=2, fault_cut_abort=True)
    proxy = await plugin_proxy(plugin)
    answers = []
    async with connect(f"ws://127.0.0.1:{proxy.port}/", proxy=None) as ws:
        with pytest.raises(ConnectionClosed) as caught:
            for message in ["a", "b", "c"]:
                await ws.send(message)
                answers.append(await asyncio.wait_for(ws.recv(), 5))
    assert answers == ["a"]  # "a" and its echo make two messages; "b" is cut
    assert caught.value.rcvd is None  # no close frame: the TCP connection was cut


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"fault_drop_rate": 1.5}, "fault_drop_rate=1.5: a share, from 0 to 1"),
        ({"fault_delay_ms": -1}, "0 (off) or more"),
        ({"fault_cut_after_bytes": -1}, "0 (off) or more"),
        ({"fault_direction": "up"}, "fault_direction='up'"),
    ],
)
def test_invalid_options(load_plugin: Load, values: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        fault(load_plugin, **values)
    assert problem in str(caught.value)


async def test_through_the_cli(start_cli: StartCli, ws_echo: WsUpstream) -> None:
    cli = await start_cli(
        "-q",
        "-s",
        "fault",
        "--set",
        "fault_cut_after_messages=2",
        "--set",
        "fault_direction=client",
    )
    answers, code, reason = await cut(cli.port, ["a", "b", "c"])
    assert answers == ["a", "b"] and (code, reason) == (1011, "fault injected")
