"""A disk that fills up under ``python -m wsproxy -w``: a real 2 MiB tmpfs, filled but for a
few hundred KB, then traffic. The capture stops with one loud error, the proxy keeps relaying,
and the file ends with a whole line: every line parses, and what was written stays."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.harness import HOST, StartProxy, WsUpstream
from wsproxy.capture.messages import reassemble
from wsproxy.capture.reader import read_capture
from wsproxy.capture.records import Frame
from wsproxy.capture.show import record_line

FREE = 300_000  # bytes left on the small disk when the proxy starts


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs at tmp_path/disk, filled until FREE bytes are left."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        reason = f"cannot mount a small tmpfs (needs root): {mount.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        st = os.statvfs(disk)
        with open(disk / "filler", "wb") as filler:
            filler.write(b"\0" * (st.f_bavail * st.f_frsize - FREE))
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _message(i: int) -> bytes:
    # Small frames go ahead of the relay on the event loop, large ones (over 64 KiB) through
    # the writer thread: the disk fills up under both.
    return (b"%06d" % i) * (12_000 if i % 3 == 2 else 170)


async def test_a_full_disk_stops_the_capture_not_the_proxy(
    small_disk: Path, ws_echo: WsUpstream, start_proxy: StartProxy
) -> None:
    path = small_disk / "cap.jsonl"
    proxy = await start_proxy(
        "-q", "--mode", f"reverse:ws://{HOST}:{ws_echo.port}", "-w", str(path), verbose=False
    )
    sent = [_message(i) for i in range(200)]  # about 5 MB of capture: far more than fits
    async with connect(f"ws://{HOST}:{proxy.port}/", compression=None, max_size=None) as ws:
        for data in sent:
            await ws.send(data)
            assert await ws.recv() == data  # relaying goes on, the disk full or not
    assert await proxy.stop() == 0
    stderr = proxy.stderr()
    errors = [line for line in stderr.splitlines() if "failed" in line]
    assert len(errors) == 1, stderr
    assert "ENOSPC: No space left on device" in errors[0] and str(path) in errors[0]
    assert "Traceback" not in stderr
    content = path.read_bytes()
    assert content.endswith(b"\n")  # no half line
    lines = [json.loads(line) for line in content.splitlines()]  # every line parses
    assert lines[0]["type"] == "wsproxy-capture"
    assert lines[-1]["type"] in ("stopped", "frame", "handshake"), lines[-1]["type"]
    if lines[-1]["type"] == "stopped":
        assert lines[-1]["error"] == "ENOSPC: No space left on device"
        last = list(read_capture(path))[-1]
        assert "!! capture stopped here: ENOSPC" in record_line(last)  # as show prints it
    # What was written stays: each direction's messages are the first ones sent, in order.
    messages = list(reassemble(r for r in read_capture(path) if isinstance(r, Frame)))
    for direction in ("client", "server"):
        got = [m.content for m in messages if m.direction == direction]
        assert got == sent[: len(got)]
    assert len([m for m in messages if m.direction == "client"]) > 2  # it did capture a while


def test_a_line_longer_than_one_write_is_cut_back_whole(small_disk: Path) -> None:
    """Lines of 175 KB in two pieces, so that writes end mid-line: the write
    that fails is in the middle of a line begun by an earlier, successful one."""
    from wsproxy.capture.linefile import FLUSH_AT, LineFile

    fd = os.open(small_disk / "lines.jsonl", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        out = LineFile(fd)
        piece = b"x" * (FLUSH_AT // 3)
        lines = 0
        with pytest.raises(OSError) as caught:
            while True:
                for _ in range(2):
                    out.write(piece)
                out.write(b"%d\n" % lines)
                lines += 1
        assert caught.value.errno == errno.ENOSPC
        assert out.write_final(b"end\n") in (True, False)
    finally:
        os.close(fd)
    content = (small_disk / "lines.jsonl").read_bytes()
    assert content.endswith(b"\n")
    whole = [line for line in content.splitlines() if line != b"end"]
    assert whole == [piece * 2 + b"%d" % i for i in range(len(whole))]
    assert 0 < len(whole) <= lines
