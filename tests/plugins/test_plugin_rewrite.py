"""The ``rewrite`` plugin through a real proxy: regex, JSON path, direction, host, hit counts."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.harness import ROOT, StartProxy, WsUpstream, wait_until
from tests.plugins.conftest import PluginProxy, StartCli, plugin_module
from wsproxy.exceptions import ConfigError
from wsproxy.model import Message
from wsproxy.plugins import PluginChain

Load = Callable[[str], Any]


def rewrite_with(load_plugin: Load, tmp_path: Path, rules: Any, suffix: str = ".json") -> Any:
    path = tmp_path / f"rules{suffix}"
    path.write_text(json.dumps(rules), encoding="utf-8")
    plugin = load_plugin("rewrite")
    plugin.configure(SimpleNamespace(rewrite_rules=str(path)))
    return plugin


async def exchange(port: int, messages: Sequence[str | bytes], path: str = "/") -> list[Any]:
    async with connect(f"ws://127.0.0.1:{port}{path}", proxy=None) as ws:
        answers = []
        for message in messages:
            await ws.send(message)
            answers.append(await ws.recv())
    return answers


async def test_regex_with_backreferences_by_direction(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy, tmp_path: Path
) -> None:
    plugin = rewrite_with(
        load_plugin,
        tmp_path,
        [
            {"name": "mask-token", "direction": "client", "match": r"token=(\w)\w*",
             "replace": r"token=\1***"},
            {"name": "greet", "direction": "server", "match": "hello", "replace": "bye"},
            {"name": "ping", "match": "^ping$", "content": "pong"},
        ],
    )  # fmt: skip
    proxy = await plugin_proxy(plugin)
    answers = await exchange(proxy.port, ["token=abcdef&x=1", "hello world", "ping", "pingpong"])
    assert ws_echo.received == ["token=a***&x=1", "hello world", "pong", "pingpong"]
    assert answers == ["token=a***&x=1", "bye world", "pong", "pingpong"]
    assert plugin.hits == {"mask-token": 1, "greet": 1, "ping": 1}  # the echo is "pong"


async def test_json_paths(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy, tmp_path: Path
) -> None:
    plugin = rewrite_with(
        load_plugin,
        tmp_path,
        {
            "rules": [
                {"name": "anon", "direction": "client", "json_path": "$.user.name",
                 "set": {"first": "A."}},
                {"name": "secret", "direction": "client", "json_path": "items[1].secret",
                 "match": ".", "replace": "*"},
                {"name": "dotted", "direction": "client", "json_path": '$["a.b"]', "set": None},
            ]
        },
    )  # fmt: skip
    proxy = await plugin_proxy(plugin)
    sent = [
        '{"user": {"name": "Ann", "id": 7}}',
        '{"items":[{"secret":"x"},{"secret":"hunter2"}]}',
        '{"a.b":1,"a":{"b":2}}',
        '{"user": []}',  # no such path: unchanged
        "not json",
        '{"items":[{"secret":"x"}]}',  # index out of range: unchanged
    ]
    await exchange(proxy.port, sent)
    assert ws_echo.received == [
        '{"user": {"name": {"first": "A."}, "id": 7}}',
        '{"items":[{"secret":"x"},{"secret":"*******"}]}',
        '{"a.b":null,"a":{"b":2}}',
        *sent[3:],
    ]
    assert plugin.hits == {"anon": 1, "secret": 1, "dotted": 1}


async def test_host_path_and_binary_rules(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy, tmp_path: Path
) -> None:
    plugin = rewrite_with(
        load_plugin,
        tmp_path,
        [
            {"name": "here", "host": r"^127\.0\.0\.1$", "path": "^/api", "match": "a",
             "replace": "A", "direction": "client"},
            {"name": "elsewhere", "host": "example", "match": ".", "replace": "X"},
            {"name": "bytes", "opcode": "binary", "match": "\\x00+", "replace": "-",
             "direction": "client"},
        ],
    )  # fmt: skip
    proxy = await plugin_proxy(plugin)
    await exchange(proxy.port, ["banana", b"a\x00\x00b"], path="/api/v1")
    await exchange(proxy.port, ["banana", b"a\x00\x00b"], path="/other")
    assert ws_echo.received == ["bAnAnA", b"a-b", "banana", b"a-b"]
    assert plugin.hits == {"here": 1, "bytes": 2}


async def test_hits_are_logged_per_flow_and_in_total(
    load_plugin: Load,
    plugin_proxy: PluginProxy,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wsproxy")
    rules = """
- name: mask-token
  match: secret
  replace: '***'
- name: never
  match: zzz
  content: z
