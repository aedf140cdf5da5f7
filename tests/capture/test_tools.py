"""show, replay and har: against captures made by the proxy, Chrome's HAR and mitmproxy's."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.capture.conftest import FIXTURES, CaptureProxy
from tests.capture.harcheck import check_har
from tests.harness import HOST, WsUpstream, stop_server
from wsproxy.capture.formats import journal_path
from wsproxy.capture.har import main as har_main
from wsproxy.capture.messages import reassemble
from wsproxy.capture.reader import read_capture
from wsproxy.capture.records import Connection, Frame, Http
from wsproxy.capture.replay import ReplayServer, load, replay_client
from wsproxy.capture.show import show


async def record(capture_proxy: CaptureProxy, path: Path) -> None:
    server, _writer = await capture_proxy(path)
    async with connect(f"ws://{HOST}:{server.port}/room") as ws:
        for item in ("hello", "world", b"\x00\x01\x02"):
            await ws.send(item)
            await ws.recv()
            await asyncio.sleep(0.02)  # the client's pace: gaps for test_replay_keeps_timing
    async with connect(f"ws://{HOST}:{server.port}/other") as ws:
        await ws.send("second connection")
        await ws.recv()
    await stop_server(server)


def run_show(*argv: str) -> list[str]:
    out = io.StringIO()
    assert show(list(argv), out) == 0
    return out.getvalue().splitlines()


async def test_show_lines_and_filters(capture_proxy: CaptureProxy, tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    await record(capture_proxy, path)
    lines = run_show(str(path))
    assert "[c1] WebSocket open ws://127.0.0.1:" in lines[0]
    assert any(
        " [c1] client -> server TEXT F1z len=" in line and "'hello'" in line for line in lines
    )
    assert any("server -> client BINARY" in line and "00 01 02" in line for line in lines)
    assert any("WebSocket closed: client close 1000" in line for line in lines)
    only = run_show(str(path), "--conn", "c2", "--direction", "server")
    assert "'second connection'" in only[0] and "CLOSE F len=2 code=1000" in only[1]
    grep = run_show(str(path), "--grep", "^wor")
    assert len(grep) == 2 and all("'world'" in line for line in grep)
    frames = [r for r in read_capture(path) if isinstance(r, Frame)]
    middle = frames[2].time
    since = run_show(str(path), "--since", str(middle), "--direction", "client")
    assert all("'hello'" not in line for line in since) and since
    full = run_show(str(path), "--full", "--grep", "second")
    assert "'second connection'" in full[0]


async def test_show_follow(capture_proxy: CaptureProxy, tmp_path: Path) -> None:
    path = tmp_path / "follow.jsonl"
    server, _writer = await capture_proxy(path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wsproxy",
        "show",
        "--follow",
        str(path),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        async with connect(f"ws://{HOST}:{server.port}/") as ws:
            await ws.send("live!")
            await ws.recv()
            assert proc.stdout is not None
            seen = b""
            while b"'live!'" not in seen:
                seen += await asyncio.wait_for(proc.stdout.readline(), 10)
    finally:
        proc.terminate()
        await proc.wait()


async def test_replay_identical_and_different(
    capture_proxy: CaptureProxy, tmp_path: Path, ws_echo: WsUpstream, upper_echo: WsUpstream
) -> None:
    path = tmp_path / "r.jsonl"
    await record(capture_proxy, path)
    recorded, seen = load(str(path))
    assert seen == ["c1", "c2"] and recorded.conn == "c1"
    result = await replay_client(recorded, f"ws://{HOST}:{ws_echo.port}/room")
    assert result.identical, result.report()
    assert "identical" in result.report()
    result = await replay_client(recorded, f"ws://{HOST}:{upper_echo.port}/room", fast=True)
    assert not result.identical
    report = result.report()
    assert "first at index 0" in report and "'hello'" in report and "'HELLO'" in report
    # The CLI: exit 0 when identical, 1 when different.
    for port, code in ((ws_echo.port, 0), (upper_echo.port, 1)):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wsproxy",
            "replay",
            str(path),
            "--fast",
            "--conn",
            "c1",
            "--url",
            f"ws://{HOST}:{port}/room",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == code, out


async def test_replay_keeps_timing(
    capture_proxy: CaptureProxy, tmp_path: Path, ws_echo: WsUpstream
) -> None:
    path = tmp_path / "t.jsonl"
    await record(capture_proxy, path)
    recorded, _ = load(str(path))
    client = [m.time for m in recorded.messages if m.direction == "client"]
    loop = asyncio.get_running_loop()
    start = loop.time()
    await replay_client(recorded, f"ws://{HOST}:{ws_echo.port}/")
    assert loop.time() - start >= (client[-1] - client[0]) * 0.9


async def test_replay_serve(capture_proxy: CaptureProxy, tmp_path: Path) -> None:
    path = tmp_path / "srv.jsonl"
    await record(capture_proxy, path)
    recorded, _ = load(str(path))
    out = io.StringIO()
    server = ReplayServer(recorded, out=out)
    port = await server.start()
    try:
        async with connect(f"ws://{HOST}:{port}/whatever") as ws:
            got = []
            for item in ("hello", "world", b"\x00\x01\x02"):
                await ws.send(item)
                got.append(await asyncio.wait_for(ws.recv(), 5))
            assert got == ["hello", "world", b"\x00\x01\x02"]
        await asyncio.wait_for(server.done.wait(), 5)
    finally:
        await server.stop()
    assert "sent 3 of 3 server message(s); received 3 client message(s)" in out.getvalue()


def test_chrome_har() -> None:
    path = FIXTURES / "chrome.har"
    check_har(json.loads(path.read_text()))
    records = list(read_capture(path))
    (conn,) = [r for r in records if isinstance(r, Connection)]
    assert conn.url == "wss://example.com/socket?room=7" and conn.subprotocol == "chat"
    msgs = list(reassemble(r for r in records if isinstance(r, Frame)))
    assert [(m.direction, m.opcode) for m in msgs] == [
        ("client", 1),
        ("server", 1),
        ("server", 1),
        ("client", 2),
        ("server", 2),
    ]
    assert msgs[3].content == b"\x00\x01\x02\x03"
    (fetch,) = [r for r in records if isinstance(r, Http)]  # the page's other request
    assert (fetch.method, fetch.url, fetch.status, fetch.response_size) == (
        "GET",
        "https://example.com/api",
        200,
        2,
    )
    lines = run_show(str(path))
    assert lines[0].endswith("[-] GET https://example.com/api 200 2 B 12.5 ms")
    assert lines[2].endswith("""client -> server TEXT F len=22 '{"op":"join","room":7}'""")
    recorded, _ = load(str(path))
    server = ReplayServer(recorded)
    # Answers after the client's 1st message: joined, hello; after the 2nd: the binary echo.
    assert [(k, data) for k, _, _, _, data in server.script] == [
        (1, b'{"op":"joined"}'),
        (1, b'{"op":"hello"}'),
        (2, b"\x00\x01\x02\x03"),
    ]


async def test_mitmproxy_har(ws_echo: WsUpstream) -> None:
    """A real ``mitmdump --set hardump=`` file (mitmproxy 11.0.2, websockets client, echo)."""
    path = FIXTURES / "mitmproxy11.har"
    check_har(json.loads(path.read_text()))
    recorded, _ = load(str(path))
    assert recorded.url.startswith("ws://127.0.0.1:")  # mitmproxy writes http://
    assert len(recorded.messages) == 6
    result = await replay_client(recorded, f"ws://{HOST}:{ws_echo.port}/", fast=True)
    assert result.identical, result.report()


async def test_har_command_after_crash(capture_proxy: CaptureProxy, tmp_path: Path) -> None:
    path = tmp_path / "c.har"
    await record(capture_proxy, path)
    journal = journal_path(path)
    with open(journal, "ab") as file:
        file.write(b'{"type":"frame","conn":"1","dir')  # a crash mid-line
    path.unlink()
    assert har_main([str(journal)]) == 0
    doc = json.loads(path.read_text())
    check_har(doc)
    assert len(doc["log"]["entries"]) == 2
    out = tmp_path / "named.har"
    assert har_main([str(journal), "-o", str(out)]) == 0 and out.exists()


def test_missing_file(tmp_path: Path) -> None:
    from wsproxy.capture.har import CaptureFormatError

    with pytest.raises(CaptureFormatError):
        list(read_capture(tmp_path / "nope.jsonl"))
