"""Where a proxy's CPU goes, by kind of code (``bench.py --perf``).

``perf record`` samples the proxy's processes during the measured window; each sample is
counted against the file its instruction pointer was in (``perf report --sort dso``), and the
files fall into four kinds:

* ``kernel``: system calls, TCP on loopback, wakeups: what any proxy pays for its bytes;
* ``runtime``: the language's interpreter or virtual machine (libpython, or node's binary and
  the code its JIT wrote), that is the cost of running the proxy's own logic in that language;
* ``event loop``: an event loop compiled to machine code (uvloop and libuv, asyncio's C
  accelerator);
* ``native``: everything else in user space (nginx itself, libc, OpenSSL, wsproxy's C
  extension).

Multiplied by the proxy's CPU per operation (read from /proc as always) they say how many
microseconds of each kind one round trip or connection costs: the figure that says whether a
proxy is held back by the kernel, which nobody can cut, or by its interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import subprocess
from pathlib import Path

PERF_MISSING = (
    "perf is not installed: run `apt-get install -y linux-perf` (Debian; `linux-tools-$(uname -r)`"
    " on Ubuntu), as root or with kernel.perf_event_paranoid <= 1"
)
KINDS = ("kernel", "runtime", "event loop", "native")
# Samples a second and thread: low enough that perf costs the proxy well under 5% of its CPU.
FREQUENCY = 999
_REPORT_LINE = re.compile(r"^\s*([0-9.]+)%\s+(\S.*?)\s*$")
_RUNTIME = re.compile(r"^(libpython\d|python\d|node$|libnode|\[JIT\]|perf-\d+\.map|jitted-)")
_EVENT_LOOP = re.compile(r"^(loop\.cpython|libuv|_asyncio\.cpython)")


def find_perf() -> str | None:
    return shutil.which("perf")


def kind_of(dso: str) -> str:
    """The kind of code a ``perf report`` file name (dso) holds; see the module's docstring."""
    if dso.startswith("[kernel"):  # [kernel.kallsyms], [kernel.vmlinux]
        return "kernel"
    name = Path(dso).name
    if _RUNTIME.match(name):
        return "runtime"
    if _EVENT_LOOP.match(name):
        return "event loop"
    return "native"


def split_of(report: str) -> dict[str, float]:
    """The share (0 to 1) of each kind in ``perf report --sort dso --stdio`` output."""
    shares = dict.fromkeys(KINDS, 0.0)
    for line in report.splitlines():
        if line.startswith("#"):
            continue
        match = _REPORT_LINE.match(line)
        if match is not None:
            shares[kind_of(match.group(2))] += float(match.group(1)) / 100
    total = sum(shares.values())
    if total <= 0:
        raise RuntimeError("perf recorded no sample of the proxy")
    return {kind: share / total for kind, share in shares.items()}


class PerfRecording:
    """``perf record`` of ``pids`` from ``start`` to ``stop``; ``stop`` returns the split."""

    def __init__(self, perf: str, pids: list[int], data: Path, log: Path) -> None:
        self.perf, self.pids, self.data, self.log = perf, pids, data, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                self.perf, "record", "-q", "-F", str(FREQUENCY), "-o", str(self.data),
                "-p", ",".join(map(str, self.pids)),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        # perf writes its file's header once it has attached to every thread: from then on
        # it counts, so the window starts after it.
        for _ in range(200):
            if self.data.exists() and self.data.stat().st_size > 0:
                return
            if self.proc.returncode is not None:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 0.025)
        raise RuntimeError(f"perf record did not start; see {self.log}")

    async def stop(self) -> dict[str, float]:
        proc = self.proc
        if proc is None:
            raise RuntimeError("perf record was not started")
        self.proc = None
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 30)
        report = await asyncio.create_subprocess_exec(
            self.perf, "report", "-i", str(self.data), "--sort", "dso", "--stdio", "-q",
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(report.communicate(), 60)
        self.data.unlink(missing_ok=True)
        return split_of(out.decode("utf-8", "replace"))

    async def abort(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None
        self.data.unlink(missing_ok=True)
