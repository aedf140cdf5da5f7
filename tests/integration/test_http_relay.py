"""Plain HTTP through the proxy: bodies streamed both ways, keep-alive, smuggling refused."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.harness import (
    HOST,
    AioServer,
    Proxy,
    RawClient,
    RawServerFactory,
)
from tests.integration import wsraw
from tests.integration.wsraw import RawConnection

pytestmark = pytest.mark.timeout(60)


async def test_get(proxy: Proxy, aiohttp_server: AioServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{aiohttp_server.url}/hello?a=1", proxy=proxy.url) as resp,
    ):
        assert resp.status == 200
        assert await resp.text() == "hello world"
        assert resp.headers["X-Test"] == "yes"
    request = aiohttp_server.requests[0]
    assert request.path_qs == "/hello?a=1"
    assert request.headers["Host"] == f"{HOST}:{aiohttp_server.port}"
    assert not any(name.lower().startswith("proxy-") for name in request.headers)
    await proxy.wait_log(lambda text: f"GET http://{HOST}:{aiohttp_server.port}/hello?a=1" in text)


async def test_post_with_content_length(proxy: Proxy, aiohttp_server: AioServer) -> None:
    body = os.urandom(300_000)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{aiohttp_server.url}/upload", data=body, proxy=proxy.url) as resp,
    ):
        assert resp.status == 200
        info = await resp.json()
    assert info["size"] == len(body)
    assert info["sha256"] == hashlib.sha256(body).hexdigest()
    assert info["content_length"] == str(len(body))


@pytest.mark.parametrize("total", [5, 20 * 1024 * 1024])
async def test_post_chunked_streamed(proxy: Proxy, aiohttp_server: AioServer, total: int) -> None:
    """A chunked request body (an async generator), up to 20 MiB, arrives intact."""
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        left = total
        while left:
            piece = os.urandom(min(left, 1024 * 1024))
            digest.update(piece)
            left -= len(piece)
            yield piece

    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{aiohttp_server.url}/upload", data=body(), proxy=proxy.url) as resp,
    ):
        assert resp.status == 200
        info = await resp.json()
    assert info["size"] == total
    assert info["sha256"] == digest.hexdigest()
    assert info["transfer_encoding"] == "chunked"


async def test_chunked_response(proxy: Proxy, aiohttp_server: AioServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{aiohttp_server.url}/chunked", proxy=proxy.url) as resp,
    ):
        assert resp.status == 200
        assert resp.headers.get("Transfer-Encoding") == "chunked"
        assert await resp.text() == "".join(f"piece {i};" for i in range(5))


async def test_keep_alive_two_requests_on_one_connection(
    proxy: Proxy, aiohttp_server: AioServer, raw_client: RawClient
) -> None:
    conn: RawConnection = await raw_client(proxy.port)
    authority = f"{HOST}:{aiohttp_server.port}"
    for path in ("/hello", "/chunked"):
        conn.writer.write(
            f"GET http://{authority}{path} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()
        )
        resp = await asyncio.wait_for(wsraw.read_response(conn.reader), 10)
        assert resp.status == 200
        assert resp.get("Connection") != "close"
    assert resp.body == b"".join(f"piece {i};".encode() for i in range(5))
    # The same client connection carried both requests.
    lines = [line for line in proxy.stderr().splitlines() if f"http://{authority}/" in line]
    assert len(lines) == 2
    assert lines[0].split()[1] == lines[1].split()[1]  # same [cN]
    # A third request, then the client closes: the proxy ends the connection cleanly.
    body = b"keep"
    conn.writer.write(
        (
            f"POST http://{authority}/upload HTTP/1.1\r\nHost: {authority}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        + body
    )
    resp = await asyncio.wait_for(wsraw.read_response(conn.reader, method="POST"), 10)
    assert resp.status == 200
    assert b'"size": 4' in resp.body
    assert await asyncio.wait_for(conn.reader.read(), 10) == b""


async def test_pipelined_requests(
    proxy: Proxy, aiohttp_server: AioServer, raw_client: RawClient
) -> None:
    conn: RawConnection = await raw_client(proxy.port)
    authority = f"{HOST}:{aiohttp_server.port}"
    request = f"GET http://{authority}/hello HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()
    conn.writer.write(request * 2)
    for _ in range(2):
        resp = await asyncio.wait_for(wsraw.read_response(conn.reader), 10)
        assert (resp.status, resp.body) == (200, b"hello world")


# -- refused before anything is forwarded -----------------------------------------------------


async def _recorder(raw_server: RawServerFactory):
    async def upstream(conn: RawConnection) -> None:
        data = await conn.reader.read(65536)
        conn.extra["data"] = data
        conn.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    return await raw_server(upstream)


SMUGGLING = {
    "CL and TE": (
        "POST {url} HTTP/1.1\r\nHost: {auth}\r\nContent-Length: 5\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGPOST / HTTP/1.1\r\n\r\n",
        400,
    ),
    "duplicate CL": (
        "POST {url} HTTP/1.1\r\nHost: {auth}\r\nContent-Length: 5\r\n"
        "Content-Length: 6\r\n\r\nhello!",
        400,
    ),
    "CL list": (
        "POST {url} HTTP/1.1\r\nHost: {auth}\r\nContent-Length: 5, 6\r\n\r\nhello!",
        400,
    ),
    "TE not chunked last": (
        "POST {url} HTTP/1.1\r\nHost: {auth}\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        400,
    ),
    "space before colon": (
        "POST {url} HTTP/1.1\r\nHost: {auth}\r\nContent-Length : 5\r\n\r\nhello",
        400,
    ),
    "obs-fold": (
        "GET {url} HTTP/1.1\r\nHost: {auth}\r\nX-A: b\r\n c\r\n\r\n",
        400,
    ),
    "bad request line": ("GET {url}\r\nHost: {auth}\r\n\r\n", 400),
    "bad method": ("G(T {url} HTTP/1.1\r\nHost: {auth}\r\n\r\n", 400),
    "two spaces": ("GET  {url} HTTP/1.1\r\nHost: {auth}\r\n\r\n", 400),
    "head over 64 KiB": (
        "GET {url} HTTP/1.1\r\nHost: {auth}\r\n"
        + "".join(f"X-Filler-{i}: {'v' * 1000}\r\n" for i in range(70))
        + "\r\n",
        431,
    ),
    "request line over 8 KiB": (
        "GET {url}?" + "q" * 9000 + " HTTP/1.1\r\nHost: {auth}\r\n\r\n",
        414,
    ),
}


@pytest.mark.parametrize("case", list(SMUGGLING))
async def test_malformed_request_refused_and_never_forwarded(
    proxy: Proxy, raw_server: RawServerFactory, raw_client: RawClient, case: str
) -> None:
    server = await _recorder(raw_server)
    authority = f"{HOST}:{server.port}"
    template, status = SMUGGLING[case]
    conn: RawConnection = await raw_client(proxy.port)
    request = template.format(url=f"http://{authority}/", auth=authority).encode()
    conn.writer.write(request)
    resp = await asyncio.wait_for(wsraw.read_response(conn.reader), 10)
    assert resp.status == status
    assert resp.get("Connection") == "close"
    assert await asyncio.wait_for(conn.reader.read(), 10) == b""
    # A good request after it: once it is answered, the proxy is past the point where it
    # would have forwarded the refused one, and the upstream must have seen only this one.
    later: RawConnection = await raw_client(proxy.port)
    later.writer.write(
        f"GET http://{authority}/later HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()
    )
    assert (await asyncio.wait_for(wsraw.read_response(later.reader), 10)).status == 200
    assert len(server.connections) == 1, "the request was forwarded"
    data = server.connections[0].extra["data"]
    assert isinstance(data, bytes) and b"/later " in data.split(b"\r\n")[0], data


async def test_upstream_unreachable_is_502(proxy: Proxy, raw_client: RawClient) -> None:
    from tests.harness import free_port

    authority = f"{HOST}:{free_port()}"
    conn: RawConnection = await raw_client(proxy.port)
    conn.writer.write(f"GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    resp = await asyncio.wait_for(wsraw.read_response(conn.reader), 10)
    assert resp.status == 502
