"""Fixtures for capture tests, on the shared harness (``tests/conftest.py``): a real in-process
proxy (reverse mode) with a capture writer, in front of the ``ws_echo`` upstream.

* ``upper_echo``: a second echo server that answers text in upper case (a server that
  changed since the capture).
* ``capture_proxy(path, plugins=(), **writer_args)`` starts a ``ProxyServer`` with a
  ``CaptureWriter`` on ``path`` and returns ``(server, writer)``; ``stop_server(server)``
  (``tests.harness``) waits for open WebSockets to end, shuts the proxy down and finishes
  the writer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ServeProxy, StartWsEcho, WsUpstream
from wsproxy.capture.writer import CaptureWriter
from wsproxy.proxy.server import ProxyServer

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
async def upper_echo(start_ws_echo: StartWsEcho) -> WsUpstream:
    return await start_ws_echo(upper=True)


CaptureProxy = Callable[..., Awaitable[tuple[ProxyServer, CaptureWriter]]]


@pytest.fixture
def capture_proxy(serve_proxy: ServeProxy, ws_echo: WsUpstream) -> CaptureProxy:
    async def start(
        path: Path, plugins: tuple[object, ...] = (), **writer_args: Any
    ) -> tuple[ProxyServer, CaptureWriter]:
        writer = CaptureWriter(path, **writer_args)
        server = await serve_proxy(
            list(plugins) or None, ws_echo.port, capture=writer, close_timeout=2.0
        )
        return server, writer

    return start
