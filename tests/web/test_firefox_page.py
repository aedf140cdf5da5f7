"""The web UI page in a real headless Firefox (Debian's firefox-esr), against a real
``wsproxy-web``: pause a message, edit it in the page, forward it, and see the real server get
the edit and the timeline mark it.

Firefox is driven by tests/node/firefox_ui.mjs (puppeteer-core over WebDriver BiDi, the
system's Firefox, no browser download); this test plays the client with ``websockets`` in
between the page's steps. The profile has the prefs of tests/browser (no traffic of Firefox's
own) and an auto-config that lets it reach 127.0.0.1 only. Missing Firefox, node or
puppeteer-core skips, except under CI=true.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.browser.harness import FIREFOX_PREFS, firefox_pac, firefox_tools
from tests.harness import HOST, ROOT, WebProcess, WsUpstream

pytestmark = pytest.mark.timeout(120)

NODE_DIR = ROOT / "tests" / "node"
DRIVER = NODE_DIR / "firefox_ui.mjs"
STEP_TIMEOUT = 45.0

StartWeb = Callable[..., Awaitable[WebProcess]]


def node_and_puppeteer() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "puppeteer-core").is_dir():
        message = "node or puppeteer-core missing: npm install --prefix tests/node"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the Firefox page test cannot run: {message}")
        pytest.skip(message)
    return node


class Driver:
    """The driver process: its JSON lines one at a time, and lines to its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def event(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), STEP_TIMEOUT)
        if not line:
            raise AssertionError(f"the driver ended: {await self.stderr()}")
        event: dict[str, Any] = json.loads(line)
        if event["event"] == "error":
            raise AssertionError(f"in Firefox: {event['error']}\n{await self.stderr()}")
        return event

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        if self.proc.returncode is None:
            return ""
        return (await self.proc.stderr.read()).decode(errors="replace")[-3000:]

    async def stop(self) -> None:
        """SIGTERM first: Puppeteer closes Firefox on it (Firefox runs in a process group of
        its own); then the driver itself, whatever it does."""
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def test_firefox_pauses_edits_and_forwards_a_message(
    start_web: StartWeb, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    firefox, _ = firefox_tools()
    node = node_and_puppeteer()
    ui = await start_web("--mode", f"reverse:{ws_echo.url}")
    pac = tmp_path / "proxy.pac"
    pac.write_text(firefox_pac("DIRECT", [HOST]))
    prefs = {**FIREFOX_PREFS, "network.proxy.autoconfig_url": pac.as_uri()}
    config = {
        "url": f"{ui.ui}/?token={ui.token}",
        "firefox": firefox,
        "prefs": prefs,
        "original": "the secret plan",
        "edited": "the plan, edited in Firefox",
        "path": "/chat",
    }
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    proc = await asyncio.create_subprocess_exec(
        node,
        str(DRIVER),
        json.dumps(config),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=NODE_DIR,
        env={**env, "HOME": str(tmp_path / "home")},
    )
    driver = Driver(proc)
    try:
        assert (await driver.event())["event"] == "ready"
        url = f"ws://{HOST}:{ui.port}/chat"
        async with connect(url, max_size=None, ping_interval=None) as client:
            await client.send("the secret plan")
            driver.send("sent")
            assert (await driver.event())["event"] == "forwarded"
            echo = await asyncio.wait_for(client.recv(), STEP_TIMEOUT)
            assert echo == "the plan, edited in Firefox"
            done = await driver.event()
        assert done["event"] == "done"
        assert done["errors"] == []  # nothing thrown or logged as an error in the page
        assert ws_echo.received == ["the plan, edited in Firefox"]
        assert await asyncio.wait_for(proc.wait(), STEP_TIMEOUT) == 0
    finally:
        await driver.stop()
