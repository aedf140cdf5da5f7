"""``wsproxy-web -r a b``: several captures in the read-only UI, merged as ``wsproxy show``
merges them (``wsproxy.capture.merge``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.harness import proxy_free_env
from tests.webserver.ui import ui_client

HEADER = {"type": "wsproxy-capture", "version": 2, "ts": 100.0, "tool": "test"}


def run_capture(path: Path, start: float, url: str, texts: list[str]) -> Path:
    """A JSONL capture of one connection ``c1`` (as every run numbers its first), echoed."""
    records: list[dict[str, Any]] = [
        HEADER,
        {"type": "handshake", "conn": "c1", "ts": start, "url": url, "status": 101},
    ]
    for n, text in enumerate(texts):
        for k, direction in enumerate(("client", "server")):
            records.append(
                {
                    "type": "frame",
                    "conn": "c1",
                    "ts": start + 1 + n * 10 + k,
                    "direction": direction,
                    "opcode": "TEXT",
                    "fin": True,
                    "text": text,
                }
            )
    side = {"code": 1000, "reason": "", "received_close": True}
    records.append(
        {"type": "close", "conn": "c1", "ts": start + 100, "closed_by": "client", "client": side}
        | {"server": side}
    )
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


async def test_two_captures_in_one_read_only_ui(start_web: Any, tmp_path: Path) -> None:
    first = run_capture(tmp_path / "capture.w1.jsonl", 1000, "ws://a.example/one", ["a", "b"])
    second = run_capture(tmp_path / "capture.w2.jsonl", 1005, "ws://b.example/two", ["x"])
    missing = tmp_path / "capture.w3.jsonl"
    viewer = await start_web("-r", str(first), "-r", str(second), str(missing))
    async with ui_client(viewer) as ui:
        conns = (await ui.get("/api/connections"))["connections"]
        assert [(c["id"], c["url"], c["state"]) for c in conns] == [
            ("c1", "ws://a.example/one", "closed"),
            ("c1@2", "ws://b.example/two", "closed"),
        ]
        for conn_id, want in (("c1", ["a", "a", "b", "b"]), ("c1@2", ["x", "x"])):
            messages = (await ui.get(f"/api/connections/{conn_id}/messages"))["messages"]
            assert [m["preview"] for m in messages] == want
        # A replay names the connection's own file and its id there.
        replay = await ui.get("/api/connections/c1@2/messages/1/replay")
        assert replay["command"] == f"wsproxy replay {second} --conn c1"
        replay = await ui.get("/api/connections/c1/messages/1/replay")
        assert replay["command"] == f"wsproxy replay {first} --conn c1"
    log = viewer.stderr()
    assert f"{missing}: No such file or directory (left out)" in log
    assert "read-only: 2 connection(s)" in log


def test_no_capture_that_can_be_read(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a capture\n")
    result = subprocess.run(
        [sys.executable, "-m", "wsproxy.web", "-r", "gone.jsonl", "notes.txt"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=proxy_free_env(),
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert any("gone.jsonl: No such file or directory (left out)" in line for line in lines)
    assert any("notes.txt: not a capture" in line for line in lines)
    assert lines[-1] == "wsproxy-web: none of the 2 captures could be read"
