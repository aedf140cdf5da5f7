"""Fixtures of the web UI page's tests: a headless Chromium driven by Playwright (the real
``wsproxy-web`` process is tests/conftest.py's ``start_web``).

Playwright is the PyPI package (its wheel carries its own driver); it drives the system's
``/usr/bin/chromium`` and never downloads a browser. Chromium runs with the flags of
tests/browser (no traffic of its own, every name but 127.0.0.1 unresolvable) and no proxy:
the page talks to the UI server directly. Missing Chromium skips, except under CI=true.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from tests.browser.harness import CHROMIUM_FLAGS, INSTALL_HINT
from tests.harness import ROOT, WebProcess

# expect() waits as long as page actions do (its own default is 5 s): a shared machine may
# take longer to render a timeline of thousands of messages.
expect.set_options(timeout=15_000)

SCREENSHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1400, "height": 860}

# The recipe's flags, minus what Playwright sets itself (headless) and what only a page that
# goes through the proxy needs; the UI page goes straight to the UI server.
PAGE_FLAGS = [
    flag for flag in CHROMIUM_FLAGS if not flag.startswith(("--headless", "--proxy-bypass-list"))
] + ["--no-proxy-server"]


def page_url(web: WebProcess, token: str | None = None) -> str:
    """The address wsproxy-web printed (the page with ``?token=``), or with another token
    (``""``: none)."""
    token = web.token if token is None else token
    return f"{web.ui}/?token={token}" if token else f"{web.ui}/"


def chromium_path() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not found:
        message = f"chromium not found: install it with `{INSTALL_HINT}`"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the web UI tests cannot run: {message}")
        pytest.skip(message)
    return found


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=executable, args=PAGE_FLAGS, env=env)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class PageErrors:
    """What went wrong inside the page: uncaught exceptions fail the test at teardown."""

    exceptions: list[str]
    console: list[str]


@pytest.fixture
async def page_errors() -> PageErrors:
    return PageErrors([], [])


@pytest.fixture
async def new_page(
    browser: Browser, page_errors: PageErrors
) -> AsyncIterator[Callable[..., Awaitable[Page]]]:
    """``await new_page(color_scheme="dark")``: a page in a fresh browser context (no stored
    token, no stored theme); an uncaught exception in any of them fails the test."""
    contexts = []

    async def open_page(**context_options: Any) -> Page:
        context = await browser.new_context(viewport=VIEWPORT, **context_options)
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda error: page_errors.exceptions.append(str(error)))

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                page_errors.console.append(message.text)

        page.on("console", console)
        return page

    yield open_page
    for context in contexts:
        await context.close()
    assert not page_errors.exceptions, f"the page threw: {page_errors.exceptions}"


async def screenshot(page: Page, name: str) -> Path:
    """Save the page as docs/screenshots/NAME.png (the README shows them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path
