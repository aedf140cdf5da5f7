"""A SIGKILLed proxy loses nothing that was echoed; a large capture is read in flat memory."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import tracemalloc
from pathlib import Path

from websockets.asyncio.client import connect

from tests.capture.conftest import HOST
from tests.helpers import free_port, wait_accepting, wsproxy_command
from wsproxy.capture.messages import reassemble
from wsproxy.capture.reader import read_capture
from wsproxy.capture.records import Frame
from wsproxy.capture.show import record_line


async def test_sigkill_keeps_every_echoed_message(echo: int, tmp_path: Path) -> None:
    path = tmp_path / "kill.jsonl"
    port = free_port()
    proc = subprocess.Popen(
        wsproxy_command(
            port,
            tmp_path / "conf",
            "-q",
            "--mode",
            f"reverse:ws://{HOST}:{echo}",
            "-w",
            str(path),
        ),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        await wait_accepting(port, proc, 15)
        echoed: list[bytes] = []
        async with connect(f"ws://{HOST}:{port}/") as ws:
            for i in range(300):
                data = os.urandom(64) if i % 2 else f"message {i}"
                await ws.send(data)
                assert await ws.recv() == data
                echoed.append(data if isinstance(data, bytes) else data.encode())
            # Small frames are written ahead of forwarding: kill at once, mid-connection
            # (no close record), and every echoed message must be in the file.
            os.killpg(proc.pid, signal.SIGKILL)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    finally:
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()
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
