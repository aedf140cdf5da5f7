"""wsproxy.sansio imports only itself and the standard library (issue 11: arrows point down).

ruff's banned-api rule (pyproject.toml) names the layers above and the dependencies one by one;
this test states the rule itself, so a new dependency cannot slip in unnamed.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import wsproxy.sansio

SANSIO = Path(wsproxy.sansio.__file__).parent
MODULES = sorted(SANSIO.glob("*.py"))

# Temporary, as in pyproject.toml's per-file-ignores: the relay redesign removes this import.
EXEMPT = {("relay.py", "wsproxy.model")}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            assert node.module is not None
            names.add(node.module)
    return names


def test_every_module_is_checked() -> None:
    assert {"frames.py", "endpoint.py", "errors.py", "relay.py"} <= {p.name for p in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_only_itself_and_the_standard_library(path: Path) -> None:
    outside = {
        name
        for name in imported_modules(path)
        if not (name == "wsproxy.sansio" or name.startswith("wsproxy.sansio."))
        and name.split(".")[0] not in sys.stdlib_module_names
        and (path.name, name) not in EXEMPT
    }
    assert outside == set()


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom wsproxy.model import Flow\nimport aiohttp.web\n")
    assert imported_modules(bad) == {"os", "wsproxy.model", "aiohttp.web"}
