"""--metrics-port: a real proxy process scraped over HTTP while traffic goes through it."""

from __future__ import annotations

import asyncio
import re
import socket

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.harness import (
    HOST,
    ProxyProcess,
    RawServerFactory,
    StartProxy,
    WsUpstream,
    wait_until,
)
from tests.integration.wsraw import RawConnection, read_head

pytestmark = pytest.mark.timeout(60)

PRINTED = re.compile(r"wsproxy metrics: (http://\S+/metrics) \(bearer token (\S+)\)")


async def metrics_address(proxy: ProxyProcess) -> tuple[str, str]:
    """The URL and token the proxy printed at start."""
    found: list[re.Match[str]] = []

    def printed() -> bool:
        match = PRINTED.search(proxy.stdout_path.read_text("utf-8", "replace"))
        if match:
            found.append(match)
        return match is not None

    await wait_until(printed, 10)
    return found[0][1], found[0][2]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str, token: str) -> Samples:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def refusing_upstream(conn: RawConnection) -> None:
    await read_head(conn.reader)
    conn.writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
    await conn.writer.drain()
    conn.writer.close()


async def test_metrics_count_traffic_drops_and_refusals(
    start_proxy: StartProxy, ws_echo: WsUpstream, raw_server: RawServerFactory
) -> None:
    proxy = await start_proxy(
        "--metrics-port",
        "0",
        "-s",
        "plugins/block.py",
        "--set",
        "block_messages=^secret",
    )
    url, token = await metrics_address(proxy)
    # The harness's readiness probe was a connection too.
    before = value(await scrape(url, token), "wsproxy_connections_total", mode="regular")
    upstream = f"ws://{HOST}:{ws_echo.port}/chat"
    async with connect(upstream, proxy=proxy.url, open_timeout=10, compression=None) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x00\x01\x02")
        assert await ws.recv() == b"\x00\x01\x02"
        await ws.send("secret stuff")  # dropped by the block plugin
        await ws.send("after")
        assert await ws.recv() == "after"
        during = await scrape(url, token)
        assert value(during, "wsproxy_connections_open", mode="regular") == 1
        assert value(during, "wsproxy_websocket_handshakes_total", result="ok") == 1
        # The open session's counts so far are in the scrape already.
        c2s = {"direction": "client_to_server"}
        assert value(during, "wsproxy_websocket_messages_total", **c2s, opcode="text") == 3
    refuser = await raw_server(refusing_upstream)
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"ws://{HOST}:{refuser.port}/", proxy=proxy.url, open_timeout=10):
            pass
    assert info.value.response.status_code == 403
    await proxy.wait_log(lambda text: "WebSocket closed" in text)

    after = await scrape(url, token)
    deadline = asyncio.get_running_loop().time() + 10
    while value(after, "wsproxy_connections_open", mode="regular") != 0:  # the refused one
        assert asyncio.get_running_loop().time() < deadline, after
        await proxy.wait_log(lambda text: "relayed" in text)
        after = await scrape(url, token)
    assert value(after, "wsproxy_connections_total", mode="regular") == before + 2
    assert value(after, "wsproxy_websocket_handshakes_total", result="ok") == 1
    assert value(after, "wsproxy_websocket_handshakes_total", result="refused_4xx") == 1
    c2s, s2c = {"direction": "client_to_server"}, {"direction": "server_to_client"}
    assert value(after, "wsproxy_websocket_messages_total", **c2s, opcode="text") == 3
    assert value(after, "wsproxy_websocket_messages_total", **c2s, opcode="binary") == 1
    assert value(after, "wsproxy_websocket_messages_total", **s2c, opcode="text") == 2
    assert value(after, "wsproxy_websocket_messages_total", **c2s, opcode="close") == 1
    text_bytes = len("hello") + len("secret stuff") + len("after")
    assert value(after, "wsproxy_websocket_bytes_total", **c2s, opcode="text") == text_bytes
    assert value(after, "wsproxy_websocket_bytes_total", **s2c, opcode="binary") == 3
    assert value(after, "wsproxy_messages_dropped_total", plugin="block") == 1
    assert value(after, "wsproxy_websocket_closes_total", side="client", code="1000") == 1
    assert value(after, "wsproxy_websocket_closes_total", side="server", code="1000") == 1
    assert ("wsproxy_event_loop_lag_seconds", ()) in after


async def test_metrics_need_the_token_and_the_right_host(start_proxy: StartProxy) -> None:
    proxy = await start_proxy("--metrics-port", "0")
    url, token = await metrics_address(proxy)
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 401
        async with http.get(url, headers={"Authorization": "Bearer wrong"}) as resp:
            assert resp.status == 401
        async with http.get(url, params={"token": token}) as resp:
            assert resp.status == 200
        bad_host = {"Authorization": f"Bearer {token}", "Host": "rebound.example:80"}
        async with http.get(url, headers=bad_host) as resp:
            assert resp.status == 403
    assert token not in proxy.stderr()  # printed once on stdout, never logged


async def test_metrics_token_flag(start_proxy: StartProxy) -> None:
    proxy = await start_proxy("--metrics-port", "0", "--metrics-token", "s3cr3t-token")
    await wait_until(lambda: "wsproxy metrics:" in proxy.stdout_path.read_text(), 10)
    printed = proxy.stdout_path.read_text()
    assert "s3cr3t-token" not in printed
    url = re.search(r"(http://\S+/metrics)", printed)
    assert url is not None
    assert (await scrape(url[1], "s3cr3t-token"))[("wsproxy_event_loop_lag_seconds", ())] >= 0


async def test_metrics_port_taken_is_one_error_line(start_proxy: StartProxy) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        proxy = await start_proxy("--metrics-port", str(port), ready=False)
        proxy.expect_exit()
        assert await proxy.wait_exit(15) == 1
    lines = [line for line in proxy.stderr().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"cannot listen on {HOST}:{port} for metrics" in lines[0]
    assert "Traceback" not in proxy.stderr()


async def test_metrics_count_failed_upgrades_and_errors(start_proxy: StartProxy) -> None:
    proxy = await start_proxy("--metrics-port", "0")
    url, token = await metrics_address(proxy)
    with socket.socket() as closed:
        closed.bind((HOST, 0))
        port = closed.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://{HOST}:{port}/", proxy=proxy.url, open_timeout=10):
                pass
    assert info.value.response.status_code == 502
    await proxy.wait_log(lambda text: "cannot connect" in text)
    samples = await scrape(url, token)
    assert value(samples, "wsproxy_websocket_handshakes_total", result="failed_connect") == 1
    assert value(samples, "wsproxy_errors_total", kind="upstream") == 1
