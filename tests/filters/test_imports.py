"""wsproxy.filters is pure like wsproxy.sansio: the standard library and the decoders' shared
shapes (``wsproxy.decoders.base``), nothing else (no I/O, no arrow up to the proxy)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import wsproxy.filters
from tests.sansio.test_imports import imported_modules

FILTERS = Path(wsproxy.filters.__file__).parent
MODULES = sorted(FILTERS.glob("*.py"))
ALLOWED = {"wsproxy.decoders.base"}


def test_every_module_is_checked() -> None:
    assert {"lexer.py", "parser.py", "nodes.py", "operators.py"} <= {p.name for p in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_only_itself_the_standard_library_and_decoded(path: Path) -> None:
    outside = {
        name
        for name in imported_modules(path)
        if not (name == "wsproxy.filters" or name.startswith("wsproxy.filters."))
        and name.split(".")[0] not in sys.stdlib_module_names
        and name not in ALLOWED
    }
    assert outside == set()


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import asyncio\nfrom wsproxy.model import Flow\nfrom wsproxy.decoders import x\n"
    )
    names = imported_modules(bad)
    assert "wsproxy.model" in names and "wsproxy.decoders" in names
    assert "asyncio" in names  # stdlib, but sans-I/O: see the next test


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_io(path: Path) -> None:
    io = {"asyncio", "socket", "ssl", "time", "threading", "subprocess", "os", "selectors"}
    assert imported_modules(path) & io == set()
