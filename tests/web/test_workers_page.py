"""The page of ``wsproxy-web --workers 2`` in a real headless Chromium: the connections of both
worker processes in one list, each row saying its worker."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import Page, expect
from websockets.asyncio.client import ClientConnection, connect

from tests.harness import HOST, WebProcess, WsUpstream
from tests.web.conftest import page_url
from tests.webserver.ui import ui_client

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT: Linux"),
]


async def test_the_page_lists_the_connections_of_both_workers(
    start_web: Callable[..., Awaitable[WebProcess]],
    ws_echo: WsUpstream,
    new_page: Callable[..., Awaitable[Page]],
) -> None:
    ui = await start_web("--workers", "2", "--mode", f"reverse:{ws_echo.url}")
    page = await new_page()
    await page.goto(page_url(ui))
    await expect(page.locator("#link-status")).to_have_text("live")
    clients: list[ClientConnection] = []
    try:
        async with ui_client(ui) as api:
            for n in range(200):  # the kernel spreads them: a few reach both workers
                ws = await connect(f"ws://{HOST}:{ui.port}/n{n}", ping_interval=None)
                clients.append(ws)
                await ws.send(f"m{n}")
                assert await asyncio.wait_for(ws.recv(), 10) == f"m{n}"
                conns = (await api.get("/api/connections"))["connections"]
                if {c["worker"] for c in conns} == {1, 2}:
                    break
        rows = page.get_by_role("listbox", name="Connections").get_by_role("option")
        await expect(rows).to_have_count(len(clients))
        for worker in (1, 2):
            first = rows.filter(has_text=f"worker {worker}").first
            await expect(first).to_contain_text("open")
            await first.click()
            await expect(page.locator("#detail-title")).to_be_visible()
            await expect(page.get_by_text(f"worker {worker}").first).to_be_visible()
    finally:
        for ws in clients:
            with contextlib.suppress(Exception):
                await ws.close()
