"""Handshakes the proxy refuses, and upstream answers it relays or turns into 502/504."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.harness import (
    HOST,
    AioServer,
    Proxy,
    RawClient,
    RawServerFactory,
    StartProxy,
    WsUpstream,
    free_port,
)
from tests.integration import wsraw
from tests.integration.wsraw import Head, RawConnection

pytestmark = pytest.mark.timeout(60)


async def send_via(
    raw_client: RawClient,
    proxy: Proxy,
    path_kind: str,
    upstream_port: int,
    build: Callable[[str, str], bytes],
) -> Head:
    """Send one request to ``upstream_port`` through the proxy and read the answer.

    ``path_kind``: "ws" or "http" (absolute-form ``GET ws://`` / ``GET http://``), or
    "connect" (CONNECT, then the request in origin form inside the tunnel). ``build(target,
    authority)`` returns the request bytes.
    """
    assert callable(build)
    conn: RawConnection = await raw_client(proxy.port)
    authority = f"{HOST}:{upstream_port}"
    if path_kind == "connect":
        conn.writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        established = await asyncio.wait_for(wsraw.read_head(conn.reader), 10)
        assert established.status == 200
        target = "/chat"
    else:
        target = f"{path_kind}://{authority}/chat"
    conn.writer.write(build(target, authority))
    return await asyncio.wait_for(wsraw.read_response(conn.reader), 10)


PATHS = ["ws", "http", "connect"]


async def only_the_next_one_arrives(
    raw_client: RawClient, proxy: Proxy, path_kind: str, upstream: WsUpstream
) -> None:
    """After a refused upgrade, a good one the same way: once it is answered, the proxy is past
    the point where it would have forwarded the refused one, and the upstream must have seen
    nothing else."""
    good = await send_via(raw_client, proxy, path_kind, upstream.port, wsraw.upgrade_request)
    assert good.status == 101, good
    assert upstream.connections == 1, "the upstream was contacted for the refused request"


BAD_UPGRADES = {
    "missing key": lambda t, a: wsraw.upgrade_request(t, a, drop=("sec-websocket-key",)),
    "key of 15 bytes": lambda t, a: wsraw.upgrade_request(
        t, a, key=base64.b64encode(os.urandom(15)).decode()
    ),
    "key not base64": lambda t, a: wsraw.upgrade_request(t, a, key="not base64 at all!!!!!="),
    "HTTP/1.0": lambda t, a: wsraw.upgrade_request(t, a, version="HTTP/1.0"),
    "missing Host": lambda t, a: wsraw.upgrade_request(t, None),
    "POST": lambda t, a: wsraw.upgrade_request(t, a, method="POST"),
    "missing Connection": lambda t, a: wsraw.upgrade_request(t, a, drop=("connection",)),
}


@pytest.mark.parametrize("path_kind", PATHS)
@pytest.mark.parametrize("case", list(BAD_UPGRADES))
async def test_bad_upgrade_is_refused_with_400(
    proxy: Proxy, ws_echo: WsUpstream, raw_client: RawClient, path_kind: str, case: str
) -> None:
    resp = await send_via(raw_client, proxy, path_kind, ws_echo.port, BAD_UPGRADES[case])
    assert resp.status == 400, resp
    await only_the_next_one_arrives(raw_client, proxy, path_kind, ws_echo)


@pytest.mark.parametrize("path_kind", PATHS)
async def test_version_8_gets_426(
    proxy: Proxy, ws_echo: WsUpstream, raw_client: RawClient, path_kind: str
) -> None:
    def build(target: str, authority: str) -> bytes:
        return wsraw.upgrade_request(
            target,
            authority,
            drop=("sec-websocket-version",),
            extra=[("Sec-WebSocket-Version", "8")],
        )

    resp = await send_via(raw_client, proxy, path_kind, ws_echo.port, build)
    assert resp.status == 426
    assert resp.get_all("Sec-WebSocket-Version") == ["13"]
    await only_the_next_one_arrives(raw_client, proxy, path_kind, ws_echo)


# -- upstream answers --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 404])
@pytest.mark.parametrize("path_kind", PATHS)
async def test_upstream_refusal_is_relayed_unchanged(
    proxy: Proxy,
    aiohttp_server: AioServer,
    raw_client: RawClient,
    status: int,
    path_kind: str,
) -> None:
    route = "/forbidden" if status == 403 else "/missing"

    def build(target: str, authority: str) -> bytes:
        return wsraw.upgrade_request(target.replace("/chat", route), authority)

    resp = await send_via(raw_client, proxy, path_kind, aiohttp_server.port, build)
    assert resp.status == status
    assert resp.body == f"refused: {status}".encode()
    assert resp.get("X-Why") == "test"
    assert aiohttp_server.connections == 1


async def test_upstream_403_seen_by_websockets_client(
    proxy: Proxy, aiohttp_server: AioServer
) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{aiohttp_server.ws_url}/forbidden", proxy=proxy.url):
            pass
    assert info.value.response.status_code == 403
    assert info.value.response.body == b"refused: 403"


def _bad_101(extra: str, accept: str | None = None) -> object:
    async def handler(conn: RawConnection) -> None:
        head = await wsraw.read_head(conn.reader)
        conn.head = head
        conn.writer.write(wsraw.switching_protocols(head, extra, accept=accept))
        await conn.reader.read()  # until the proxy hangs up

    return handler


@pytest.mark.parametrize(
    ("handler", "log_says"),
    [
        pytest.param(
            _bad_101("", accept=base64.b64encode(b"x" * 20).decode()),
            "Sec-WebSocket-Accept is wrong",
            id="wrong-accept",
        ),
        pytest.param(
            _bad_101("Sec-WebSocket-Protocol: chat\r\n"),
            "subprotocol that was not offered",
            id="protocol-not-offered",
        ),
        pytest.param(
            _bad_101("Sec-WebSocket-Extensions: x-unknown\r\n"),
            "extension that was not offered",
            id="extension-not-offered",
        ),
    ],
)
@pytest.mark.parametrize("path_kind", ["ws", "connect"])
async def test_bad_upstream_101_is_502(
    proxy: Proxy,
    raw_server: RawServerFactory,
    raw_client: RawClient,
    handler: object,
    log_says: str,
    path_kind: str,
) -> None:
    assert callable(handler)
    server = await raw_server(handler)

    def build(target: str, authority: str) -> bytes:
        return wsraw.upgrade_request(target, authority, extra=[("Sec-WebSocket-Protocol", "a")])

    resp = await send_via(raw_client, proxy, path_kind, server.port, build)
    assert resp.status == 502
    assert len(server.connections) == 1
    await proxy.wait_log(lambda text: log_says in text)


async def test_bad_upstream_101_seen_by_websockets_client(
    proxy: Proxy, raw_server: RawServerFactory
) -> None:
    server = await raw_server(_bad_101("", accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA="))  # type: ignore[arg-type]
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{server.url}/", proxy=proxy.url, open_timeout=10):
            pass
    assert info.value.response.status_code == 502


@pytest.mark.parametrize("path_kind", ["ws", "connect"])
async def test_upstream_port_closed_is_502(
    proxy: Proxy, raw_client: RawClient, path_kind: str
) -> None:
    resp = await send_via(raw_client, proxy, path_kind, free_port(), wsraw.upgrade_request)
    assert resp.status == 502
    await proxy.wait_log(lambda text: "cannot connect" in text)


async def test_upstream_that_never_answers_is_504(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    proxy = await start_proxy("--handshake-timeout", "1")

    async def silent(conn: RawConnection) -> None:
        await conn.reader.read()

    server = await raw_server(silent)
    started = time.monotonic()
    resp = await send_via(raw_client, proxy, "ws", server.port, wsraw.upgrade_request)
    elapsed = time.monotonic() - started
    assert resp.status == 504
    assert 0.9 <= elapsed < 5, elapsed
    assert len(server.connections) == 1
    await proxy.wait_log(lambda text: "did not answer the upgrade in time" in text)
