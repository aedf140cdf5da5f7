"""Captures through a real proxy with real peers: JSONL round trips, verdicts, HAR, filters,
queue overflow."""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.capture.conftest import CaptureProxy
from tests.capture.harcheck import check_har
from tests.harness import HOST, ServeProxy, WsUpstream, stop_server, wait_until
from wsproxy.capture import jsonl, jsonlframes
from wsproxy.capture.formats import journal_path
from wsproxy.capture.har import journal_to_har, read_har
from wsproxy.capture.messages import Message, reassemble
from wsproxy.capture.reader import read_capture
from wsproxy.capture.records import Close, Connection, Frame, Header, Lost, Record
from wsproxy.capture.writer import CaptureWriter, _Item
from wsproxy.sansio.relay import FrameRecord, Side

BINARY = bytes(range(256)) * 3
LARGE = bytes(range(256)) * 800  # 200 KiB: streams through the relay
TEXTS = ["hello", "héllo ✓ ünïcode", "x" * 1000]


def messages(records: list[Record]) -> list[Message]:
    return list(reassemble(r for r in records if isinstance(r, Frame)))


async def talk(port: int, compression: str | None, path: str = "/chat") -> None:
    async with connect(f"ws://{HOST}:{port}{path}", compression=compression, max_size=None) as ws:
        for text in TEXTS:
            await ws.send(text)
            assert await ws.recv() == text
        for data in (BINARY, LARGE, b""):
            await ws.send(data)
            assert await ws.recv() == data
        await ws.send(["frag", "mented ", "✓"])  # one text message in three frames
        assert await ws.recv() == "fragmented ✓"


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_jsonl_round_trip(
    capture_proxy: CaptureProxy, tmp_path: Path, compression: str | None
) -> None:
    path = tmp_path / "c.jsonl"
    server, _writer = await capture_proxy(path)
    await talk(server.port, compression)
    await stop_server(server)

    lines = path.read_text("utf-8").splitlines()
    first = json.loads(lines[0])
    assert first["type"] == "wsproxy-capture" and first["version"] == jsonl.VERSION == 2
    records = list(read_capture(path))
    assert isinstance(records[0], Header)
    (hs,) = [r for r in records if isinstance(r, Connection)]
    assert hs.url.startswith("ws://127.0.0.1:") and hs.url.endswith("/chat")
    assert hs.status == 101 and hs.request_headers and hs.response_headers
    assert bool(hs.extensions) == (compression is not None)
    sent: list[bytes] = [t.encode() for t in TEXTS] + [BINARY, LARGE, b"", "fragmented ✓".encode()]
    got = messages(records)
    assert [m.content for m in got if m.direction == "client"] == sent
    assert [m.content for m in got if m.direction == "server"] == sent
    assert [m.opcode for m in got if m.direction == "client"] == [1, 1, 1, 2, 2, 2, 1]
    frames = [r for r in records if isinstance(r, Frame)]
    assert all(f.verdict == "forwarded" for f in frames)
    data = [f for f in frames if f.opcode in (1, 2)]
    assert all(f.compressed for f in data) == (compression is not None)
    assert any(not f.fin for f in frames)  # the fragmented message kept its frames
    raw = [json.loads(line) for line in lines[1:]]
    text_frames = [o for o in raw if o["type"] == "frame" and o["opcode"] == "TEXT"]
    assert text_frames[0]["text"] == "hello" and "b64" not in text_frames[0]
    assert all("b64" in o for o in raw if o["type"] == "frame" and o["opcode"] == "BINARY")
    assert "T" in raw[0]["time"] and "." in raw[0]["time"]
    (close,) = [r for r in records if isinstance(r, Close)]
    assert close.closed_by == "client" and close.client.code == 1000
    assert close.counts["client"]["messages"] == len(sent)