"""
    path = tmp_path / "rules.yaml"
    path.write_text(rules)
    plugin = load_plugin("rewrite")
    plugin.configure(SimpleNamespace(rewrite_rules=str(path)))
    proxy = await plugin_proxy(plugin)
    await exchange(proxy.port, ["secret", "public", "secret secret"])
    await wait_until(lambda: "hit" in caplog.text, 5)
    # A rule hits once per message it matched, however many replacements it made.
    assert "rewrite: [c1] rule 'mask-token' hit 2 times" in caplog.messages
    assert not any("'never'" in line for line in caplog.messages)
    plugin.done()
    assert "rewrite: rule 'mask-token' hit 2 times in total" in caplog.messages
    assert "rewrite: rule 'never' hit 0 times in total" in caplog.messages


async def test_compressed_stream_stays_correct_after_a_rewrite(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy, tmp_path: Path
) -> None:
    """A changed message in a context-takeover stream, then many unchanged ones that point
    back into the compressor's window: every one must arrive intact, both ways."""
    plugin = rewrite_with(
        load_plugin, tmp_path, [{"name": "first", "match": "^message 0 ", "replace": "MSG 0 "}]
    )
    proxy = await plugin_proxy(plugin)
    sent = [f"message {i} " + "repeated payload " * 20 for i in range(300)]
    async with connect(f"ws://127.0.0.1:{proxy.port}/", proxy=None) as ws:
        assert ws.protocol.extensions and ws.protocol.extensions[0].name == "permessage-deflate"
        remote: Any = ws.protocol.extensions[0]
        assert not remote.local_no_context_takeover and not remote.remote_no_context_takeover
        for message in sent:
            await ws.send(message)
        answers = [await ws.recv() for _ in sent]
    expected = ["MSG 0 " + sent[0].removeprefix("message 0 "), *sent[1:]]
    assert ws_echo.received == expected
    assert answers == expected


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[{", "invalid JSON"),
        ('{"rule": []}', "expected a list of rules"),
        ('[{"match": "a"}]', "rule 1: a rule needs exactly one of replace, set, content"),
        ('[{"match": "a", "replace": "b", "content": "c"}]', "exactly one of"),
        ('[{"name": "bad", "match": "(", "replace": ""}]', "rule 1 ('bad'): match: invalid regex"),
        ('[{"match": "a", "replace": "\\\\2"}]', "replace '\\\\2': invalid group reference"),
        ('[{"replace": "b"}]', "replace needs a match regex"),
        ('[{"set": 1}]', "set needs a json_path"),
        ('[{"json_path": "a..b", "set": 1}]', "json_path 'a..b': cannot parse"),
        ('[{"json_path": "$", "set": 1}]', "names no key"),
        ('[{"match": "a", "replace": "b", "direction": "up"}]', "direction is client, server"),
        ('[{"match": "a", "replace": "b", "opcode": "ping"}]', "opcode is text, binary or any"),
        ('[{"match": "a", "replace": "b", "hots": "x"}]', "unknown key(s) hots"),
        ('[{"content": 5}]', "content must be a string"),
        ('[{"name": "x", "content": "a"}, {"name": "x", "content": "b"}]', "two rules named"),
        ('[{"event": "(", "set": 1}]', "event: invalid regex"),
        ('[{"value_path": 3, "set": 1}]', "value_path must be a string"),
        ('[{"value_path": "a..b", "set": 1}]', "json_path 'a..b': cannot parse"),
        ('[{"json_path": "a", "event": "e", "set": 1}]', "with decoded fields use value_path"),
    ],
)
def test_invalid_rules_files(load_plugin: Load, tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "rules.json"
    path.write_text(content)
    plugin = load_plugin("rewrite")
    with pytest.raises(ConfigError) as caught:
        plugin.configure(SimpleNamespace(rewrite_rules=str(path)))
    assert str(caught.value).startswith(f"rewrite_rules {path}: ")
    assert problem in str(caught.value)


def test_missing_and_yaml_files(
    load_plugin: Load, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = load_plugin("rewrite")
    with pytest.raises(ConfigError, match="cannot read it"):
        plugin.configure(SimpleNamespace(rewrite_rules=str(tmp_path / "nope.yaml")))
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        plugin.configure(SimpleNamespace(rewrite_rules=str(bad)))
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    with pytest.raises(ConfigError, match="-m pip install pyyaml`, or write the rules as JSON"):
        plugin.configure(SimpleNamespace(rewrite_rules=str(bad)))
    plugin.configure(SimpleNamespace(rewrite_rules=""))
    assert plugin.message is None  # no rules: the chain is not asked to reassemble messages


def test_module_does_not_import_yaml_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    assert plugin_module("rewrite").plugins


async def test_through_the_cli(start_cli: StartCli, ws_echo: WsUpstream, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("- name: up\n  direction: client\n  match: '(\\w+)'\n  replace: '<\\1>'\n")
    cli = await start_cli("-q", "-s", "rewrite", "--set", f"rewrite_rules={rules}")
    assert await exchange(cli.port, ["a b"]) == ["<a> <b>"]
    assert ws_echo.received == ["<a> <b>"]


async def test_an_invalid_file_stops_the_cli(start_cli: StartCli, tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text('[{"name": "oops", "match": "(", "replace": "x"}]')
    cli = await start_cli("-s", "rewrite", "--set", f"rewrite_rules={rules}", ready=False)
    assert await cli.wait_exit(15) != 0
    assert f"rewrite_rules {rules}: rule 1 ('oops'): match: invalid regex" in cli.stderr()


def readme_rules() -> str:
    """The README's example rules file (the yaml block under the rewrite plugin)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("* **`rewrite`**") :]
    block = section[section.index("```yaml\n") + len("```yaml\n") : section.index("```\n", 8)]
    return "\n".join(line.removeprefix("  ") for line in block.splitlines()) + "\n"


async def test_the_readme_yaml_example_through_the_cli(
    start_cli: StartCli, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(readme_rules())
    cli = await start_cli("-s", "rewrite", "--set", f"rewrite_rules={rules}")
    sent = ["token=abc&x=1", '{"user": {"name": "alice"}}']
    assert await exchange(cli.port, sent) == ["token=***&x=1", '{"user": {"name": "anonymous"}}']
    assert ws_echo.received == ["token=***&x=1", '{"user": {"name": "alice"}}']


def test_a_plain_install_brings_pyyaml() -> None:
    """PyYAML is a dependency, not an extra: the README's ``pip install .`` reads YAML rules."""
    from importlib.metadata import requires

    plain = [r for r in requires("wsproxy") or [] if "extra ==" not in r]
    assert any(r.lower().startswith("pyyaml") for r in plain), plain


async def test_yaml_rules_without_pyyaml_stop_the_cli_with_the_fix(
    start_proxy: StartProxy, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(readme_rules())
    args = ["--mode", f"reverse:{ws_echo.url}", "-s", "rewrite", "--set", f"rewrite_rules={rules}"]
    cli = await start_proxy(*args, verbose=False, ready=False, hide_modules=["yaml"])
    cli.expect_exit()
    assert await cli.wait_exit(15) == 2
    assert cli.stderr().splitlines() == [
        f"wsproxy: plugin rewrite: configure failed: rewrite_rules {rules}: reading YAML needs "
        f"PyYAML, which is not installed for "
        f"{sys.executable}: run `{sys.executable} -m pip install pyyaml`, or write the rules as "
        "JSON (a .json file)"
    ]


SOCKETIO = "/socket.io/?EIO=4&transport=websocket"


async def test_decoded_fields(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy, tmp_path: Path
) -> None:
    """Rules on a Socket.IO event's name edit its arguments and re-encode the packet; other
    events, and messages no decoder knows, are left alone."""
    plugin = rewrite_with(
        load_plugin,
        tmp_path,
        [
            {"name": "first-arg", "direction": "client", "event": "^chat$", "value_path": "[0]",
             "set": "HELLO"},
            {"name": "nick", "event": "^chat$", "value_path": "[1].from", "match": "^a",
             "replace": "A"},
            {"name": "all-args", "protocol": "socketio", "event": "^ping$", "set": ["pong"]},
            {"name": "raw", "event": "^raw$", "match": "raw", "replace": "cooked"},
            {"name": "whole", "event": "^swap$", "content": '42["swapped"]'},
            {"name": "missing", "event": "^chat$", "value_path": "[5]", "set": 1},
        ],
    )  # fmt: skip
    proxy = await plugin_proxy(plugin)
    sent = ['42["chat","hi",{"from":"ann"}]', '42["ping",1]', '42["raw"]', '42["swap"]',
            '42["other","hi"]', "not socket.io"]  # fmt: skip
    await exchange(proxy.port, sent, SOCKETIO)
    assert ws_echo.received == [
        '42["chat","HELLO",{"from":"Ann"}]', '42["ping","pong"]', '42["cooked"]',
        '42["swapped"]', '42["other","hi"]', "not socket.io",
    ]  # fmt: skip
    assert plugin.hits["first-arg"] == 1 and plugin.hits["missing"] == 0
    assert plugin.hits["nick"] == 1  # the echo came back with "Ann", which "^a" misses


async def test_graphql_variable(
    load_plugin: Load, ws_echo: WsUpstream, plugin_proxy: PluginProxy, tmp_path: Path
) -> None:
    plugin = rewrite_with(
        load_plugin,
        tmp_path,
        [{"operation": "^OnMessage$", "direction": "client", "value_path": "variables.room",
          "set": "lobby"}],
    )  # fmt: skip
    proxy = await plugin_proxy(plugin)
    subscribe = {"id": "1", "type": "subscribe", "payload": {
        "query": "subscription OnMessage($room: String!) { onMessage(room: $room) }",
        "variables": {"room": "secret"}}}  # fmt: skip
    init = '{"type":"connection_init"}'
    await exchange(proxy.port, [init, json.dumps(subscribe)], "/graphql")
    assert ws_echo.received[0] == init
    assert json.loads(ws_echo.received[1])["payload"]["variables"] == {"room": "lobby"}


@pytest.mark.parametrize(
    ("rule", "text", "expected"),
    [
        ({"match": "^.", "replace": "X"}, "hello", "Xello"),
        ({"match": "x*", "replace": "-"}, "ab", "-a-b-"),  # empty matches count as matches
        ({"match": "z", "replace": "-"}, "ab", None),  # no match: no hit, no change
        ({"match": "^a", "content": "new"}, "ab", "new"),
        ({"match": "^z", "content": "new"}, "ab", None),
    ],
)
def test_a_text_rule_hits_exactly_when_its_regex_matches(
    load_plugin: Load, tmp_path: Path, rule: dict[str, str], text: str, expected: str | None
) -> None:
    plugin = rewrite_with(load_plugin, tmp_path, [{"direction": "client", **rule}])
    flow = SimpleNamespace(metadata={}, request=SimpleNamespace(host="example.com", path="/"))
    from_server = Message(False, 1, text.encode())
    plugin.message(flow, from_server)  # a client rule: never asked about the server's
    assert from_server.modified_by is None and not plugin.hits
    message = Message(True, 1, text.encode())
    plugin.message(flow, message)
    assert (message.text if message.modified else None) == expected
    assert plugin.hits["rule 1"] == (expected is not None)


@pytest.mark.parametrize(
    ("directions", "expected"),
    [
        (["client"], {"client"}),
        (["server", "server"], {"server"}),
        (["client", "server"], {"client", "server"}),
        (["both"], {"client", "server"}),
    ],
)
def test_the_plugin_asks_for_the_messages_its_rules_can_change(
    load_plugin: Load, tmp_path: Path, directions: list[str], expected: set[str]
) -> None:
    rules = [{"direction": d, "match": "a", "replace": "b"} for d in directions]
    plugin = rewrite_with(load_plugin, tmp_path, rules)
    assert plugin.message_directions == expected
    chain = PluginChain([plugin])
    assert [chain.wants_messages_from(d) for d in ("client", "server")] == [
        "client" in expected,
        "server" in expected,
    ]
    # A plugin that does not say gets every message, so then both peers' go through the chain.
    everyone = SimpleNamespace(message=lambda flow, message: None)
    chain = PluginChain([plugin, everyone])
    assert chain.wants_messages_from("client") and chain.wants_messages_from("server")
    assert not PluginChain([]).wants_messages_from("client")


async def test_a_client_rule_leaves_the_servers_compressed_frames_alone(
    load_plugin: Load,
    ws_echo: WsUpstream,
    plugin_proxy: PluginProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the client's messages go through the chain; the echo of a changed message comes
    back as the server compressed it, with the server's later messages intact."""
    plugin = rewrite_with(
        load_plugin, tmp_path, [{"direction": "client", "match": "^m", "replace": "M"}]
    )
    seen: list[bool] = []
    run = PluginChain.message_inline

    def message_inline(chain: PluginChain, flow: Any, message: Message) -> None:
        seen.append(message.from_client)
        run(chain, flow, message)

    monkeypatch.setattr(PluginChain, "message_inline", message_inline)
    proxy = await plugin_proxy(plugin)
    sent = [f"message {i} " + "repeated payload " * 20 for i in range(50)]
    async with connect(f"ws://127.0.0.1:{proxy.port}/", proxy=None) as ws:
        assert ws.protocol.extensions and ws.protocol.extensions[0].name == "permessage-deflate"
        for message in sent:
            await ws.send(message)
        answers = [await ws.recv() for _ in sent]
    expected = ["M" + text[1:] for text in sent]
    assert ws_echo.received == expected
    assert answers == expected
    assert seen == [True] * len(sent)
