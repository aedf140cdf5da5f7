"""Branch coverage of every module of the pure packages (wsproxy/sansio, wsproxy/decoders,
wsproxy/filters) by their own unit tests alone (tests/sansio, tests/decoders, tests/filters):
at least 98% each.

Run by tests/run.sh (and by hand from the repository root):

    .venv/bin/python tests/coverage_gate.py [extra pytest args]

For each package it runs ``pytest tests/NAME`` under ``coverage run --branch
--source=wsproxy.NAME`` (its own data file, so it never mixes with another run's), then checks
each module's figure, as websockets' ``tests/maxi_cov.py`` does: the pure core is tested by
its own unit tests, not by the integration tests passing through it. Exit status 1 names every
module below its bar. The C extension (``_speedups.c``) is not measured; ``masking.py`` holds
both of its callers' paths, and tests/sansio/test_masking.py runs every vector through the C
and the pure one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The pure packages and the unit tests that must cover them on their own.
PACKAGES = {"sansio": "tests/sansio", "decoders": "tests/decoders", "filters": "tests/filters"}

THRESHOLD = 98.0

# Every module has the same bar; an exception would go here, with the reason beside it.
THRESHOLDS: dict[str, float] = {}


def measure(package: str, tests: str, pytest_args: list[str]) -> dict[str, float]:
    """Percent covered (statements and branches) per module file name of ``package``."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / ".coverage"
        report = Path(tmp) / "coverage.json"
        coverage = [sys.executable, "-m", "coverage"]
        source = f"--source=wsproxy.{package}"
        run = [*coverage, "run", "--branch", source, f"--data-file={data}"]
        pytest = ["-m", "pytest", "-q", "-p", "no:cacheprovider", tests, *pytest_args]
        subprocess.run([*run, *pytest], cwd=ROOT, check=True)
        subprocess.run(
            [*coverage, "json", "-q", f"--data-file={data}", "-o", str(report)],
            cwd=ROOT,
            check=True,
        )
        files = json.loads(report.read_text())["files"]
    return {Path(name).name: entry["summary"]["percent_covered"] for name, entry in files.items()}


def main() -> int:
    failed = []
    for package, tests in PACKAGES.items():
        failed += check(package, measure(package, tests, sys.argv[1:]))
    if failed:
        print("coverage gate failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


def check(package: str, figures: dict[str, float]) -> list[str]:
    """Print each module's figure; the ones below their bar."""
    failed = []
    modules = sorted(path.name for path in (ROOT / "wsproxy" / package).glob("*.py"))
    print(f"{package + '/ module':<24} {'covered':>8} {'needed':>7}")
    for name in modules:
        where = f"{package}/{name}"
        needed = THRESHOLDS.get(where, THRESHOLD)
        covered = figures.get(name)
        if covered is None:  # never imported: --source lists it at 0%, so this is a bug here
            failed.append(f"{where}: not measured")
            continue
        mark = "" if covered >= needed else "  <- below"
        print(f"{name:<24} {covered:>7.1f}% {needed:>6.0f}%{mark}")
        if covered < needed:
            failed.append(f"{where}: {covered:.1f}% < {needed:.0f}%")
    return failed


if __name__ == "__main__":
    sys.exit(main())