class Verdicts:
    """Upper-cases "up:", drops "drop:", answers "inject:" with a message of its own."""

    name = "verdicts"

    def message(self, flow: Any, message: Any) -> None:
        if not message.from_client or not message.is_text:
            return
        if message.text.startswith("up:"):
            message.text = message.text.upper()
        elif message.text.startswith("drop:"):
            message.drop()
        elif message.text.startswith("inject:"):
            flow.inject("injected!", to_client=True)


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_verdicts(
    capture_proxy: CaptureProxy, tmp_path: Path, compression: str | None
) -> None:
    path = tmp_path / "v.jsonl"
    server, _writer = await capture_proxy(path, (Verdicts(),))
    async with connect(f"ws://{HOST}:{server.port}/", compression=compression) as ws:
        await ws.send("up:abc")
        assert await ws.recv() == "UP:ABC"
        await ws.send("drop:secret")
        await ws.send("inject:x")
        assert await ws.recv() == "injected!"
        assert await ws.recv() == "inject:x"
        await ws.send(b"\x00bin")
        assert await ws.recv() == b"\x00bin"
    await stop_server(server)

    got = messages(list(read_capture(path)))
    client = [(m.verdict, m.by, m.content, m.original) for m in got if m.direction == "client"]
    assert client == [
        ("modified", "verdicts", b"UP:ABC", b"up:abc"),
        ("dropped", "verdicts", b"drop:secret", None),
        ("forwarded", None, b"inject:x", None),
        ("forwarded", None, b"\x00bin", None),
    ]
    server_side = [(m.verdict, m.content) for m in got if m.direction == "server"]
    assert ("injected", b"injected!") in server_side
    raw = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    modified = next(o for o in raw if o.get("verdict") == "modified")
    assert modified["original_text"] == "up:abc" and modified["by"] == "verdicts"
    dropped = next(o for o in raw if o.get("verdict") == "dropped")
    assert dropped["by"] == "verdicts"
    # Replay content: what the client sent (original) vs what the server got (forwarded).
    sent = [m.sent for m in got if m.direction == "client"]
    delivered = [m.delivered for m in got if m.direction == "client"]
    assert sent == [b"up:abc", b"drop:secret", b"inject:x", b"\x00bin"]
    assert delivered == [b"UP:ABC", None, b"inject:x", b"\x00bin"]


async def test_har_output(capture_proxy: CaptureProxy, tmp_path: Path) -> None:
    path = tmp_path / "c.har"
    server, _writer = await capture_proxy(path, (Verdicts(),))
    await talk(server.port, "deflate", "/a?x=1")
    async with connect(f"ws://{HOST}:{server.port}/b") as ws:
        await ws.send("up:b")
        assert await ws.recv() == "UP:B"
    await stop_server(server)

    assert journal_path(path).exists()
    doc = json.loads(path.read_text("utf-8"))
    check_har(doc)
    entries = doc["log"]["entries"]
    assert [e["request"]["url"].rsplit("/", 1)[1] for e in entries] == ["a?x=1", "b"]
    assert entries[0]["request"]["queryString"] == [{"name": "x", "value": "1"}]
    msgs = entries[0]["_webSocketMessages"]
    assert len(msgs) == 2 * (len(TEXTS) + 4)
    assert msgs[0] == {"type": "send", "time": msgs[0]["time"], "opcode": 1, "data": "hello"}
    assert msgs[1]["type"] == "receive" and isinstance(msgs[0]["time"], float)
    binary = next(m for m in msgs if m["opcode"] == 2)
    assert binary["data"] == __import__("base64").b64encode(BINARY).decode()
    second = entries[1]["_webSocketMessages"]
    assert second[0]["_verdict"] == "modified" and second[0]["_original"] == "up:b"
    # Read back: the HAR gives the same messages as the journal.
    from_har = messages(list(read_har(path)))
    from_journal = messages(list(read_capture(journal_path(path))))
    assert [
        (m.conn, m.direction, m.opcode, m.content, m.verdict, m.original) for m in from_har
    ] == [(m.conn, m.direction, m.opcode, m.content, m.verdict, m.original) for m in from_journal]
    # `wsproxy har JOURNAL -o OUT` makes the same file.
    again = tmp_path / "again.har"
    assert journal_to_har(journal_path(path), again) == 2
    assert json.loads(again.read_text("utf-8")) == doc


async def test_har_rewritten_while_running(capture_proxy: CaptureProxy, tmp_path: Path) -> None:
    path = tmp_path / "live.har"
    server, _writer = await capture_proxy(path, har_interval=0.1)
    async with connect(f"ws://{HOST}:{server.port}/") as ws:
        await ws.send("one")
        await ws.recv()
        await wait_until(path.exists, 5)  # har_interval=0.1: rewritten while it runs
        doc = json.loads(path.read_text("utf-8"))  # complete JSON while the socket is open
        check_har(doc)
        assert doc["log"]["entries"][0]["_webSocketMessages"][0]["data"] == "one"


