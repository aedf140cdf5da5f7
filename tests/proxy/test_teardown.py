"""A WebSocket that ended leaves nothing to the cycle collector: its session, both peers and
the relay go as soon as the proxy lets go of them. Left in reference cycles, every
connection's objects waited for a collection, and the collector's passes over them cost each
new connection CPU (issue 16)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from tests.harness import HOST, ServeProxy, WsUpstream, wait_until


@pytest.fixture
def no_cycle_collector() -> Iterator[None]:
    """The cycle collector off for the test: whatever is freed, refcounting freed it."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_cycle_collector")
@pytest.mark.parametrize("closed_by", ["client", "proxy"])
async def test_an_ended_websocket_is_freed_without_the_cycle_collector(
    serve_proxy: ServeProxy, ws_echo: WsUpstream, closed_by: str
) -> None:
    server = await serve_proxy(None, ws_echo.port)
    async with connect(f"ws://{HOST}:{server.port}/", compression=None) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        (session,) = server.sessions
        parts = (session, session.client, session.server, session.relay)
        refs = [weakref.ref(part) for part in parts]
        if closed_by == "proxy":
            session.shutdown(1001, "going away")
            await ws.wait_closed()
        del session, parts
    await wait_until(lambda: not server.sessions and not server.handlers, what="session ended")
    await wait_until(
        lambda: all(ref() is None for ref in refs),
        what=lambda: f"freed: {[ref() is None for ref in refs]}",
    )
