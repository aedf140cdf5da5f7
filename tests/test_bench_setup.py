"""The bench scripts name what is missing and how to install it, in one line, no traceback.

Benches are run by hand, not as tests; this runs one only as far as its set-up check, with
the Python package it needs hidden (as after the README's plain ``pip install .``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.harness import ROOT, hiding_source, proxy_free_env


def test_a_missing_python_peer_is_one_line_with_the_install_command(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(hiding_source("websockets"))
    env = proxy_free_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    result = subprocess.run(
        [sys.executable, "bench/capture_bench.py"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, result.stderr  # a missing set-up, as bench.py
    assert result.stderr.splitlines() == [
        f"bench/capture_bench.py needs websockets, not installed for {sys.executable}: run "
        f"`{sys.executable} -m pip install '.[bench]'` from the repository root"
    ]
