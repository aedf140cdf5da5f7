"""What the bundled plugins cost: 64-byte messages through wsproxy with no plugin, `log`, `rewrite`.

Run by hand (never as a test), from the repository root:

    .venv/bin/python bench/plugin_bench.py              # about 2-3 minutes
    .venv/bin/python bench/plugin_bench.py -r 5 --duration 5

It runs bench/bench.py three times, `--targets direct,wsproxy --scenarios pipe1`, once per
wsproxy configuration (`--wsproxy-args`), and merges the three `--json` outputs into one
table: round trips/s and proxy CPU µs per round trip, beside the `direct` figure of the same
run (the harness's own ceiling, to see how much the machine moved between the runs).

* no plugin: `python -m wsproxy --mode reverse:... -q`
* log: `-s log --set log_file=TMP/log.txt` (one line per message, appended to a file)
* rewrite: `-s rewrite --set rewrite_rules=TMP/rules.json` with one regex rule that matches
  every message the load generator sends (`^[a-z]{8}` → `XXXXXXXX`, client to server); the
  echo comes back changed and no longer matches (the regex is still searched). bench.py's
  start-up check (`check-xxxx...`) does not match it, so it still passes byte for byte.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import render

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RULE = {"name": "mask-8", "direction": "client", "match": "^[a-z]{8}", "replace": "XXXXXXXX"}


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 10000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}"


def run_bench(extra: list[str], wsproxy_args: str, out: Path) -> tuple[int, dict[str, Any]]:
    cmd = [sys.executable, str(BENCH_DIR / "bench.py"), "--targets", "direct,wsproxy"]
    cmd += ["--scenarios", "pipe1", f"--wsproxy-args={wsproxy_args}", "--json", str(out), *extra]
    print(f"$ {shlex.join(cmd)}", file=sys.stderr, flush=True)
    # bench.py prints its own table on stdout: send it to stderr with the progress lines.
    proc = subprocess.Popen(cmd, cwd=REPO_DIR, stdout=sys.stderr, start_new_session=True)
    try:
        rc = proc.wait()
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)  # bench.py stops its children on SIGTERM
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
    doc = json.loads(out.read_text()) if out.exists() else {}
    return rc, doc


def median_of(doc: dict[str, Any], target: str, key: str) -> float | None:
    try:
        value = doc["scenarios"]["pipe1"]["targets"][target]["median"].get(key)
    except (KeyError, TypeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="wsproxy plugin cost (see bench/README.md)")
    ap.add_argument("-r", "--repeats", type=int, default=3, help="bench.py rounds per config (3)")
    ap.add_argument("--duration", type=float, help="seconds per run (bench.py default: 4)")
    ap.add_argument("--quick", action="store_true", help="bench.py --quick (1 s runs)")
    ap.add_argument("--json", metavar="FILE", help="the three bench.py documents and the table")
    ap.add_argument("--keep-logs", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="wsproxy-pluginbench-"))
    rules = tmp / "rules.json"
    rules.write_text(json.dumps({"rules": [RULE]}, indent=2) + "\n")
    logfile = tmp / "log.txt"
    configs = [
        ("no plugin", ""),
        ("-s log (to a file)", f"-s log --set log_file={logfile}"),
        ("-s rewrite (1 regex rule)", f"-s rewrite --set rewrite_rules={rules}"),
    ]
    extra = ["-r", str(args.repeats)]
    if args.duration is not None:
        extra += ["--duration", str(args.duration)]
    if args.quick:
        extra.append("--quick")

    docs: dict[str, Any] = {}
    failed = False
    for label, wargs in configs:
        rc, doc = run_bench(extra, wargs, tmp / f"bench-{len(docs)}.json")
        failed |= rc != 0
        docs[label] = doc
    log_bytes = logfile.stat().st_size if logfile.exists() else 0
    log_lines = sum(1 for _ in logfile.open("rb")) if logfile.exists() else 0

    base = median_of(docs["no plugin"], "wsproxy", "cpu_us_per_rt")
    rows = [
        [
            "wsproxy config",
            "round trips/s",
            "proxy CPU µs/round trip",
            "CPU vs no plugin",
            "proxy CPU %",
            "direct round trips/s (same run)",
        ]
    ]
    for label, _ in configs:
        doc = docs[label]
        cpu = median_of(doc, "wsproxy", "cpu_us_per_rt")
        rows.append(
            [
                label,
                fmt(median_of(doc, "wsproxy", "msgs_per_s")),
                fmt(cpu),
                f"{cpu / base:.2f}x" if cpu is not None and base else "-",
                fmt(median_of(doc, "wsproxy", "proxy_cpu_pct")),
                fmt(median_of(doc, "direct", "msgs_per_s")),
            ]
        )
    meta = docs["no plugin"].get("meta", {})
    print()
    print(
        f"wsproxy plugins, pipe1: 64 B text, 1 conn, 100 in flight; {meta.get('cpus')} CPUs, "
        f"median of {args.repeats} runs per config, one bench.py run per config"
    )
    print(render(rows))
    print(
        f"\nlog file written by -s log: {log_bytes / 1e6:.1f} MB, {log_lines:,} lines; "
        f"rewrite rule: {json.dumps(RULE)}"
    )
    if failed:
        print("\nsome bench.py runs failed: see their output above (stderr)")
    if args.json:
        table = rows
        Path(args.json).write_text(json.dumps({"runs": docs, "table": table}, indent=2) + "\n")
    if args.keep_logs or failed:
        print(f"temporary files kept in {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
