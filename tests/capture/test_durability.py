"""A SIGKILLed proxy loses nothing that was echoed; a large capture is read in flat memory."""

from __future__ import annotations

import base64
import json
import os
import signal
import tracemalloc
from pathlib import Path

from websockets.asyncio.client import connect

from tests.harness import HOST, StartProxy, WsUpstream
from wsproxy.capture.messages import reassemble
from wsproxy.capture.reader import read_capture
from wsproxy.capture.records import Frame
from wsproxy.capture.show import record_line


async def test_sigkill_keeps_every_echoed_message(
    start_proxy: StartProxy, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    path = tmp_path / "kill.jsonl"
    proxy = await start_proxy(
        "-q", "--mode", f"reverse:{ws_echo.url}", "-w", str(path), verbose=False
    )
    proxy.expect_exit()  # SIGKILLed below
    echoed: list[bytes] = []
    async with connect(f"ws://{HOST}:{proxy.port}/") as ws:
        for i in range(300):
            data = os.urandom(64) if i % 2 else f"message {i}"
            await ws.send(data)
            assert await ws.recv() == data
            echoed.append(data if isinstance(data, bytes) else data.encode())
        # Small frames are written ahead of forwarding: kill at once, mid-connection
        # (no close record), and every echoed message must be in the file.
        os.killpg(proxy.proc.pid, signal.SIGKILL)
        assert await proxy.wait_exit(10) == -signal.SIGKILL
    messages = list(reassemble(r for r in read_capture(path) if isinstance(r, Frame)))
    assert [m.content for m in messages if m.direction == "client"] == echoed
    # Every echo the client got passed the proxy: it is in the file too.
    assert [m.content for m in messages if m.direction == "server"] == echoed


def test_large_capture_reads_in_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    payload = base64.b64encode(os.urandom(48 * 1024)).decode()  # 64 KiB of base64 per line
    with open(path, "w") as file:
        file.write('{"type":"wsproxy-capture","version":1,"ts":0}\n')
        file.write('{"type":"handshake","conn":"c1","ts":1,"url":"ws://x/"}\n')
        for i in range(800):
            line = {
                "type": "frame",
                "conn": "c1",
                "ts": 2 + i,
                "direction": "client",
                "opcode": "BINARY",
                "fin": True,
                "length": 49152,
                "b64": payload,
            }
            file.write(json.dumps(line) + "\n")
    size = path.stat().st_size
    assert size > 50 * 1024 * 1024
    tracemalloc.start()
    try:
        count = 0
        for record in read_capture(path):
            record_line(record)
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 802
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte file"