async def test_filter(capture_proxy: CaptureProxy, tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    server, _writer = await capture_proxy(path, filter=r"/keep")
    for where in ("/keep/1", "/skip", "/keep/2"):
        async with connect(f"ws://{HOST}:{server.port}{where}") as ws:
            await ws.send(where)
            await ws.recv()
    await stop_server(server)
    records = list(read_capture(path))
    urls = [r.url.split("/", 3)[3] for r in records if isinstance(r, Connection)]
    assert urls == ["keep/1", "keep/2"]
    assert [m.content for m in messages(records) if m.direction == "client"] == [
        b"/keep/1",
        b"/keep/2",
    ]


class BlockedWriter(CaptureWriter):
    """A writer whose disk hangs until ``gate`` is set; ``hung`` is set once it does."""

    gate = threading.Event()
    hung = threading.Event()

    def _write_batch(self, batch: deque[_Item]) -> bool:
        self.hung.set()
        self.gate.wait(10)
        return super()._write_batch(batch)


async def test_overflow_is_counted_and_reported(
    tmp_path: Path, serve_proxy: ServeProxy, ws_echo: WsUpstream, caplog: pytest.LogCaptureFixture
) -> None:

    path = tmp_path / "o.jsonl"
    # Without write-ahead every record goes through the queue, which the hung disk fills.
    writer = BlockedWriter(path, max_records=5, report_interval=0.0, write_ahead=False)
    writer.gate = threading.Event()
    writer.hung = threading.Event()
    server = await serve_proxy(None, ws_echo.port, capture=writer)
    caplog.set_level(logging.WARNING, logger="wsproxy")
    async with connect(f"ws://{HOST}:{server.port}/") as ws:
        await ws.send("first")  # the writer takes the first record(s), then hangs
        await ws.recv()
        await wait_until(writer.hung.is_set, 10)
        for i in range(50):
            await ws.send(f"m{i}")
            await ws.recv()
        assert writer.lost > 0
        assert "NOT being recorded" in caplog.text
        writer.gate.set()
    await stop_server(server)
    records = list(read_capture(path))
    lost = [r for r in records if isinstance(r, Lost)]
    assert lost and lost[-1].total == writer.lost
    frames = [r for r in records if isinstance(r, Frame)]
    assert len(frames) + writer.lost >= 102  # every frame is either written or counted
    assert any(isinstance(r, Close) for r in records)  # handshake/close never dropped
    assert f"{writer.lost} frame record(s) were lost in all" in caplog.text


def test_decode_ignores_unknown_and_cut_lines() -> None:
    assert jsonl.decode_line(b'{"type":"frame","conn":"1","direction":"cli') is None
    assert jsonl.decode_line(b'{"type":"future-thing","x":1}') is None
    assert jsonl.decode_line(b"") is None
    frame = jsonlframes.frame(
        "1",
        1.5,
        FrameRecord(Side.CLIENT, 1, True, 0x40, 3, b"\xff\xfe", True, 1, "modified", "p", b"ok"),
    )
    assert "b64" in frame and frame["original_text"] == "ok" and frame["rsv1"] is True
    record = jsonl.decode(frame)
    assert isinstance(record, Frame)
    assert (record.payload, record.rsv, record.original) == (b"\xff\xfe", 0x40, b"ok")


async def test_a_slow_write_ahead_falls_back_to_the_queue(
    tmp_path: Path,
    serve_proxy: ServeProxy,
    ws_echo: WsUpstream,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A write-ahead slower than SLOW_WRITE (a struggling disk) must not hold the relay again:
    the writer switches to its queue for a while, and nothing is lost on the way."""
    from wsproxy.capture import writer as writer_module

    monkeypatch.setattr(writer_module, "SLOW_WRITE", -1.0)  # every write counts as slow
    path = tmp_path / "slow.jsonl"
    writer = CaptureWriter(path)
    server = await serve_proxy(None, ws_echo.port, capture=writer)
    caplog.set_level(logging.WARNING, logger="wsproxy")
    async with connect(f"ws://{HOST}:{server.port}/") as ws:
        for i in range(20):
            await ws.send(f"m{i}")
            assert await ws.recv() == f"m{i}"
    await stop_server(server)
    # The handshake and the first frames went ahead, then the pause began.
    assert writer.written_inline == writer_module.SLOW_STREAK
    assert "writing through the queue" in caplog.text
    records = list(read_capture(path))
    sent = [m.content for m in messages(records) if m.direction == "client"]
    assert sent == [f"m{i}".encode() for i in range(20)]


async def test_several_capture_files_are_all_written(
    serve_proxy: ServeProxy, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    from wsproxy.capture.run import CaptureFanout, open_capture
    from wsproxy.options import Options

    paths = (tmp_path / "a.jsonl", tmp_path / "b.har")
    sink = open_capture(Options(capture_paths=paths))
    assert isinstance(sink, CaptureFanout) and len(sink.writers) == 2
    server = await serve_proxy(None, ws_echo.port, capture=sink)
    async with connect(f"ws://{HOST}:{server.port}/both") as ws:
        await ws.send("to every file")
        assert await ws.recv() == "to every file"
    await stop_server(server)
    for path in (paths[0], paths[1], journal_path(paths[1])):
        texts = [r.payload for r in read_capture(path) if isinstance(r, Frame) and r.is_text]
        assert texts == [b"to every file"] * 2, path  # the client's, then the echo


def test_one_capture_file_needs_no_fanout(tmp_path: Path) -> None:
    from wsproxy.capture.run import open_capture
    from wsproxy.options import Options

    sink = open_capture(Options(capture_paths=(tmp_path / "one.jsonl",)))
    assert isinstance(sink, CaptureWriter)  # the relay calls the writer itself
    sink.finish()
    assert open_capture(Options()) is None
