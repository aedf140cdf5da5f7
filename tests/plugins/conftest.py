"""Fixtures for the bundled plugins' tests: a real in-process proxy in front of a real server.

* ``echo`` is a ``websockets`` echo server in the test's event loop (permessage-deflate on, as
  websockets negotiates by default); it records what it received, so a test can tell what the
  proxy forwarded upstream from what came back, and counts the connections it is done with.
* ``start_proxy(plugin, reverse=True)`` starts a ``ProxyServer`` with ``PluginChain([plugin])``
  on a free port, in reverse mode to the echo server (or regular mode with
  ``reverse=False``), and shuts it down at the end of the test.
* ``start_cli(*args)`` runs ``python -m wsproxy --mode reverse:ws://(echo) ARGS`` on a free
  port, waits until it listens, and stops it with SIGTERM at the end (``Cli.stderr()``).
* ``load_plugin(name)`` imports ``plugins/NAME.py`` by path, as ``wsproxy -s plugins/NAME.py``
  does from a checkout, and returns a fresh plugin object from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
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
from wsproxy.options import Options, ReverseTarget
from wsproxy.plugins import PluginChain
from wsproxy.proxy.server import ProxyServer

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


@dataclass
class Echo:
    port: int
    received: list[str | bytes] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    finished: int = 0  # connections whose handler has seen every message and the close
    # Off for tests that send and close at once: websockets blocks a send made after the
    # peer's close until the TCP connection is gone, which holds up the messages behind it.
    echo: bool = True


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    state = Echo(0)

    async def handler(ws: ServerConnection) -> None:
        state.paths.append(ws.request.path if ws.request is not None else "")
        try:
            async for message in ws:
                state.received.append(message)
                if state.echo:
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send(message)
        except ConnectionClosed:
            pass  # an abnormal close (a plugin's 1008 or 1011) ends the loop with an error
        finally:
            state.finished += 1

    async with serve(handler, HOST, 0, max_size=None) as server:
        state.port = next(iter(server.sockets)).getsockname()[1]
        yield state


def plugin_module(name: str) -> ModuleType:
    """``plugins/NAME.py`` loaded by path, under a private module name."""
    module_name = f"_wsproxy_plugin_{name}"
    spec = importlib.util.spec_from_file_location(module_name, PLUGINS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def load_plugin() -> Iterator[Callable[[str], Any]]:
    loaded: list[Any] = []

    def load(name: str) -> Any:
        module = plugin_module(name)
        assert len(module.plugins) == 1
        plugin = type(module.plugins[0])()  # a fresh object: no state shared between tests
        loaded.append(plugin)
        return plugin

    yield load
    for plugin in loaded:
        if callable(getattr(plugin, "done", None)):
            plugin.done()


StartProxy = Callable[..., Awaitable[ProxyServer]]


@pytest.fixture
async def start_proxy(echo: Echo, tmp_path: Path) -> AsyncIterator[StartProxy]:
    servers: list[ProxyServer] = []

    async def start(plugin: object, *, reverse: bool = True) -> ProxyServer:
        options = Options(
            listen_host=HOST,
            listen_port=0,
            reverse=ReverseTarget("ws", HOST, echo.port) if reverse else None,
            confdir=tmp_path / "confdir",
            verbosity=-1,
            close_timeout=2.0,
        )
        server = ProxyServer(options, None, PluginChain([plugin]))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.shutdown()


@dataclass
class Cli:
    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text("utf-8", "replace")


StartCli = Callable[..., Awaitable[Cli]]


@pytest.fixture
async def start_cli(echo: Echo, tmp_path: Path) -> AsyncIterator[StartCli]:
    started: list[Cli] = []
    env = proxy_free_env()

    async def start(*args: str, ready: bool = True) -> Cli:
        port = free_port()
        stderr_path = tmp_path / f"wsproxy-{len(started)}.err"
        command = wsproxy_command(
            port, tmp_path / "confdir", "--mode", f"reverse:ws://{HOST}:{echo.port}", *args
        )
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
                cwd=PLUGINS.parent,
                start_new_session=True,
            )
        cli = Cli(proc, port, stderr_path)
        started.append(cli)
        if not ready:
            return cli
        await wait_started(port, proc, cli.stderr, 15)
        return cli

    yield start
    for cli in started:
        await stop_group(cli.proc, 15)
        assert "Traceback" not in cli.stderr(), cli.stderr()


async def wait_exit(cli: Cli, timeout: float = 15) -> int:
    """The exit status of a wsproxy process expected to stop by itself."""
    return await asyncio.to_thread(cli.proc.wait, timeout)
