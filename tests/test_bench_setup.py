"""The bench scripts name what is missing and how to install it, in one line, no traceback.

Benches are run by hand, not as tests; this runs one only as far as its set-up check, with
the Python package it needs hidden (as after the README's plain ``pip install .``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.harness import ROOT, hiding_source, proxy_free_env


def run_bench(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A bench script run from the repository root, as the README says, with ``env``."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_a_missing_python_peer_is_one_line_with_the_install_command(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(hiding_source("websockets"))
    env = proxy_free_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    result = run_bench(["bench/capture_bench.py"], env)
    assert result.returncode == 2, result.stderr  # a missing set-up, as bench.py
    assert result.stderr.splitlines() == [
        f"bench/capture_bench.py needs websockets, not installed for {sys.executable}: run "
        f"`{sys.executable} -m pip install '.[bench]'` from the repository root"
    ]


def test_perf_missing_is_one_line_with_the_install_command(tmp_path: Path) -> None:
    env = proxy_free_env()
    env["PATH"] = str(tmp_path)  # no perf (nor anything else) on it
    result = run_bench(["bench/bench.py", "--perf"], env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [bench_perf().PERF_MISSING]


def bench_perf() -> ModuleType:
    """bench/_perf.py, which the bench scripts import from their own directory."""
    spec = importlib.util.spec_from_file_location("bench_perf", ROOT / "bench" / "_perf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_perf_report_is_cut_by_kind_of_code() -> None:
    report = """# Samples: 2K of event 'cpu-clock:ppp'
#
    50.00%  libpython3.11.so.1.0
    20.00%  [kernel.kallsyms]
     8.00%  loop.cpython-311-x86_64-linux-gnu.so
     2.00%  _asyncio.cpython-311-x86_64-linux-gnu.so
     6.00%  node
     4.00%  [JIT] tid 4242
     5.00%  libc.so.6
     3.00%  _speedups.cpython-311-x86_64-linux-gnu.so
     2.00%  nginx
"""
    perf = bench_perf()
    split = perf.split_of(report)
    assert split == pytest.approx({"kernel": 0.2, "runtime": 0.6, "event loop": 0.1, "native": 0.1})
    with pytest.raises(RuntimeError, match="no sample"):
        perf.split_of("# nothing recorded\n")
