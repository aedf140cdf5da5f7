"""wsproxy.decoders is pure like wsproxy.sansio: no I/O, no clock, and no arrow up to the
layers that use it (the proxy, captures, plugins, the CLI); codec libraries are allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

import wsproxy.decoders
from tests.sansio.test_imports import imported_modules

MODULES = sorted(Path(wsproxy.decoders.__file__).parent.glob("*.py"))
BANNED = {"asyncio", "socket", "ssl", "time", "selectors", "threading", "subprocess"}
ALLOWED_WSPROXY = ("wsproxy.decoders", "wsproxy.sansio")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_decoders_stay_pure(path: Path) -> None:
    names = imported_modules(path)
    assert not {name for name in names if name.split(".")[0] in BANNED}
    inside = {name for name in names if name.split(".")[0] == "wsproxy"}
    assert all(name.startswith(ALLOWED_WSPROXY) for name in inside), inside
