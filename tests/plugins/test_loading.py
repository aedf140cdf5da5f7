"""Loading plugins: ``-s`` files and bundled names, ``--set``, ``--help-plugins``, hot reload,
and the packaging that makes ``-s log`` work after ``pip install .``."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.harness import HOST, ROOT, proxy_process, running_proxy, ws_upstream
from wsproxy.exceptions import ConfigError, PluginError
from wsproxy.proxy.server import ProxyServer
from wsproxy.scripts import ScriptHost, bundled_names, resolve


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def wsproxy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsproxy", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


@contextlib.asynccontextmanager
async def _serve(host: ScriptHost, up_port: int, tmp_path: Path) -> AsyncIterator[ProxyServer]:
    try:
        async with running_proxy(tmp_path, await host.start(), up_port) as server:
            yield server
    finally:
        await host.stop()


MODULE_HOOKS = """
    seen = []

    def handshake_request(flow):
        flow.request.headers.set("X-Script", "module")

    def message(flow, message):
        seen.append(message.content)
        if message.from_client:
            message.text = message.text.upper()
"""


async def test_module_level_hooks_make_the_module_a_plugin(tmp_path: Path) -> None:
    script = write(tmp_path / "upper.py", MODULE_HOOKS)
    host = ScriptHost([str(script)])
    [plugin] = host.plugins
    assert plugin.__name__.startswith("wsproxy_script_upper")  # type: ignore[attr-defined]
    async with ws_upstream() as up:
        async with (
            _serve(host, up.port, tmp_path) as server,
            connect(f"ws://{HOST}:{server.port}/") as ws,
        ):
            await ws.send("abc")
            assert await ws.recv() == "ABC"
        assert up.received == ["ABC"]
        assert up.headers[0]["x-script"] == "module"
    assert plugin.seen == [b"abc", b"ABC"]  # type: ignore[attr-defined]


PLUGINS_LIST = """
    import helper  # the script's own directory is importable while it loads
    from wsproxy.plugins import Option

    class Tagger:
        name = "tagger"
        options = [
            Option("tag_text", str, "-", "appended to client text"),
            Option("tag_times", int, 1, "how often"),
            Option("tag_on", bool, True, "on or off"),
            Option("tag_ratio", float, 0.5, "a float"),
            Option("tag_words", list, [], "a list"),
        ]

        def __init__(self):
            self.configured = []
            self.running = 0

        def configure(self, options):
            self.configured.append({o.name: getattr(options, o.name) for o in self.options})
            self.text = options.tag_text * options.tag_times if options.tag_on else ""

        def running(self):
            self.running += 1

        def message(self, flow, message):
            if message.from_client:
                message.text = message.text + self.text + helper.SUFFIX

    plugins = [Tagger()]
"""


async def test_plugins_list_and_typed_set_values(tmp_path: Path) -> None:
    write(tmp_path / "helper.py", "SUFFIX = '.'\n")
    script = write(tmp_path / "tagger.py", PLUGINS_LIST)
    sets = ["tag_text=+", "tag_times=0x3", "tag_on=yes", "tag_ratio=2.5"]
    sets += ["tag_words=a", "tag_words=b"]
    host = ScriptHost([str(script)], sets)
    [plugin] = host.plugins
    async with (
        ws_upstream() as up,
        _serve(host, up.port, tmp_path) as server,
        connect(f"ws://{HOST}:{server.port}/") as ws,
    ):
        await ws.send("x")
        assert await ws.recv() == "x+++."
    p: Any = plugin
    assert p.configured == [
        {
            "tag_text": "+",
            "tag_times": 3,
            "tag_on": True,
            "tag_ratio": 2.5,
            "tag_words": ["a", "b"],
        }
    ]


def test_bad_set_values_are_config_errors(tmp_path: Path) -> None:
    script = str(write(tmp_path / "tagger.py", PLUGINS_LIST))
    write(tmp_path / "helper.py", "SUFFIX = '.'\n")
    with pytest.raises(ConfigError, match="tag_on=maybe: not a bool"):
        ScriptHost([script], ["tag_on=maybe"])
    with pytest.raises(ConfigError, match="not a int"):
        ScriptHost([script], ["tag_times=many"])
    with pytest.raises(ConfigError, match="use --set NAME=VALUE"):
        ScriptHost([script], ["tag_times"])
    with pytest.raises(PluginError, match="no such file"):
        ScriptHost([str(tmp_path / "missing.py")])
    with pytest.raises(PluginError, match="no bundled plugin of that name"):
        ScriptHost(["no_such_plugin"])
    broken = write(tmp_path / "broken.py", "x = 1\nraise RuntimeError('at import')\n")
    with pytest.raises(PluginError, match=r"broken.py:2: RuntimeError: at import"):
        ScriptHost([str(broken)])


def test_unknown_option_exits_2_listing_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path / "helper.py", "SUFFIX = '.'\n")
    script = write(tmp_path / "tagger.py", PLUGINS_LIST)
    result = wsproxy("-s", str(script), "--set", "tag_colour=red")
    assert result.returncode == 2
    assert "unknown option 'tag_colour'" in result.stderr
    assert "known: tag_on, tag_ratio, tag_text, tag_times, tag_words" in result.stderr
    assert "Traceback" not in result.stderr
    result = wsproxy("--set", "anything=1")
    assert result.returncode == 2 and "no loaded plugin declares options" in result.stderr


def test_help_plugins_lists_loaded_and_bundled_options(tmp_path: Path) -> None:
    write(tmp_path / "helper.py", "SUFFIX = '.'\n")
    script = write(tmp_path / "tagger.py", PLUGINS_LIST)
    mitm = ROOT / "tests" / "plugins" / "mitm_scripts" / "blocker.py"
    result = wsproxy("--help-plugins", "-s", str(script), "-s", str(mitm))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "tag_times  [int, default 1]\n      how often" in out
    assert "tag_words  [list (repeat --set), default (empty)]" in out
    assert "blocker_word  [str, default secret]" in out
    assert "blocker_reply  [str, default (none)]" in out
    for name in bundled_names():
        assert f"bundled: {name} (-s {name}):" in out
    assert "log_json  [bool, default false]" in out


def test_bundled_names_resolve_from_a_checkout() -> None:
    assert "log" in bundled_names()
    assert resolve("log").name == "log.py"
    assert resolve("plugins/log.py") == (ROOT / "plugins" / "log.py").resolve()


VERSION = """
    import pathlib

    EVENTS = pathlib.Path({events!r})

    def message(flow, message):
        if message.from_client:
            message.text = message.text + "-{tag}"

    def done():
        with EVENTS.open("a") as f:
            f.write("done {tag}\\n")
