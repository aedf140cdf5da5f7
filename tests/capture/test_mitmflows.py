"""``-w FILE.mitm``: mitmproxy flow files, written by a real proxy process and read by mitmproxy.

A real ``python -m wsproxy -w x.mitm`` runs in front of a real ``websockets`` server; the file
is then read with mitmproxy's own ``mitmproxy.io.FlowReader`` and opened with the real
``mitmdump -nr`` of this venv, and read back by ``wsproxy show`` and ``wsproxy replay``. Without
mitmproxy these tests skip, except with ``CI=true``, where they fail (CI installs mitmproxy in
the same venv, see ``tests/run.sh``). The missing-mitmproxy error is tested with mitmproxy
hidden (the sitecustomize of ``tests/plugins``), so that test runs everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.harness import (
    HIDE_MITMPROXY,
    HOST,
    ROOT,
    ProxyProcess,
    proxy_free_env,
    proxy_process,
    wait_until,
)
from wsproxy.capture.formats import journal_path
from wsproxy.capture.mitmflows import is_flow_file, journal_to_flows
from wsproxy.capture.reader import detect_format, read_capture
from wsproxy.capture.records import Close, Connection, Frame
from wsproxy.capture.show import show

HAVE_MITMPROXY = importlib.util.find_spec("mitmproxy") is not None
BIG = 3 * 1024 * 1024 + 17  # over the journal's 256 KiB pieces: written in several lines


@pytest.fixture
def _need_mitmproxy() -> None:
    if HAVE_MITMPROXY:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true and mitmproxy is not installed: tests/run.sh installs it")
    pytest.skip("mitmproxy is not installed (pip install 'wsproxy[mitmproxy]')")


needs_mitmproxy = pytest.mark.usefixtures("_need_mitmproxy")


@pytest.fixture
async def server() -> AsyncIterator[int]:
    """Echoes every message; on ``/bye`` it closes with 4000 "bye" after the first one."""

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        try:
            async for message in ws:
                await ws.send(message)
                if ws.request.path == "/bye":
                    await ws.close(4000, "bye")
        except ConnectionClosed:
            pass

    async with serve(handler, HOST, 0, max_size=None, ping_interval=None) as srv:
        yield next(iter(srv.sockets)).getsockname()[1]


def read_flows(path: Path) -> list[Any]:
    """The flows of ``path`` as mitmproxy itself reads them."""
    from mitmproxy.io import FlowReader

    with open(path, "rb") as file:
        return list(FlowReader(file).stream())


async def talk(port: int, big: bytes) -> None:
    """On /chat: text, binary, a fragmented text, a large binary, then close 4001."""
    async with connect(f"ws://{HOST}:{port}/chat?room=7", max_size=None) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x00\x01\xff")
        assert await ws.recv() == b"\x00\x01\xff"
        await ws.send(["frag", "ment", "ed"])  # three frames, one message
        assert await ws.recv() == "fragmented"
        await ws.send(big)
        assert await ws.recv() == big
        await ws.close(4001, "done")


async def wait_flows(path: Path, count: int, timeout: float = 15) -> list[Any]:
    """The flows in ``path`` once there are ``count`` of them (they are appended on close;
    a flow being appended reads as a damaged file, as with mitmdump's own ``-w``: read again)."""
    from mitmproxy.exceptions import FlowReadException

    def enough() -> list[list[Any]]:
        try:
            flows = read_flows(path)
        except FlowReadException:
            return []
        return [flows] if len(flows) >= count else []

    return (await wait_until(enough, timeout, f"{path}: fewer than {count} flow(s)"))[0]


@contextlib.asynccontextmanager
async def recording(tmp_path: Path, port: int) -> AsyncIterator[tuple[ProxyProcess, Path]]:
    path = tmp_path / "x.mitm"
    args = ["--mode", f"reverse:ws://{HOST}:{port}", "-w", str(path)]
    async with proxy_process(args, tmp_path / "confdir", tmp_path, verbose=False) as proxy:
        yield proxy, path


async def record(tmp_path: Path, port: int, big: bytes) -> Path:
    """A capture of three WebSockets: /chat (closed by the client), /bye (by the server), and
    /open, still open when the proxy stops."""
    async with recording(tmp_path, port) as (proxy, path):
        await talk(proxy.port, big)
        async with connect(f"ws://{HOST}:{proxy.port}/bye") as ws:
            await ws.send("last")
            assert await ws.recv() == "last"
            await ws.wait_closed()
        still_open = await connect(f"ws://{HOST}:{proxy.port}/open")
        await still_open.send("open")
        assert await still_open.recv() == "open"
        # The two closed WebSockets are in the file while the proxy still runs.
        assert len(await wait_flows(path, 2)) == 2
    await still_open.wait_closed()
    return path


def by_path(flows: list[Any]) -> dict[str, Any]:
    return {flow.request.path.partition("?")[0]: flow for flow in flows}


def check_flows(flows: list[Any], port: int, big: bytes) -> None:
    from mitmproxy import http

    assert len(flows) == 3 and all(isinstance(flow, http.HTTPFlow) for flow in flows)
    chat, bye, still_open = (by_path(flows)[p] for p in ("/chat", "/bye", "/open"))
    request = chat.request
    assert request.url == f"http://{HOST}:{port}/chat?room=7"
    assert (request.method, request.host, request.port) == ("GET", HOST, port)
    assert request.headers["Upgrade"].lower() == "websocket"
    assert chat.response.status_code == 101 and chat.response.headers["Sec-WebSocket-Accept"]
    assert chat.client_conn.peername[0] == HOST and chat.server_conn.address == (HOST, port)
    ws = chat.websocket
    assert [(m.from_client, m.is_text, m.content) for m in ws.messages] == [
        (True, True, b"hello"),
        (False, True, b"hello"),
        (True, False, b"\x00\x01\xff"),
        (False, False, b"\x00\x01\xff"),
        (True, True, b"fragmented"),
        (False, True, b"fragmented"),
        (True, False, big),
        (False, False, big),
    ]
    times = [m.timestamp for m in ws.messages]
    assert times == sorted(times) and request.timestamp_start <= times[0] <= ws.timestamp_end
    assert (ws.closed_by_client, ws.close_code, ws.close_reason) == (True, 4001, "done")
    assert chat.metadata["wsproxy"]["conn"].startswith("c")
    assert (bye.websocket.closed_by_client, bye.websocket.close_code) == (False, 4000)
    assert bye.websocket.close_reason == "bye"
    # Closed by the proxy's shutdown (1001): mitmproxy has no "proxy", so the server side.
    assert [m.content for m in still_open.websocket.messages] == [b"open", b"open"]
    assert (still_open.websocket.closed_by_client, still_open.websocket.close_code) == (False, 1001)
    assert still_open.metadata["wsproxy"]["close"]["closed_by"] == "proxy"


@needs_mitmproxy
async def test_flow_file_opens_in_mitmproxy(tmp_path: Path, server: int) -> None:
    big = os.urandom(BIG)
    path = await record(tmp_path, server, big)
    assert path.stat().st_mode & 0o777 == 0o600
    check_flows(read_flows(path), server, big)
    # The journal beside it makes the same flows again (what a crashed run leaves).
    again = tmp_path / "again.mitm"
    assert journal_to_flows(journal_path(path), again) == 3
    check_flows(read_flows(again), server, big)
    # mitmproxy's own tool: -n reads the file without starting a proxy.
    mitmdump = Path(sys.executable).with_name("mitmdump")
    assert mitmdump.exists(), mitmdump
    done = subprocess.run(
        [str(mitmdump), "-nr", str(path)],
        capture_output=True,
        env=proxy_free_env(),
        timeout=60,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"GET http://{HOST}:{server}/chat?room=7" in out, out
    assert "<< 101 Switching Protocols" in out, out
    assert "WebSocket text message" in out and "WebSocket binary message" in out, out
    assert "UNKNOWN_ERROR=4001 (reason: done)" in out, out  # how mitmdump words code 4001
    assert "Traceback" not in done.stderr


@needs_mitmproxy
async def test_show_and_replay_read_flow_files(tmp_path: Path, server: int) -> None:
    big = os.urandom(BIG)
    path = await record(tmp_path, server, big)
    assert detect_format(path) == "mitm"
    records = list(read_capture(path))
    chat = next(r for r in records if isinstance(r, Connection) and "/chat" in r.url)
    assert chat.url == f"ws://{HOST}:{server}/chat?room=7" and chat.client
    frames = [r for r in records if isinstance(r, Frame) and r.conn == chat.conn]
    assert [f.payload for f in frames] == [b"hello"] * 2 + [b"\x00\x01\xff"] * 2 + [
        b"fragmented"
    ] * 2 + [big] * 2
    (close,) = [r for r in records if isinstance(r, Close) and r.conn == chat.conn]
    assert close.closed_by == "client" and close.client.code == 4001
    # Found by its content too: the same file under a name with no extension.
    unnamed = tmp_path / "flows"
    shutil.copy(path, unnamed)
    assert is_flow_file(unnamed.read_bytes()[:20]) and detect_format(unnamed) == "mitm"
    shown = await run_wsproxy("show", str(path), "--conn", chat.conn)
    assert shown.returncode == 0, shown.stderr
    out = io.StringIO()
    assert show([str(unnamed), "--conn", chat.conn], out) == 0
    for lines in (shown.stdout.splitlines(), out.getvalue().splitlines()):
        assert f"WebSocket open ws://{HOST}:{server}/chat?room=7" in lines[0]
        assert any("client -> server TEXT F len=10 'fragmented'" in line for line in lines)
        assert any(f"server -> client BINARY F len={BIG}" in line for line in lines)
        assert "client close 4001 'done'" in lines[-1]
    # Replay /chat against the real server: it answers as it did, so identical (exit 0).
    replayed = await run_wsproxy(
        "replay", str(path), "--conn", chat.conn, "--fast", "--url", f"ws://{HOST}:{server}/chat"
    )
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "identical" in replayed.stdout


@needs_mitmproxy
async def test_crash_leaves_a_journal_wsproxy_mitm_converts(tmp_path: Path, server: int) -> None:
    path = tmp_path / "x.mitm"
    args = ["--mode", f"reverse:ws://{HOST}:{server}", "-w", str(path)]
    proxy = ProxyProcess(args, tmp_path / "confdir", tmp_path, verbose=False)
    try:
        await proxy.wait_ready()
        ws = await connect(f"ws://{HOST}:{proxy.port}/chat")
        await ws.send("before the crash")
        assert await ws.recv() == "before the crash"
        os.killpg(proxy.proc.pid, signal.SIGKILL)
    finally:
        await proxy.stop()
    with contextlib.suppress(ConnectionClosed):
        await ws.close()
    assert read_flows(path) == []  # still open at the crash: only in the journal
    converted = await run_wsproxy("mitm", str(journal_path(path)))
    assert converted.returncode == 0, converted.stderr
    assert converted.stdout.strip() == f"{path}: 1 WebSocket(s)"
    (flow,) = read_flows(path)
    assert [m.content for m in flow.websocket.messages] == [b"before the crash"] * 2
    assert flow.websocket.closed_by_client is None  # mitmproxy's "still active"


async def test_without_mitmproxy_a_clear_error(tmp_path: Path) -> None:
    site = tmp_path / "hide"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE_MITMPROXY)
    env = proxy_free_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    target = tmp_path / "x.mitm"
    started = await run_wsproxy("-p", "0", "-w", str(target), env=env)
    assert started.returncode == 2, started.stderr
    assert (
        started.stderr
        == f"wsproxy: -w {target} needs mitmproxy: pip install 'wsproxy[mitmproxy]'\n"
    )
    assert not target.exists() and not journal_path(target).exists()
    target.write_bytes(b"")
    shown = await run_wsproxy("show", str(target), env=env)
    assert shown.returncode == 1 and "Traceback" not in shown.stderr
    assert "needs mitmproxy: pip install 'wsproxy[mitmproxy]'" in shown.stderr, shown.stderr


async def run_wsproxy(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wsproxy",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or proxy_free_env(),
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


@needs_mitmproxy
def test_flows_from_mitmproxy_itself(tmp_path: Path) -> None:
    """A flow mitmproxy wrote (no wsproxy metadata), among other flows: its WebSocket reads."""
    from mitmproxy.io import FlowWriter
    from mitmproxy.test import tflow

    path = tmp_path / "dump"  # mitmdump -w names files as it likes
    with open(path, "wb") as file:
        writer = FlowWriter(file)
        writer.add(tflow.tflow(resp=True))  # plain HTTP: skipped
        writer.add(tflow.twebsocketflow(close_code=4002, close_reason="later"))
    records = list(read_capture(path))
    conn, *frames, close = records
    assert isinstance(conn, Connection) and conn.url == "ws://example.com/ws"
    assert [(f.direction, f.opcode, f.payload) for f in frames if isinstance(f, Frame)] == [
        ("client", 2, b"hello binary"),
        ("client", 1, b"hello text"),
        ("server", 1, b"it's me"),
    ]
    assert isinstance(close, Close) and close.closed_by == "server"  # as tflow has it
    assert (close.server.code, close.server.reason) == (4002, "later")


@needs_mitmproxy
async def test_bad_flow_files_and_paths(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mitm"
    bad.write_bytes(b"12:not a flow,")
    shown = await run_wsproxy("show", str(bad))
    assert shown.returncode == 1 and "Traceback" not in shown.stderr
    assert shown.stderr.startswith(f"wsproxy show: {bad}: not a readable mitmproxy flow file")
    empty = tmp_path / "empty.mitm"
    empty.write_bytes(b"")
    assert list(read_capture(empty)) == []
    both = await run_wsproxy("-w", "a.mitm", "-w", "a.mitm.jsonl")
    assert both.returncode == 2
    assert both.stderr == "wsproxy: -w a.mitm.jsonl and -w a.mitm both write a.mitm.jsonl\n"
