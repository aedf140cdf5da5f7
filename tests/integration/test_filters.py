"""Filter expressions through real ``python -m wsproxy`` processes: --view-filter (what -v
prints), --capture-filter (an expression, and an old plain regex), ``show --filter`` on a real
capture, and the block and rewrite plugins' filters."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.harness import ProxyProcess, StartProxy, WsUpstream
from wsproxy.capture.reader import read_capture
from wsproxy.capture.records import Connection, Frame

ROOT = Path(__file__).resolve().parents[2]


async def talk(proxy: ProxyProcess, path: str, *messages: str) -> list[str]:
    """Send ``messages`` through the reverse proxy to the echo at ``path``; the answers."""
    answers = []
    async with connect(f"ws://127.0.0.1:{proxy.port}{path}") as ws:
        for message in messages:
            await ws.send(message)
            answer = await ws.recv()
            assert isinstance(answer, str)
            answers.append(answer)
    return answers


def frame_lines(log: str) -> list[str]:
    """The -v frame lines: ``client -> server TEXT F len=6 'keep 1'`` (time and id cut)."""
    return [
        line.split("] ", 1)[1]
        for line in log.splitlines()
        if " -> " in line and ("TEXT" in line or "CLOSE" in line)
    ]


async def reverse(start_proxy: StartProxy, ws_echo: WsUpstream, *args: str) -> ProxyProcess:
    return await start_proxy("--mode", f"reverse:{ws_echo.url}", *args)


async def test_view_filter_prints_only_matching_frames(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await reverse(start_proxy, ws_echo, "--view-filter", "~from client & ~b '^keep'")
    await talk(proxy, "/chat", "keep 1", "drop 2", "keep 3")
    log = await proxy.wait_log(lambda text: "WebSocket closed" in text)
    assert [re.sub(r" F\S* len=\d+ ", " ", line) for line in frame_lines(log)] == [
        "client -> server TEXT 'keep 1'",  # compressed (permessage-deflate): len= varies
        "client -> server TEXT 'keep 3'",
    ]
    assert "WebSocket open" in log  # the connection's own lines stay


async def test_view_filter_by_flow_and_kind(start_proxy: StartProxy, ws_echo: WsUpstream) -> None:
    proxy = await reverse(
        start_proxy, ws_echo, "--view-filter", "~u /loud & (~opcode close | ~len >4)"
    )
    await talk(proxy, "/quiet", "hello world")
    await talk(proxy, "/loud", "hi", "hello world")
    log = await proxy.wait_count("WebSocket closed", 2)
    lines = frame_lines(log)
    assert len(lines) == 4, log  # two echoes of "hello world" and the two close frames
    assert sum("'hello world'" in line for line in lines) == 2
    assert sum(" CLOSE " in line for line in lines) == 2
    quiet = next(line for line in log.splitlines() if "WebSocket open" in line and "/quiet" in line)
    conn = quiet.split("[", 1)[1].split("]", 1)[0]
    assert not [line for line in log.splitlines() if f"[{conn}] client -> " in line]


async def test_capture_filter_expression_picks_flows_and_messages(
    start_proxy: StartProxy, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    path = tmp_path / "chat.jsonl"
    proxy = await reverse(
        start_proxy, ws_echo, "-w", str(path), "--capture-filter", "~u /chat & ~from client"
    )
    await talk(proxy, "/chat", "one", "two")
    await talk(proxy, "/other", "three")
    await proxy.wait_count("WebSocket closed", 2)
    assert await proxy.stop() == 0
    records = list(read_capture(path))
    (opened,) = [r for r in records if isinstance(r, Connection)]
    assert opened.url.endswith("/chat")
    frames = [r for r in records if isinstance(r, Frame)]
    assert [(f.direction, f.payload) for f in frames if f.opcode == 1] == [
        ("client", b"one"),
        ("client", b"two"),
    ]
    assert {f.direction for f in frames} == {"client"}  # the client's close frame too
    assert json.loads(path.read_text().splitlines()[0])["filter"] == "~u /chat & ~from client"


async def test_capture_filter_plain_regex_as_before(
    start_proxy: StartProxy, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    path = tmp_path / "old.jsonl"
    regex = r"^ws://127\.0\.0\.1:\d+/(chat|feed)$"  # parentheses and all: one URL regex
    proxy = await reverse(start_proxy, ws_echo, "-w", str(path), "--capture-filter", regex)
    for where in ("/chat", "/feed", "/other", "/chat/x"):
        await talk(proxy, where, "x")
    await proxy.wait_count("WebSocket closed", 4)
    assert await proxy.stop() == 0
    urls = [r.url for r in read_capture(path) if isinstance(r, Connection)]
    assert [url.rsplit("/", 1)[1] for url in urls] == ["chat", "feed"]


def show(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsproxy", "show", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


async def test_show_filter_on_a_real_capture(
    start_proxy: StartProxy, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    path = tmp_path / "all.jsonl"
    proxy = await reverse(start_proxy, ws_echo, "-w", str(path))
    await talk(proxy, "/chat", '{"type": "greet", "name": "ann"}', '{"type": "bye"}')
    await talk(proxy, "/news", '{"type": "greet", "name": "bob"}')
    await proxy.wait_count("WebSocket closed", 2)
    assert await proxy.stop() == 0

    done = show(str(path), "--filter", "~bs greet & ~json name=bob")
    assert done.returncode == 0, done.stderr
    frames = [line for line in done.stdout.splitlines() if " -> " in line]
    assert len(frames) == 1 and "server -> client TEXT" in frames[0] and "bob" in frames[0]
    opened = [line for line in done.stdout.splitlines() if "WebSocket open" in line]
    assert len(opened) == 2  # both may have such a message: their open lines show

    done = show(str(path), "--filter", "~u /chat & !~opcode close")
    lines = done.stdout.splitlines()
    assert sum(" -> " in line for line in lines) == 4  # two messages, each way
    assert all("/news" not in line for line in lines)
    assert sum("WebSocket open" in line for line in lines) == 1

    done = show(str(path), "--filter", "~hq '^Host: ' & ~d 127.0.0.1 & ~c 101 & ~json type")
    assert sum(" -> " in line for line in done.stdout.splitlines()) == 6

    done = show(str(path), "--filter", "~json (")
    assert done.returncode == 2
    assert "argument --filter: '~json (': ~json needs PATH=VALUE, found '(' at column 7" in (
        done.stderr
    )


async def test_block_filter(start_proxy: StartProxy, ws_echo: WsUpstream) -> None:
    proxy = await reverse(
        start_proxy,
        ws_echo,
        "-s",
        "block",
        "--set",
        "block_filter=~u /admin | ~bq '(?i)secret'",
    )
    try:
        async with connect(f"ws://127.0.0.1:{proxy.port}/admin"):
            raise AssertionError("the handshake should have been refused")
    except InvalidStatus as error:
        assert error.response.status_code == 403
    async with connect(f"ws://127.0.0.1:{proxy.port}/chat") as ws:
        await ws.send("my SECRET")  # dropped: never echoed
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), 10) == "hello"
    log = await proxy.wait_log(lambda text: "WebSocket closed" in text)
    assert "block_filter matched" in log
    assert "/admin" not in ws_echo.paths and "/chat" in ws_echo.paths


async def test_rewrite_rule_with_a_filter(
    start_proxy: StartProxy, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.json"
    rule = {"filter": "~from client & ~json type=greet", "json_path": "name", "set": "anon"}
    rules.write_text(json.dumps([rule]))
    proxy = await reverse(start_proxy, ws_echo, "-s", "rewrite", "--set", f"rewrite_rules={rules}")
    answers = await talk(
        proxy, "/chat", '{"type":"greet","name":"bob"}', '{"type":"other","name":"bob"}'
    )
    assert [json.loads(a)["name"] for a in answers] == ["anon", "bob"]


async def test_rewrite_rule_with_a_bad_filter(
    start_proxy: StartProxy, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"filter": "~from client &", "content": "x"}]))
    proxy = await start_proxy(
        "--mode",
        f"reverse:{ws_echo.url}",
        "-s",
        "rewrite",
        "--set",
        f"rewrite_rules={rules}",
        ready=False,
    )
    proxy.expect_exit()
    assert await proxy.wait_exit(30) == 2
    assert (
        "rule 1: filter '~from client &': '&' needs an expression after it, found the end at "
        "column 15" in proxy.stderr()
    )


async def test_decoded_operators_match_through_the_decoders(
    start_proxy: StartProxy, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    """``~proto``, ``~json`` and ``~op`` read the decoders' view of each message: a view
    filter and a capture filter on JSON-RPC calls by method, through a real proxy."""
    capture = tmp_path / "rpc.jsonl"
    proxy = await reverse(
        start_proxy,
        ws_echo,
        "--view-filter",
        "~proto jsonrpc & ~op sum",
        "--capture-filter",
        "~json params[0]=2",
        "-w",
        str(capture),
    )
    calls = [
        json.dumps({"jsonrpc": "2.0", "method": "sum", "params": [1, 2], "id": 1}),
        json.dumps({"jsonrpc": "2.0", "method": "mul", "params": [2, 3], "id": 2}),
        json.dumps({"jsonrpc": "2.0", "method": "sum", "params": [2, 5], "id": 3}),
    ]
    await talk(proxy, "/rpc", *calls)
    log = await proxy.wait_log(lambda text: "WebSocket closed" in text)
    shown = [line for line in frame_lines(log) if " TEXT " in line]
    # Each matching call and its echo (an echoed request decodes as the same call).
    assert len(shown) == 4, log
    assert all('jsonrpc request "sum"' in line for line in shown), shown
    await proxy.stop()
    texts = [
        record.payload.decode()
        for record in read_capture(capture)
        if isinstance(record, Frame) and record.opcode == 1
    ]
    records = list(read_capture(capture))
    assert sorted(texts) == sorted([calls[1], calls[1], calls[2], calls[2]]), records