"""


async def test_hot_reload_keeps_connections_and_refuses_broken_versions(tmp_path: Path) -> None:
    events = tmp_path / "events.txt"
    script = tmp_path / "live.py"
    write(script, VERSION.format(events=str(events), tag="v1"))
    async with ws_upstream() as up:
        args = ["--mode", f"reverse:{up.url}", "-s", str(script)]
        async with (
            proxy_process(args, tmp_path / "confdir", tmp_path, verbose=False) as proxy,
            connect(f"ws://{HOST}:{proxy.port}/") as ws,
        ):
            await ws.send("a")
            assert await ws.recv() == "a-v1"

            write(script, VERSION.format(events=str(events), tag="v2 (longer)"))
            await proxy.wait_log(lambda t: "script live.py reloaded" in t)
            await ws.send("b")
            assert await ws.recv() == "b-v2 (longer)"
            assert events.read_text() == "done v1\n"

            write(script, "def message(flow, message):\n    return (\n")
            text = await proxy.wait_log(lambda t: "reload failed" in t)
            await ws.send("c")
            assert await ws.recv() == "c-v2 (longer)"

            write(script, "import json\n\n\njson.loads('{')\n")
            text = await proxy.wait_log(lambda t: t.count("reload failed") == 2)
            await ws.send("d")
            assert await ws.recv() == "d-v2 (longer)"
        assert up.received == ["a-v1", "b-v2 (longer)", "c-v2 (longer)", "d-v2 (longer)"]
    lines = [line for line in text.splitlines() if "reload failed" in line]
    assert "live.py: reload failed, keeping the previous version:" in lines[0]
    assert f"{script}:2: SyntaxError:" in lines[0]
    assert f"{script}:4: JSONDecodeError:" in lines[1]
    assert events.read_text() == "done v1\ndone v2 (longer)\n"  # the last at shutdown


async def test_reload_in_process_swaps_the_chain(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = write(tmp_path / "swap.py", "def message(flow, message):\n    message.text += '1'\n")
    host = ScriptHost([str(script)])
    chain = await host.start()
    before = list(chain.plugins)
    assert await host.reload_changed() == []  # nothing changed yet
    write(script, "def message(flow, message):\n    message.text += '22'\n")
    with caplog.at_level(logging.WARNING, logger="wsproxy"):
        assert len(await host.reload_changed()) == 1
    assert chain.plugins != before and "swap.py reloaded" in caplog.text
    await host.stop()


# -- packaging ---------------------------------------------------------------------------------


def test_every_wsproxy_package_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "wsproxy").rglob("__init__.py")
    }
    assert found <= listed, f"add these to [tool.setuptools] packages: {sorted(found - listed)}"
    assert config["package-dir"]["wsproxy_plugins"] == "plugins"


@pytest.mark.timeout(600)
def test_wheel_ships_the_bundled_plugins(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    [wheel] = tmp_path.glob("wsproxy-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for plugin in (ROOT / "plugins").glob("*.py"):
        assert f"wsproxy_plugins/{plugin.name}" in names
    for required in ("log", "rewrite", "block", "fault"):
        assert f"wsproxy_plugins/{required}.py" in names
    assert "wsproxy/scripts.py" in names and "wsproxy/mitmcompat/shim.py" in names
