"""Fixtures for capture tests: a real in-process proxy (reverse mode) with a capture writer,
in front of a real ``websockets`` echo server.

* ``echo`` / ``upper_echo``: echo servers (permessage-deflate offered by websockets' default);
  ``upper_echo`` answers text in upper case (a server that changed since the capture).
* ``capture_proxy(path, plugins=(), **writer_args)`` starts a ``ProxyServer`` with a
  ``CaptureWriter`` on ``path`` and returns ``(server, writer)``; ``stop(server, writer)``
  waits for open WebSockets to end, shuts the proxy down and finishes the writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from wsproxy.capture.writer import CaptureWriter
from wsproxy.options import Options, ReverseTarget
from wsproxy.plugins import PluginChain
from wsproxy.proxy.server import ProxyServer

HOST = "127.0.0.1"
FIXTURES = Path(__file__).parent / "fixtures"


async def _echo_server(upper: bool) -> Any:
    async def handler(ws: ServerConnection) -> None:
        try:
            async for message in ws:
                if upper and isinstance(message, str):
                    message = message.upper()
                await ws.send(message)
        except ConnectionClosed:
            pass

    return serve(handler, HOST, 0, max_size=None)


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    async with await _echo_server(False) as server:
        yield next(iter(server.sockets)).getsockname()[1]


@pytest.fixture
async def upper_echo() -> AsyncIterator[int]:
    async with await _echo_server(True) as server:
        yield next(iter(server.sockets)).getsockname()[1]


CaptureProxy = Callable[..., Awaitable[tuple[ProxyServer, CaptureWriter]]]


@pytest.fixture
async def capture_proxy(echo: int, tmp_path: Path) -> AsyncIterator[CaptureProxy]:
    started: list[tuple[ProxyServer, CaptureWriter]] = []

    async def start(
        path: Path, plugins: tuple[object, ...] = (), **writer_args: Any
    ) -> tuple[ProxyServer, CaptureWriter]:
        options = Options(
            listen_host=HOST,
            listen_port=0,
            reverse=ReverseTarget("ws", HOST, echo),
            confdir=tmp_path / "confdir",
            verbosity=-1,
            close_timeout=2.0,
        )
        writer = CaptureWriter(path, **writer_args)
        chain = PluginChain(list(plugins)) if plugins else None
        server = ProxyServer(options, None, chain, writer)
        await server.start()
        started.append((server, writer))
        return server, writer

    yield start
    for server, writer in started:
        await stop(server, writer)


async def stop(server: ProxyServer, writer: CaptureWriter) -> None:
    for _ in range(200):
        if not server.sessions:
            break
        await asyncio.sleep(0.01)
    await server.shutdown()
    await writer.aclose()
