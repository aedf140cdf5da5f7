"""Tests of plugins: hooks, bundled plugins, script loading and mitmproxy addons.

Helpers for the loading and mitmproxy tests (``test_loading``, ``test_mitm_compat``):

* ``Upstream`` / ``upstream()``: a ``websockets`` echo server that records upgrade headers,
  messages and how each connection closed.
* ``ProxyProc`` / ``wsproxy_process(...)``: ``python -m wsproxy`` in reverse mode in front of
  the upstream, with ``hide_mitmproxy=True`` run as if mitmproxy were not installed (a
  ``sitecustomize`` on ``PYTHONPATH`` makes ``import mitmproxy`` fail).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.helpers import (
    HOST,
    free_port,
    proxy_free_env,
    stop_group,
    wait_started,
    wsproxy_command,
)

ROOT = Path(__file__).resolve().parents[2]

HIDE_MITMPROXY = '''
import sys


class _HideMitmproxy:
    """Acts as if mitmproxy were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "mitmproxy" or name.startswith("mitmproxy."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden)", name=name)
        return None


sys.meta_path.insert(0, _HideMitmproxy())
'''


@dataclass
class Upstream:
    port: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)
    received: list[str | bytes] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}"


@contextlib.asynccontextmanager
async def upstream() -> AsyncIterator[Upstream]:
    state = Upstream()

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        state.headers.append({k.lower(): v for k, v in ws.request.headers.raw_items()})
        try:
            async for message in ws:
                state.received.append(message)
                await ws.send(message)
        except ConnectionClosed:
            pass
        state.closes.append(ws.close_code)

    async with serve(handler, HOST, 0, ping_interval=None) as server:
        state.port = next(iter(server.sockets)).getsockname()[1]
        yield state


class ProxyProc:
    def __init__(self, args: list[str], tmp: Path, *, hide_mitmproxy: bool = False) -> None:
        self.port = free_port()
        self.stderr_path = tmp / f"wsproxy-{self.port}.log"
        env = proxy_free_env()
        if hide_mitmproxy:
            site = tmp / "hide_mitmproxy"
            site.mkdir(exist_ok=True)
            (site / "sitecustomize.py").write_text(HIDE_MITMPROXY)
            env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
        self.command = wsproxy_command(self.port, tmp / "confdir", *args)
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
                cwd=ROOT,
                start_new_session=True,
            )

    def stderr(self) -> str:
        return self.stderr_path.read_text("utf-8", "replace")

    async def wait_ready(self, timeout: float = 20) -> None:
        await wait_started(self.port, self.proc, self.stderr, timeout)

    async def wait_log(self, predicate: Callable[[str], bool], timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while not predicate(text := self.stderr()):
            assert time.monotonic() < deadline, f"log line never came:\n{text}"
            await asyncio.sleep(0.05)
        return text

    async def stop(self) -> int:
        await stop_group(self.proc, 15)
        return self.proc.wait()


@contextlib.asynccontextmanager
async def wsproxy_process(
    args: list[str], tmp: Path, *, hide_mitmproxy: bool = False
) -> AsyncIterator[ProxyProc]:
    """A running proxy; on exit it is stopped and must have exited 0 with no traceback."""
    proc = ProxyProc(args, tmp, hide_mitmproxy=hide_mitmproxy)
    try:
        await proc.wait_ready()
        yield proc
    finally:
        code = await proc.stop()
    text = proc.stderr()
    assert code == 0, f"wsproxy exited with {code}:\n{text}"
    assert "Traceback" not in text, text
