"""Fixtures for the bundled plugins' tests, on the shared harness (``tests/conftest.py``).

* ``plugin_proxy(plugin, reverse=True)``: a ``ProxyServer`` in the test's loop with
  ``PluginChain([plugin])``, in reverse mode to ``ws_echo`` (regular mode with
  ``reverse=False``), shut down at the end of the test.
* ``start_cli(*args)``: ``python -m wsproxy --mode reverse:ws://(ws_echo) ARGS`` through
  ``start_proxy``; ``ready=False`` returns at once, for a proxy expected to exit by itself.
* ``load_plugin(name)`` imports ``plugins/NAME.py`` by path, as ``wsproxy -s plugins/NAME.py``
  does from a checkout, and returns a fresh plugin object from it.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.harness import ProxyProcess, ServeProxy, StartProxy, WsUpstream
from wsproxy.proxy.server import ProxyServer

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


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


PluginProxy = Callable[..., Awaitable[ProxyServer]]


@pytest.fixture
def plugin_proxy(serve_proxy: ServeProxy, ws_echo: WsUpstream) -> PluginProxy:
    async def start(plugin: object, *, reverse: bool = True) -> ProxyServer:
        upstream = ws_echo.port if reverse else None
        return await serve_proxy([plugin], upstream, close_timeout=2.0)

    return start


StartCli = Callable[..., Awaitable[ProxyProcess]]


@pytest.fixture
def start_cli(start_proxy: StartProxy, ws_echo: WsUpstream) -> StartCli:
    async def start(*args: str, ready: bool = True) -> ProxyProcess:
        mode = ["--mode", f"reverse:{ws_echo.url}"]
        proc = await start_proxy(*mode, *args, verbose=False, ready=ready)
        if not ready:
            proc.expect_exit()
        return proc

    return start
