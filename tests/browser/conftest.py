"""The browser tests' page servers, as a fixture (``tests.browser.pages``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trustme

from tests.browser.pages import Servers, serve_pages


@pytest.fixture
async def servers(upstream_ca: trustme.CA) -> AsyncIterator[Servers]:
    """The https page server, a ws:// echo and a wss:// echo."""
    async with serve_pages(upstream_ca) as state:
        yield state
