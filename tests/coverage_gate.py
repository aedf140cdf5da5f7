"""Branch coverage of every wsproxy/sansio module by tests/sansio alone: at least 98% each.

Run by tests/run.sh (and by hand from the repository root):

    .venv/bin/python tests/coverage_gate.py [extra pytest args]

It runs ``pytest tests/sansio`` under ``coverage run --branch --source=wsproxy.sansio`` (its
own data file, so it never mixes with another run's), then checks each module's figure, as
websockets' ``tests/maxi_cov.py`` does: the sans-I/O core is tested by its own unit tests, not
by the integration tests passing through it. Exit status 1 names every module below its bar.
The C extension (``_speedups.c``) is not measured; ``masking.py`` holds both of its callers'
paths, and tests/sansio/test_masking.py runs every vector through the C and the pure one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SANSIO = ROOT / "wsproxy" / "sansio"

THRESHOLD = 98.0

# Every module has the same bar; an exception would go here, with the reason beside it.
THRESHOLDS: dict[str, float] = {}


def measure(pytest_args: list[str]) -> dict[str, float]:
    """Percent covered (statements and branches) per module file name."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / ".coverage"
        report = Path(tmp) / "coverage.json"
        coverage = [sys.executable, "-m", "coverage"]
        run = [*coverage, "run", "--branch", "--source=wsproxy.sansio", f"--data-file={data}"]
        pytest = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/sansio", *pytest_args]
        subprocess.run([*run, *pytest], cwd=ROOT, check=True)
        subprocess.run(
            [*coverage, "json", "-q", f"--data-file={data}", "-o", str(report)],
            cwd=ROOT,
            check=True,
        )
        files = json.loads(report.read_text())["files"]
    return {Path(name).name: entry["summary"]["percent_covered"] for name, entry in files.items()}


def main() -> int:
    figures = measure(sys.argv[1:])
    modules = sorted(path.name for path in SANSIO.glob("*.py"))
    failed = []
    print(f"{'module':<16} {'covered':>8} {'needed':>7}")
    for name in modules:
        needed = THRESHOLDS.get(name, THRESHOLD)
        covered = figures.get(name)
        if covered is None:  # never imported: --source lists it at 0%, so this is a bug here
            failed.append(f"{name}: not measured")
            continue
        mark = "" if covered >= needed else "  <- below"
        print(f"{name:<16} {covered:>7.1f}% {needed:>6.0f}%{mark}")
        if covered < needed:
            failed.append(f"{name}: {covered:.1f}% < {needed:.0f}%")
    if failed:
        print("coverage gate failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
