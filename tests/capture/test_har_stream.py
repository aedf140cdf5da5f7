"""HAR files are streamed: ``wsproxy show`` reads a 300 MiB HAR in a few MiB of memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wsproxy.capture.reader import read_capture
from wsproxy.capture.records import Close, Connection, Frame, Http

MiB = 1024 * 1024
MESSAGE = 64 * 1024  # bytes of text per message
WEBSOCKETS = 3
PER_WEBSOCKET = 1600  # 3 x 1600 x 64 KiB = 300 MiB of messages


def _entry_head(conn: int) -> bytes:
    entry = {
        "startedDateTime": "2026-01-02T03:04:05.000000+00:00",
        "time": 10.0,
        "request": {
            "method": "GET",
            "url": f"wss://example.com/{conn}",
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": [{"name": "Host", "value": "example.com"}],
            "queryString": [],
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": {"status": 101, "statusText": "Switching Protocols", "headers": []},
        "_resourceType": "websocket",
    }
    return json.dumps(entry)[:-1].encode() + b', "_webSocketMessages": ['


def write_big_har(path: Path) -> int:
    """A HAR of ~300 MiB: a page load with an 8 MiB body, then three long WebSockets; written
    piece by piece, so the test process does not hold it either."""
    page = {
        "startedDateTime": "2026-01-02T03:04:04.000000+00:00",
        "time": 5.0,
        "request": {"method": "GET", "url": "https://example.com/video", "headers": []},
        "response": {
            "status": 200,
            "statusText": "OK",
            "headers": [],
            "content": {"size": 6 * MiB, "mimeType": "video/mp4", "text": "QUFB" * (2 * MiB)},
        },
    }
    with open(path, "wb") as out:
        out.write(b'{"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}, ')
        out.write(b'"entries": [' + json.dumps(page).encode())
        for conn in range(1, WEBSOCKETS + 1):
            out.write(b",\n" + _entry_head(conn))
            for index in range(PER_WEBSOCKET):
                text = f"{conn}:{index}:".ljust(MESSAGE, "x")
                message = {"type": "send" if index % 2 else "receive", "time": 1.7e9 + index}
                message.update(opcode=1, data=text)
                out.write((b"," if index else b"") + json.dumps(message).encode())
            out.write(b"]}")
        out.write(b"]}}\n")
    return path.stat().st_size


def peak_rss_of(argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` from a fresh interpreter that reports its child's peak RSS (bytes)."""
    probe = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)\n"
        "tail = done.stdout.decode(errors='replace').splitlines()[-3:]\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print('\\n'.join(tail))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True
    )
    first, _, rest = result.stdout.partition("\n")
    status, kib = first.split()
    assert status == "0", result.stdout
    return int(kib) * 1024, rest


@pytest.mark.timeout(300)
def test_show_reads_a_300_mib_har_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.har"
    size = write_big_har(path)
    assert size > 300 * MiB
    peak, tail = peak_rss_of([sys.executable, "-m", "wsproxy", "show", str(path)])
    assert peak < 100 * MiB, f"peak RSS {peak // MiB} MiB for a {size // MiB} MiB HAR"
    assert f"[{WEBSOCKETS}] WebSocket ended" in tail
    assert f"'{WEBSOCKETS}:{PER_WEBSOCKET - 1}:xxx" in tail


def test_messages_before_the_request_are_still_read(tmp_path: Path) -> None:
    """An entry whose messages come before its request (no tool we know writes that) is held
    to its end, then read as usual."""
    entry = {
        "_webSocketMessages": [{"type": "send", "time": 1.0, "opcode": 1, "data": "hi"}],
        "startedDateTime": "2026-01-02T03:04:05+00:00",
        "request": {"url": "wss://example.com/"},
        "response": {"status": 101},
    }
    path = tmp_path / "odd.har"
    path.write_text(json.dumps({"log": {"entries": [7, entry]}}))
    records = list(read_capture(path))
    assert [type(r) for r in records] == [Connection, Frame, Close]
    assert isinstance(records[1], Frame) and records[1].payload == b"hi"


def test_http_entry_bodies_are_not_kept(tmp_path: Path) -> None:
    entry = {
        "startedDateTime": "2026-01-02T03:04:05+00:00",
        "time": 3,
        "request": {"method": "POST", "url": "https://x/", "postData": {"text": "a" * 1000}},
        "response": {"status": 201, "content": {"size": 5, "text": {"odd": ["b"]}}},
        "timings": {"wait": 2},
    }
    path = tmp_path / "page.har"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"log": {"entries": [entry]}}).encode())
    (record,) = read_capture(path)
    assert isinstance(record, Http)
    assert (record.method, record.status, record.response_size) == ("POST", 201, 5)
    assert record.wait == 0.002 and record.duration == 0.003 and record.response_body is None
