"""Fixtures shared by every test directory, built on ``tests.harness``.

* ``start_proxy(*args, ...)``: a ``python -m wsproxy`` process on a free port; teardown
  stops it and fails the test if it needed SIGKILL, exited non-zero (unless the test said
  ``expect_exit()``) or printed a traceback.
* ``proxy``: the session's shared regular-mode proxy with default options, as one test sees it.
* ``serve_proxy(plugins, upstream_port, **options)``: a ``ProxyServer`` in the test's loop.
* ``ws_echo`` (and ``start_ws_echo(**kwargs)`` for more): a ``websockets`` echo upstream;
  ``aiohttp_server``: the aiohttp one; ``raw_server(handler)``: a bare one for peers that
  misbehave; ``raw_client(port)``: tracked plain TCP connections.
* ``ca``: a wsproxy ``CertAuthority`` (the one the proxy signs with); ``upstream_ca``: a
  ``trustme`` CA for upstream servers, and ``upstream_ca_file`` its certificate in PEM.

A session fixture checks at the end that every proxy process started is dead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.harness import (
    HOST,
    STARTED,
    AioServer,
    ProxyProcess,
    ProxyView,
    RawClient,
    RawServerFactory,
    ServeProxy,
    StartProxy,
    StartWsEcho,
    WebProcess,
    WsUpstream,
    aiohttp_upstream,
    launch,
    launch_sync,
    launch_web,
    raw_servers,
    running_proxy,
    ws_upstream,
)
from tests.integration.wsraw import RawConnection
from wsproxy.proxy.server import ProxyServer
from wsproxy.tls import CertAuthority

# -- proxies ---------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    """At the end of the session every proxy process started must be dead."""
    yield
    alive = [p for p in STARTED if p.proc.poll() is None]
    for p in alive:
        p.kill()
    assert not alive, "proxy processes still running at the end: " + ", ".join(
        str(p.proc.pid) for p in alive
    )


@pytest.fixture
async def start_proxy(tmp_path: Path) -> AsyncIterator[StartProxy]:
    """``await start_proxy("--mode", "reverse:ws://...", ...)``: a running proxy process.

    Keywords: ``confdir`` (default ``tmp_path/confdir``), ``host``, ``verbose`` (``-v``, on by
    default), ``hide_mitmproxy``, and ``ready=False`` to return at once (for a proxy
    expected to exit by itself).
    """
    started: list[ProxyProcess] = []

    async def start(
        *args: str, confdir: Path | None = None, ready: bool = True, **kwargs: Any
    ) -> ProxyProcess:
        confdir = confdir or tmp_path / "confdir"
        if not ready:
            proc = ProxyProcess(args, confdir, tmp_path, **kwargs)
            started.append(proc)
            return proc
        return await launch(args, confdir, tmp_path, started, **kwargs)

    try:
        yield start
    finally:
        problems = []
        for proc in started:
            problems += proc.problems(await proc.stop())
        assert not problems, "\n\n".join(problems)


@pytest.fixture
async def start_web(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[WebProcess]]]:
    """``await start_web("--web-history", "5", ...)``: a running ``wsproxy-web`` (proxy on
    ``.port``, UI on ``.ui`` with ``.token``), stopped and checked at the end like
    ``start_proxy``'s."""
    started: list[ProxyProcess] = []

    async def start(*args: str, confdir: Path | None = None, **kwargs: Any) -> WebProcess:
        confdir = confdir or tmp_path / "confdir"
        return await launch_web(args, confdir, tmp_path, started, **kwargs)

    try:
        yield start
    finally:
        problems = []
        for proc in started:
            problems += proc.problems(await proc.stop())
        assert not problems, "\n\n".join(problems)


@pytest.fixture(scope="session")
def _shared_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """One regular-mode proxy with default options, shared by the tests that need no flags."""
    tmp = tmp_path_factory.mktemp("shared-proxy")
    proc = launch_sync([], tmp / "confdir", tmp)
    yield proc
    problems = proc.problems(proc.stop_sync())
    assert not problems, "\n\n".join(problems)


@pytest.fixture
async def proxy(_shared_proxy: ProxyProcess) -> AsyncIterator[ProxyView]:
    """The shared default proxy; teardown fails the test if the proxy printed a traceback
    during it, or died."""
    view = ProxyView(_shared_proxy)
    yield view
    await view.finish()


@pytest.fixture
async def serve_proxy(tmp_path: Path) -> AsyncIterator[ServeProxy]:
    """``await serve_proxy(plugins, upstream_port, **options)``: ``running_proxy`` until the
    end of the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            plugins: Any = None, upstream_port: int | None = None, **options: Any
        ) -> ProxyServer:
            return await stack.enter_async_context(
                running_proxy(tmp_path, plugins, upstream_port, **options)
            )

        yield start


# -- upstreams -------------------------------------------------------------------------------


@pytest.fixture
async def start_ws_echo() -> AsyncIterator[StartWsEcho]:
    """``await start_ws_echo(handler=echo, **kwargs)``: one more ``ws_upstream``."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(*args: Any, **kwargs: Any) -> WsUpstream:
            return await stack.enter_async_context(ws_upstream(*args, **kwargs))

        yield start


@pytest.fixture
async def ws_echo() -> AsyncIterator[WsUpstream]:
    """A ``websockets`` echo server in the test's loop (see ``tests.harness.echo``)."""
    async with ws_upstream() as up:
        yield up


@pytest.fixture
async def aiohttp_server() -> AsyncIterator[AioServer]:
    async with aiohttp_upstream() as state:
        yield state


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServerFactory]:
    """``await raw_server(handler)``: a server whose ``handler`` writes whatever bytes it likes.
    Exceptions in handlers fail the test at teardown."""
    async with raw_servers() as start:
        yield start


@pytest.fixture
async def raw_client() -> AsyncIterator[RawClient]:
    """``await raw_client(port)``: a plain TCP connection, closed at teardown."""
    conns: list[RawConnection] = []

    async def open_(port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection(HOST, port)
        conn = RawConnection(reader, writer)
        conns.append(conn)
        return conn

    try:
        yield open_
    finally:
        for conn in conns:
            await conn.close()


# -- certificate authorities -----------------------------------------------------------------


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    """A wsproxy CA (the files ``--confdir`` holds), made once for the session."""
    return CertAuthority.load_or_create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def upstream_ca() -> trustme.CA:
    """The upstream servers' CA: a proxy must be told to trust it (``--upstream-ca``)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def upstream_ca_file(upstream_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("upstream-ca") / "upstream-ca.pem"
    upstream_ca.cert_pem.write_to_path(str(path))
    return path
