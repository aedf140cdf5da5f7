"""Helpers shared by the test packages: ports, wsproxy subprocesses, /proc readings.

* ``free_port()``: a TCP port on ``HOST`` nothing listens on right now.
* ``wsproxy_command(port, confdir, *args)``: ``python -m wsproxy`` listening on ``HOST:port``.
* ``proxy_free_env()``: this environment without ``*proxy*`` variables, unbuffered output.
* ``wait_accepting(port, proc, timeout)`` (and ``wait_accepting_sync``): poll until the port
  accepts a connection; ``ProcessExited`` if ``proc`` ends first, ``TimeoutError`` after
  ``timeout`` seconds; ``wait_started`` fails the test instead, with the process's log.
* ``running_proxy(tmp_path, plugins, upstream_port)``: a ``ProxyServer`` in the test's loop
  (reverse mode in front of ``upstream_port``, or regular mode when it is None).
* ``stop_group(proc, timeout)`` (and ``stop_group_sync``): SIGTERM, then SIGKILL of the
  whole process group if it hangs; ``kill_group(proc)`` at once.
* ``status_kib(pid, field)``: a ``/proc/PID/status`` field such as VmRSS or VmHWM, in KiB.
* ``Memory(pid)``: a process's peak RSS from now on (``growth_kib()``), against its RSS now.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from wsproxy.options import Options, ReverseTarget
from wsproxy.plugins import PluginChain
from wsproxy.proxy.server import ProxyServer

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nothing listens on right now (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wsproxy_command(port: int, confdir: Path | str, *args: str) -> list[str]:
    """``python -m wsproxy`` listening on ``HOST:port`` with ``confdir``, then ``args``."""
    return [
        sys.executable,
        "-m",
        "wsproxy",
        "--listen-host",
        HOST,
        "-p",
        str(port),
        "--confdir",
        str(confdir),
        *args,
    ]


def proxy_free_env() -> dict[str, str]:
    """``os.environ`` without any variable whose name mentions a proxy (``http_proxy`` and
    the like must not steer the subprocess), and with ``PYTHONUNBUFFERED=1``."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ProcessExited(Exception):
    """The process ended before its port accepted a connection."""


async def wait_accepting(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll until ``HOST:port`` accepts a connection (closed at once)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ProcessExited(f"exited with {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing accepts on {HOST}:{port} after {timeout} s") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


async def wait_started(
    port: int, proc: subprocess.Popen[bytes], log: Callable[[], str], timeout: float
) -> None:
    """``wait_accepting``, failing the test with ``log()`` (the process's output) if the
    process exits first or the port does not open within ``timeout`` seconds."""
    try:
        await wait_accepting(port, proc, timeout)
    except (ProcessExited, TimeoutError) as e:
        raise AssertionError(f"wsproxy did not start ({e}):\n{log()}") from None


def wait_accepting_sync(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """``wait_accepting`` outside an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ProcessExited(f"exited with {proc.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing accepts on {HOST}:{port} after {timeout} s") from None
            time.sleep(0.05)


def kill_group(proc: subprocess.Popen[bytes]) -> bool:
    """SIGKILL the process group of ``proc`` (started with ``start_new_session=True``) if
    ``proc`` still runs; True if it did."""
    if proc.poll() is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    return True


async def stop_group(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """SIGTERM ``proc``; SIGKILL its whole process group if it still runs after ``timeout``
    seconds. True if it had to be killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    return kill_group(proc)


def stop_group_sync(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """``stop_group`` outside an event loop."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    return kill_group(proc)


def status_kib(pid: int, field_name: str) -> int:
    """A field of ``/proc/PID/status`` given in kB (VmRSS, VmHWM, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field_name} in /proc/{pid}/status")


class Memory:
    """A process's peak RSS from now on, compared with its RSS now."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        # Reset VmHWM to the current RSS, so the peak is this run's (ours to write: same user).
        with contextlib.suppress(OSError), open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        self.start = status_kib(pid, "VmRSS")
        self.start_hwm = status_kib(pid, "VmHWM")

    def growth_kib(self) -> int:
        """Peak RSS since the start, minus RSS at the start (KiB)."""
        hwm = status_kib(self.pid, "VmHWM")
        # Without the reset (clear_refs refused), compare with the peak before the run.
        baseline = self.start if self.start_hwm <= self.start + 1024 else self.start_hwm
        return hwm - baseline


@contextlib.asynccontextmanager
async def running_proxy(
    tmp_path: Path,
    plugins: Sequence[object] | None,
    upstream_port: int | None = None,
    **options: Any,
) -> AsyncIterator[ProxyServer]:
    """A proxy in this loop: reverse mode in front of ``upstream_port`` (regular when None);
    ``plugins`` None means no chain at all."""
    reverse = None if upstream_port is None else ReverseTarget("ws", HOST, upstream_port)
    opts = Options(listen_port=0, reverse=reverse, confdir=tmp_path, verbosity=-1, **options)
    chain = None if plugins is None else PluginChain(list(plugins))
    server = ProxyServer(opts, None, chain)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()
