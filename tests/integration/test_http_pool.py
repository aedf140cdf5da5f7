"""Plain HTTP reuses upstream connections: what a browser's keep-alive connections through the
proxy cost upstream, which responses leave a connection reusable, the retry of a request that
met a connection its server had closed, the pool's bounds, and what never touches the pool."""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
import trustme

from tests.harness import (
    HOST,
    AioServer,
    Proxy,
    RawClient,
    RawServer,
    RawServerFactory,
    StartProxy,
    aiohttp_upstream,
    http_handler,
    requests_seen,
    running_proxy,
    wait_until,
)
from tests.integration import wsraw
from tests.integration.wsraw import Head, RawConnection

pytestmark = pytest.mark.timeout(60)

REQUESTS = 50
CLIENT_LIMIT = 6  # connections per host, as browsers open


def ok(body: bytes = b"hello", *, status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def send(
    conn: RawConnection,
    server: RawServer,
    path: str = "/",
    *,
    method: str = "GET",
    body: bytes | None = None,
) -> Head:
    """One request to ``server`` through the proxy on the client connection ``conn``."""
    authority = f"{HOST}:{server.port}"
    length = "" if body is None else f"Content-Length: {len(body)}\r\n"
    conn.writer.write(
        f"{method} http://{authority}{path} HTTP/1.1\r\nHost: {authority}\r\n{length}\r\n".encode()
        + (body or b"")
    )
    return await asyncio.wait_for(wsraw.read_response(conn.reader, method=method), 10)


def counted_session(limit: int, **kwargs: object) -> tuple[aiohttp.ClientSession, list[object]]:
    """An aiohttp session of at most ``limit`` connections, and the list of those it opened."""
    opened: list[object] = []

    async def created(_session: object, _context: object, params: object) -> None:
        opened.append(params)

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(created)
    connector = aiohttp.TCPConnector(limit=limit, **kwargs)  # type: ignore[arg-type]
    return aiohttp.ClientSession(connector=connector, trace_configs=[trace]), opened


async def many_gets(url: str, proxy_url: str, **kwargs: object) -> int:
    """``REQUESTS`` concurrent keep-alive GETs of ``url`` through the proxy on at most
    ``CLIENT_LIMIT`` client connections; returns how many client connections were opened."""
    session, opened = counted_session(CLIENT_LIMIT, **kwargs)

    async def get(i: int) -> None:
        async with session.get(f"{url}?i={i}", proxy=proxy_url) as resp:
            assert resp.status == 200
            assert await resp.text() == "hello world"

    async with session:
        await asyncio.gather(*(get(i) for i in range(REQUESTS)))
    return len(opened)


# -- a browser's keep-alive connections through the proxy --------------------------------------


async def test_keep_alive_requests_share_upstream_connections(
    proxy: Proxy, aiohttp_server: AioServer
) -> None:
    """50 requests on a browser's 6 connections cost no more upstream connections than the
    client opened (not 50)."""
    clients = await many_gets(f"{aiohttp_server.url}/hello", proxy.url)
    assert len(aiohttp_server.requests) == REQUESTS
    assert 1 <= clients <= CLIENT_LIMIT
    assert aiohttp_server.connections <= clients, (aiohttp_server.connections, clients)


async def test_pool_off_opens_a_connection_per_request(
    start_proxy: StartProxy, aiohttp_server: AioServer
) -> None:
    """``--pool-max-per-host 0``: what the proxy did before the pool (the test above fails
    without it)."""
    proxy = await start_proxy("--pool-max-per-host", "0")
    await many_gets(f"{aiohttp_server.url}/hello", proxy.url)
    assert aiohttp_server.connections == REQUESTS


async def test_https_inside_connect_tunnels_is_pooled(
    start_proxy: StartProxy, upstream_ca: trustme.CA, upstream_ca_file: Path
) -> None:
    """Each client connection is a CONNECT tunnel with TLS intercepted; the requests inside
    the tunnels share the proxy's TLS connections to the server."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    upstream_ca.issue_cert(HOST).configure_cert(tls)
    proxy = await start_proxy("--upstream-ca", str(upstream_ca_file))
    client_tls = ssl.create_default_context(cafile=str(proxy.ca_cert))
    async with aiohttp_upstream(ssl=tls) as server:
        url = f"https://{HOST}:{server.port}/hello"
        clients = await many_gets(url, proxy.url, ssl=client_tls)
        assert len(server.requests) == REQUESTS
    assert server.connections <= clients <= CLIENT_LIMIT, (server.connections, clients)
    assert proxy.stderr().count(f"CONNECT {HOST}:{server.port}") == clients


# -- which responses leave the connection reusable -------------------------------------------

REUSABLE = {
    "content-length": ("GET", None, ok()),
    "chunked": (
        "GET",
        None,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    "empty": ("GET", None, ok(b"")),
    "HEAD": ("HEAD", None, b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n"),
    "204": ("GET", None, b"HTTP/1.1 204 No Content\r\n\r\n"),
    "304": ("GET", None, b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n'),
    "POST": ("POST", b"form=1", ok(status="201 Created")),
    "HTTP/1.0 keep-alive": (
        "GET",
        None,
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello",
    ),
}


@pytest.mark.parametrize("case", list(REUSABLE))
async def test_framed_responses_leave_the_connection_reusable(
    proxy: Proxy, raw_server: RawServerFactory, raw_client: RawClient, case: str
) -> None:
    method, body, answer = REUSABLE[case]
    server = await raw_server(http_handler(lambda _request, _n: answer))
    conn = await raw_client(proxy.port)
    for i in range(3):
        resp = await send(conn, server, f"/{i}", method=method, body=body)
        assert resp.status == int(answer.split()[1])
        expected = answer.partition(b"\r\n\r\n")[2] if method != "HEAD" else b""
        if b"chunked" in answer:
            expected = b"hello"
        assert resp.body == expected
    seen = requests_seen(server)
    assert [[request.target for request in on_conn] for on_conn in seen] == [["/0", "/1", "/2"]]
    assert all(request.body == (body or b"") for request in seen[0])


NOT_REUSABLE = {
    "Connection: close": (ok(extra="Connection: close\r\n"), False),
    "read until close": (b"HTTP/1.1 200 OK\r\n\r\nhello", True),
    "HTTP/1.0": (b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", False),
    "bytes after the body": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1", False),
    # NTLM authenticates the connection: shared, it would log the next client in
    "NTLM challenge": (ok(status="401 Unauthorized", extra="WWW-Authenticate: NTLM\r\n"), False),
}


@pytest.mark.parametrize("case", list(NOT_REUSABLE))
async def test_connection_not_reused_after(
    proxy: Proxy, raw_server: RawServerFactory, raw_client: RawClient, case: str
) -> None:
    answer, close_after = NOT_REUSABLE[case]
    server = await raw_server(http_handler(lambda _request, _n: answer, close_after=close_after))
    for i in range(3):
        conn = await raw_client(proxy.port)
        resp = await send(conn, server, f"/{i}")
        assert (resp.status, resp.body[:5]) == (int(answer.split()[1]), b"hello")
    seen = requests_seen(server)
    assert [[request.target for request in on_conn] for on_conn in seen] == [["/0"], ["/1"], ["/2"]]
    # The proxy closed each one (those the server left open) instead of keeping it.
    await wait_until(lambda: server.finished.qsize() == 3, 10, "every upstream connection ended")


# -- a kept-alive connection its server closed -------------------------------------------------


async def test_idle_connection_closed_by_the_server_is_not_reused(
    proxy: Proxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """The server drops each connection right after answering (no ``Connection: close``):
    the next request still gets its answer, on a new connection."""
    server = await raw_server(http_handler(lambda _request, _n: ok(), close_after=True))
    conn = await raw_client(proxy.port)
    for i in range(3):
        assert (await send(conn, server, f"/{i}")).status == 200
        await asyncio.wait_for(server.finished.get(), 10)  # the server has closed it
    assert [len(on_conn) for on_conn in requests_seen(server)] == [1, 1, 1]


def closes_at_second_request(request: Head, n: int) -> bytes | None:
    """The server's keep-alive timer fires just as the next request arrives: it reads the
    request and closes without a byte of answer."""
    return ok(request.target.encode()) if n == 0 else None


@pytest.mark.parametrize(
    ("method", "body"),
    [("GET", None), ("HEAD", None), ("OPTIONS", None), ("DELETE", None), ("PUT", b"x" * 5000)],
)
async def test_idempotent_request_sent_again_on_a_new_connection(
    proxy: Proxy,
    raw_server: RawServerFactory,
    raw_client: RawClient,
    method: str,
    body: bytes | None,
) -> None:
    server = await raw_server(http_handler(closes_at_second_request))
    conn = await raw_client(proxy.port)
    assert (await send(conn, server, "/first")).body == b"/first"
    resp = await send(conn, server, "/second", method=method, body=body)
    assert resp.status == 200
    assert resp.body == (b"" if method == "HEAD" else b"/second")
    seen = requests_seen(server)
    assert [[(r.method, r.target) for r in on_conn] for on_conn in seen] == [
        [("GET", "/first"), (method, "/second")],
        [(method, "/second")],
    ]
    assert seen[1][0].body == seen[0][1].body == (body or b"")
    await proxy.wait_log(
        lambda text: (
            f"{HOST}:{server.port} closed a kept-alive connection before answering: "
            f"{method} sent again on a new connection" in text
        )
    )


@pytest.mark.parametrize(
    ("method", "body", "why"),
    [
        ("POST", b"order=1", "POST is not idempotent (RFC 9110 9.2.2), so it is not sent twice"),
        ("PATCH", b"x", "PATCH is not idempotent"),
        ("PUT", os.urandom(100_000), "the request body was over 64 KiB, too large to keep"),
    ],
)
async def test_request_not_sent_twice_gets_502(
    proxy: Proxy,
    raw_server: RawServerFactory,
    raw_client: RawClient,
    method: str,
    body: bytes,
    why: str,
) -> None:
    server = await raw_server(http_handler(closes_at_second_request))
    conn = await raw_client(proxy.port)
    assert (await send(conn, server, "/first")).status == 200
    resp = await send(conn, server, "/order", method=method, body=body)
    assert resp.status == 502
    assert why in resp.body.decode()
    assert resp.get("Connection") == "close"
    seen = requests_seen(server)
    assert [[r.method for r in on_conn] for on_conn in seen] == [["GET", method]]
    assert seen[0][1].body == body
    await proxy.wait_log(lambda text: why in text and "upstream closed without answering" in text)


async def test_a_new_connection_closed_unanswered_is_not_retried(
    proxy: Proxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    server = await raw_server(http_handler(lambda _request, _n: None))
    conn = await raw_client(proxy.port)
    resp = await send(conn, server, "/")
    assert resp.status == 502
    assert b"upstream closed without answering" in resp.body
    assert len(requests_seen(server)) == 1


# -- bounds ------------------------------------------------------------------------------------


def held_answers(count: int) -> tuple[asyncio.Event, object]:
    """A handler that answers nothing until ``count`` requests are in (so that many upstream
    connections are open at once), then answers each at once."""
    gathered = asyncio.Event()
    arrived = SimpleNamespace(n=0)

    async def handle(conn: RawConnection) -> None:
        requests: list[Head] = []
        conn.extra["requests"] = requests
        while True:
            try:
                request = await wsraw.read_request(conn.reader)
            except asyncio.IncompleteReadError:
                return
            requests.append(request)
            arrived.n += 1
            if arrived.n >= count:
                gathered.set()
            await gathered.wait()
            conn.writer.write(ok())
            await conn.writer.drain()

    return gathered, handle


async def test_idle_connections_per_server_are_bounded(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """``--pool-max-per-host 2``: after four requests at once, two connections stay, the
    other two are closed at once; the next request takes one that stayed."""
    proxy = await start_proxy("--pool-max-per-host", "2")
    _, handle = held_answers(4)
    server = await raw_server(handle)  # type: ignore[arg-type]
    conns = [await raw_client(proxy.port) for _ in range(4)]
    answers = await asyncio.gather(*(send(conn, server) for conn in conns))
    assert [resp.status for resp in answers] == [200] * 4
    assert len(server.connections) == 4
    await wait_until(lambda: server.finished.qsize() == 2, 10, "two connections closed")
    assert (await send(conns[0], server)).status == 200
    assert len(server.connections) == 4  # a kept one served it
    assert server.finished.qsize() == 2


async def test_idle_connections_in_all_are_bounded(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """``--pool-max-idle 1``: a connection kept for a second server pushes out the one kept
    for the first (the oldest goes)."""
    proxy = await start_proxy("--pool-max-idle", "1")
    first = await raw_server(http_handler(lambda _request, _n: ok()))
    second = await raw_server(http_handler(lambda _request, _n: ok()))
    conn = await raw_client(proxy.port)
    assert (await send(conn, first)).status == 200
    assert (await send(conn, second)).status == 200
    await asyncio.wait_for(first.finished.get(), 10)  # the proxy closed the first one
    assert (await send(conn, second)).status == 200
    assert [len(on_conn) for on_conn in requests_seen(second)] == [2]


async def test_idle_connection_expires(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    proxy = await start_proxy("--pool-idle-timeout", "0.5")
    server = await raw_server(http_handler(lambda _request, _n: ok()))
    conn = await raw_client(proxy.port)
    assert (await send(conn, server)).status == 200
    answered = time.monotonic()
    await asyncio.wait_for(server.finished.get(), 10)  # closed by the proxy
    assert time.monotonic() - answered >= 0.4
    assert (await send(conn, server)).status == 200
    assert [len(on_conn) for on_conn in requests_seen(server)] == [1, 1]


async def test_shutdown_closes_idle_connections(
    tmp_path: Path, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    server = await raw_server(http_handler(lambda _request, _n: ok()))
    async with running_proxy(tmp_path) as proxy:
        conn = await raw_client(proxy.port)
        assert (await send(conn, server)).status == 200
        await wait_until(lambda: proxy.fronts[0].pool.idle == 1, 10, "the connection kept")
        await conn.close()
    assert proxy.fronts[0].pool.idle == 0
    await asyncio.wait_for(server.finished.get(), 10)


# -- what never touches the pool ---------------------------------------------------------------


async def test_websocket_upgrade_opens_its_own_connection(
    proxy: Proxy, aiohttp_server: AioServer
) -> None:
    """An upgrade never takes the idle connection a plain request left, and its connection
    never serves a plain request after."""
    session, _ = counted_session(1)
    async with session:
        async with session.get(f"{aiohttp_server.url}/hello", proxy=proxy.url) as resp:
            assert await resp.text() == "hello world"
        assert aiohttp_server.connections == 1
        async with session.ws_connect(f"{aiohttp_server.ws_url}/ws", proxy=proxy.url) as ws:
            await ws.send_str("ping")
            assert (await ws.receive(timeout=10)).data == "ping"
            assert aiohttp_server.connections == 2
        await aiohttp_server.next_close()
        async with session.get(f"{aiohttp_server.url}/hello", proxy=proxy.url) as resp:
            assert await resp.text() == "hello world"
    assert aiohttp_server.connections == 2  # the first one again
