"""``--capture-overflow wait|drop`` against a real slow sink: ``python -m wsproxy -w FIFO.jsonl``
where the FIFO is a named pipe this test reads at its own pace.

* ``wait`` (the default): the sender is held to the reader's pace, and every message is in
  the capture.
* ``drop``: the reader stalls until the sender is done; the sender finishes anyway, and the
  capture has ``lost`` records whose counts, with the frames written, account for everything.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from websockets.asyncio.client import connect

from tests.harness import HOST, StartProxy, WsUpstream
from wsproxy.capture.reader import read_capture
from wsproxy.capture.records import Frame, Lost

ROUND_TRIPS = 8_000
WINDOW = 20
PAYLOAD = "x" * 64


class PipeReader(threading.Thread):
    """Reads the FIFO into ``out``: ``pace`` bytes per 20 ms, after ``go`` is set."""

    def __init__(self, fifo: Path, out: Path, pace: int | None, go: threading.Event) -> None:
        super().__init__(daemon=True)
        self.fifo, self.out, self.pace, self.go = fifo, out, pace, go
        self.read = 0

    def run(self) -> None:
        with open(self.fifo, "rb", buffering=0) as pipe, open(self.out, "wb") as out:
            self.go.wait(60)
            while True:
                started = time.monotonic()
                chunk = pipe.read(self.pace or 1 << 20)
                if not chunk:
                    return
                out.write(chunk)
                self.read += len(chunk)
                if self.pace is not None:
                    time.sleep(max(0.0, 0.02 - (time.monotonic() - started)))


async def _send(port: int, on_done: Callable[[], None]) -> float:
    """ROUND_TRIPS 64-byte text echoes, WINDOW in flight; the seconds they took."""
    async with connect(f"ws://{HOST}:{port}/", compression=None) as ws:
        started = time.monotonic()
        sent = 0
        for _ in range(WINDOW):
            await ws.send(PAYLOAD)
            sent += 1
        for _ in range(ROUND_TRIPS):
            assert await ws.recv() == PAYLOAD
            if sent < ROUND_TRIPS:
                await ws.send(PAYLOAD)
                sent += 1
        took = time.monotonic() - started
        on_done()
    return took


async def _run(
    start_proxy: StartProxy, tmp_path: Path, echo: int, overflow: str | None, pace: int | None
) -> dict:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    out = tmp_path / "out.jsonl"
    go = threading.Event()
    if pace is not None:
        go.set()  # read at the pace from the start
    reader = PipeReader(fifo, out, pace, go)
    reader.start()
    flags = [] if overflow is None else ["--capture-overflow", overflow]
    proxy = await start_proxy(
        "-q", "--mode", f"reverse:ws://{HOST}:{echo}", "-w", str(fifo), *flags, verbose=False
    )
    read_when_done = [0]

    def done() -> None:
        read_when_done[0] = reader.read
        go.set()  # drop: the stalled reader drains from now on

    took = await _send(proxy.port, done)
    assert await proxy.stop(timeout=60) == 0  # SIGTERM finishes the capture, then it exits
    stderr = proxy.stderr()
    reader.join(30)
    assert not reader.is_alive()
    records = list(read_capture(out))
    return {
        "took": took,
        "read_when_done": read_when_done[0],
        "size": out.stat().st_size,
        "frames": [r for r in records if isinstance(r, Frame) and r.opcode == 0x1],
        "closes": [r for r in records if isinstance(r, Frame) and r.opcode == 0x8],
        "lost": [r for r in records if isinstance(r, Lost)],
        "stderr": stderr,
    }


async def test_wait_holds_the_sender_to_a_slow_pipe_and_keeps_everything(
    start_proxy: StartProxy, tmp_path: Path, ws_echo: WsUpstream
) -> None:
    pace = 20_000  # bytes per 20 ms: 1 MB/s, the capture of this traffic is about 5 MB
    result = await _run(start_proxy, tmp_path, ws_echo.port, None, pace)  # the default is wait
    frames = result["frames"]
    assert not result["lost"] and "NOT being recorded" not in result["stderr"]
    assert len(frames) == 2 * ROUND_TRIPS  # every message, both ways
    assert all(f.payload == PAYLOAD.encode() for f in frames)
    # The sender could not get ahead of the pipe by more than the writer's queue (2,000
    # records), the batch it writes and the pipe's buffer: when the last echo came back, the
    # reader had read most of the capture, at its pace.
    assert result["read_when_done"] > 0.5 * result["size"], result
    assert result["took"] > 0.4 * result["size"] / (pace * 50), result


async def test_drop_never_waits_for_the_pipe_and_marks_the_gaps(
    start_proxy: StartProxy, tmp_path: Path, ws_echo: WsUpstream
) -> None:
    result = await _run(start_proxy, tmp_path, ws_echo.port, "drop", None)
    # The reader read nothing until the sender was done: the sender never waited for it.
    assert result["read_when_done"] == 0
    lost = result["lost"]
    assert lost, result["stderr"]
    assert sum(r.count for r in lost) == lost[-1].total
    # Every frame is written or counted: the messages and the two close frames.
    written = len(result["frames"]) + len(result["closes"])
    assert written + lost[-1].total == 2 * ROUND_TRIPS + 2
    assert "NOT being recorded" in result["stderr"]
    assert f"{lost[-1].total} frame record(s) were lost in all" in result["stderr"]


def test_of_a_run_that_does_not_fit_the_first_frames_are_queued_the_rest_counted(
    tmp_path: Path,
) -> None:
    """A read's frames come as one run: when the queue cannot take all of them, it takes
    those that fit (records, then bytes) and counts the rest lost; the file says so."""
    from wsproxy.capture.writer import CaptureWriter, _Item
    from wsproxy.model import Flow, HandshakeRequest
    from wsproxy.sansio.records import FrameRecord
    from wsproxy.sansio.relay import Side

    gate, hung = threading.Event(), threading.Event()

    class Hung(CaptureWriter):
        def _write_batch(self, batch: deque[_Item]) -> bool:
            hung.set()
            gate.wait(10)
            return super()._write_batch(batch)

    writer = Hung(tmp_path / "run.jsonl", max_records=6, max_bytes=100, write_ahead=False)
    flow = Flow("c1", ("127.0.0.1", 5000), HandshakeRequest("ws", "x.test", 80, "/", []))

    def run(count: int, size: int) -> list[FrameRecord]:
        payload = b"x" * size
        return [FrameRecord(Side.CLIENT, 0x1, True, 0, size, payload, False, 0x1)] * count

    try:
        writer.frames(flow, run(1, 1), 1.0)  # the thread takes it and hangs
        assert hung.wait(10)
        writer.frames(flow, run(3, 10), 2.0)  # an empty queue takes a run whole
        assert (writer.backlog, writer.lost) == (3, 0)
        writer.frames(flow, run(5, 10), 3.0)  # 3 more records fit
        assert (writer.backlog, writer.lost) == (6, 2)
    finally:
        gate.set()
        writer.finish()
    writer2 = Hung(tmp_path / "bytes.jsonl", max_records=100, max_bytes=100, write_ahead=False)
    try:
        gate.clear()
        hung.clear()
        writer2.frames(flow, run(1, 1), 1.0)
        assert hung.wait(10)
        writer2.frames(flow, run(1, 60), 2.0)
        writer2.frames(flow, run(3, 15), 3.0)  # 100 - 60 bytes left: two of 15 fit
        assert (writer2.backlog, writer2.lost) == (3, 1)
    finally:
        gate.set()
        writer2.finish()
    records = list(read_capture(tmp_path / "run.jsonl"))
    assert len([r for r in records if isinstance(r, Frame)]) == 1 + 3 + 3
    assert [r.total for r in records if isinstance(r, Lost)] == [2]
