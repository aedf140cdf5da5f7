"""The ``log`` plugin through a real proxy: text and JSON lines, per message and per frame."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.harness import WsUpstream, wait_until
from tests.plugins.conftest import PluginProxy, StartCli
from wsproxy.plugins import PluginChain


def options(**values: Any) -> SimpleNamespace:
    base: dict[str, Any] = {
        "log_frames": False,
        "log_json": False,
        "log_file": "",
        "log_max_preview": 80,
    }
    base.update(values)
    return SimpleNamespace(**base)


async def talk(port: int, *messages: str | bytes | list[str]) -> list[str | bytes]:
    """Send each message through the proxy, collect the echoes, close with 1000 'bye'."""
    answers: list[str | bytes] = []
    async with connect(f"ws://127.0.0.1:{port}/chat?x=1", subprotocols=None) as ws:
        for message in messages:
            await ws.send(message)
            answers.append(await ws.recv())
        await ws.close(1000, "bye")
    return answers


def test_log_file_is_created_0600(load_plugin: Callable[[str], Any], tmp_path: Path) -> None:
    path = tmp_path / "ws.log"
    plugin = load_plugin("log")
    old = os.umask(0o022)  # the usual umask: open(path, "a") would make it 0644
    try:
        plugin.configure(options(log_file=str(path)))
    finally:
        os.umask(old)
        plugin.done()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the log holds traffic


async def test_text_lines_to_a_file(
    load_plugin: Callable[[str], Any], plugin_proxy: PluginProxy, tmp_path: Path
) -> None:
    path = tmp_path / "ws.log"
    plugin = load_plugin("log")
    plugin.configure(options(log_file=str(path)))
    proxy = await plugin_proxy(plugin)
    assert await talk(proxy.port, "hello", b"\x00\x01\xff") == ["hello", b"\x00\x01\xff"]
    await wait_until(lambda: path.exists() and "closed by" in path.read_text(), 5)
    lines = path.read_text().splitlines()
    assert len(lines) == 6, lines
    assert f"open ws://127.0.0.1:{proxy.port}" not in lines[0]  # the upstream's URL, not ours
    assert "] open ws://127.0.0.1:" in lines[0] and "/chat?x=1 from 127.0.0.1:" in lines[0]
    assert "extensions=permessage-deflate" in lines[0]
    assert lines[1].endswith("client -> server TEXT z len=5 'hello'")
    assert lines[2].endswith("server -> client TEXT z len=5 'hello'")
    assert lines[3].endswith("client -> server BINARY z len=3 00 01 ff")
    assert lines[4].endswith("server -> client BINARY z len=3 00 01 ff")
    assert "closed by client: client sent 1000 'bye', server sent 1000 'bye'" in lines[5]
    assert "client 2 msgs 3 frames" in lines[5]  # the close frame counts
    assert "server 2 msgs 3 frames" in lines[5]
    assert all("\x1b[" not in line for line in lines)  # a file gets no colours


async def test_json_lines(
    load_plugin: Callable[[str], Any], plugin_proxy: PluginProxy, tmp_path: Path
) -> None:
    path = tmp_path / "ws.jsonl"
    plugin = load_plugin("log")
    plugin.configure(options(log_file=str(path), log_json=True, log_max_preview=4))
    proxy = await plugin_proxy(plugin)
    await talk(proxy.port, "héllo!", b"\x00\x01")
    await wait_until(lambda: path.exists() and '"close"' in path.read_text(), 5)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["event"] for r in records] == ["open", *["message"] * 4, "close"]
    assert {r["conn"] for r in records} == {"c1"}
    opened, first, _, binary, _, closed = records
    assert opened["url"].endswith("/chat?x=1") and opened["subprotocol"] is None
    assert opened["extensions"][0].startswith("permessage-deflate")
    assert first == {
        "time": first["time"],
        "event": "message",
        "conn": "c1",
        "direction": "client",
        "opcode": "text",
        "length": 7,  # bytes, not characters
        "text": "héll",
        "truncated": True,
        "compressed": True,
        "fragments": 1,
        "verdict": "forward",
        "by": None,
    }
    assert binary["base64"] == "AAE=" and binary["truncated"] is False
    assert closed["closed_by"] == "client" and closed["error"] is None
    assert closed["client"]["code"] == 1000 and closed["client"]["reason"] == "bye"
    assert closed["server"]["messages"] == 2


async def test_frames_are_logged_one_line_each(
    load_plugin: Callable[[str], Any], plugin_proxy: PluginProxy, tmp_path: Path
) -> None:
    path = tmp_path / "frames.log"
    plugin = load_plugin("log")
    plugin.configure(options(log_file=str(path), log_frames=True))
    chain = PluginChain([plugin])
    assert chain.wants_frames and not chain.wants_messages  # only the hook it needs
    proxy = await plugin_proxy(plugin)
    assert await talk(proxy.port, ["ab", "cd", "ef"]) == ["abcdef"]
    await wait_until(lambda: path.exists() and "closed by" in path.read_text(), 5)
    lines = path.read_text().splitlines()
    client = [line.split("] ", 1)[1] for line in lines if "client -> server" in line]
    assert client == [
        "client -> server TEXT 1z len=2 'ab'",
        "client -> server CONTINUATION z len=2 'cd'",
        "client -> server CONTINUATION z len=2 'ef'",
        "client -> server CONTINUATION Fz len=0 ''",  # how websockets ends a sent iterable
        "client -> server CLOSE F len=5 code=1000 'bye'",
    ]
    # websockets echoes the reassembled message as one frame.
    assert any(line.endswith("server -> client TEXT F1z len=6 'abcdef'") for line in lines)


async def test_message_mode_asks_for_messages_only(load_plugin: Callable[[str], Any]) -> None:
    plugin = load_plugin("log")
    assert plugin.frame is None and plugin.message is not None  # defaults, before configure
    chain = PluginChain([plugin])
    assert chain.wants_messages and not chain.wants_frames


async def test_stderr_preview_and_colours(
    load_plugin: Callable[[str], Any],
    plugin_proxy: PluginProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.delenv("NO_COLOR", raising=False)
    plugin = load_plugin("log")
    plugin.configure(options(log_max_preview=10))
    proxy = await plugin_proxy(plugin)
    await talk(proxy.port, "x" * 50)
    await wait_until(lambda: "closed by" in terminal.getvalue(), 5)
    lines = terminal.getvalue().splitlines()
    assert lines[1].startswith("\x1b[32m") and lines[1].endswith("'xxxxxxxxxx…'\x1b[0m")
    assert lines[2].startswith("\x1b[36m")  # server -> client in another colour

    monkeypatch.setenv("NO_COLOR", "1")
    terminal.seek(0)
    terminal.truncate()
    await talk(proxy.port, "plain")
    await wait_until(lambda: "closed by" in terminal.getvalue(), 5)
    assert "\x1b[" not in terminal.getvalue()


async def test_modified_messages_name_the_plugin(
    load_plugin: Callable[[str], Any],
    ws_echo: WsUpstream,
    plugin_proxy: PluginProxy,
    tmp_path: Path,
) -> None:
    class Upper:
        name = "upper"

        def message(self, flow: object, message: Any) -> None:
            if message.from_client:
                message.text = message.text.upper()

    path = tmp_path / "ws.log"
    plugin = load_plugin("log")
    plugin.configure(options(log_file=str(path)))
    proxy = await plugin_proxy(plugin)
    assert proxy.chain is not None
    proxy.chain.set_plugins([Upper(), plugin])
    assert await talk(proxy.port, "hi") == ["HI"]
    await wait_until(lambda: "closed by" in path.read_text(), 5)
    assert "client -> server TEXT z len=2 'HI' (modified by upper)" in path.read_text()
    assert ws_echo.received == ["HI"]


async def test_through_the_cli(start_cli: StartCli, tmp_path: Path) -> None:
    path = tmp_path / "cli.jsonl"
    cli = await start_cli("-q", "-s", "log", "--set", "log_json=yes", "--set", f"log_file={path}")
    assert await talk(cli.port, "via the CLI") == ["via the CLI"]
    await wait_until(lambda: path.exists() and '"close"' in path.read_text(), 10)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["event"] for r in records] == ["open", "message", "message", "close"]
    assert records[1]["text"] == "via the CLI"


def test_done_then_configure_reopens_the_file(
    load_plugin: Callable[[str], Any], tmp_path: Path
) -> None:
    path = tmp_path / "again.log"
    plugin = load_plugin("log")
    plugin.configure(options(log_file=str(path)))
    plugin.done()
    plugin.configure(options(log_file=str(path)))
    assert plugin._file is not None and not plugin._file.closed
