"""The optional fast encoders (orjson, pybase64: ``wsproxy[fast]``) write the same records as
the standard library's json and base64."""

from __future__ import annotations

import base64
import json
import os

import pytest

from wsproxy.capture import jsonenc, jsonl, jsonlframes
from wsproxy.sansio.records import FrameRecord
from wsproxy.sansio.relay import Side

RECORDS = [
    FrameRecord(Side.CLIENT, 0x1, True, 0, 9, 'héllo ☃\n"'.encode(), False, 0x1),
    FrameRecord(Side.SERVER, 0x2, True, 0x40, 300_000, os.urandom(300_000), True, 0x2),
    FrameRecord(Side.CLIENT, 0x1, True, 0, 3, b"new", False, 0x1, "modified", "p", b"\xff\xfeold"),
]


def _lines(record: FrameRecord) -> list[object]:
    data = b"".join(jsonlframes.frame_line("c1", 1796000000.123456, record))
    return [json.loads(line) for line in data.splitlines()]


@pytest.mark.parametrize("record", RECORDS)
def test_fast_and_standard_encoders_agree(
    record: FrameRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = _lines(record)
    monkeypatch.setattr(jsonenc, "ORJSON", None)
    monkeypatch.setattr(jsonenc, "_b64encode", base64.b64encode)
    assert _lines(record) == fast


def test_a_record_orjson_refuses_falls_back_to_json() -> None:
    record = {"type": "x", "big": 1 << 70, "text": "\ud800"}  # over 64 bits; a lone surrogate
    with pytest.raises(UnicodeEncodeError):
        jsonl.encode(record)  # json cannot write a lone surrogate as UTF-8 either
    assert json.loads(jsonl.encode({"type": "x", "big": 1 << 70})) == {"type": "x", "big": 1 << 70}


def _dictionary_line(conn: str, ts: float, record: FrameRecord) -> bytes:
    """A frame line the long way: ``frame``'s dictionary through ``encode``, base64 last."""
    raw: list[tuple[str, jsonl.Data]] = []
    head = jsonl.encode(jsonlframes.frame(conn, ts, record, raw=raw))
    if not raw:
        return head + b"\n"
    tails = b"".join(
        b',"' + key.encode() + b'":"' + jsonl.b64encode(data) + b'"' for key, data in raw
    )
    return head[:-1] + tails + b"}\n"


PLAIN_RECORDS = [
    FrameRecord(Side.CLIENT, 0x1, True, 0, 9, 'héllo ☃\n"\x00'.encode(), False, 0x1),
    FrameRecord(Side.SERVER, 0x1, True, 0, 2, b"\xff\xfe", False, 0x1),  # text, not UTF-8
    FrameRecord(Side.SERVER, 0x2, True, 0x40, 5000, os.urandom(64), True, 0x2),
    FrameRecord(Side.CLIENT, 0x0, False, 0, 0, b"", False, 0x1),
    FrameRecord(Side.CLIENT, 0x2, True, 0, 0, b"", False, 0x2),
    FrameRecord(Side.SERVER, 0x9, True, 0, 4, b"ping", False, 0x9),
    FrameRecord(Side.CLIENT, 0x1, True, 0, 3, b"abc", False, 0x1, "dropped", 'a "plugin"'),
    FrameRecord(Side.CLIENT, 0x1, True, 0, 3, b"abc", False, 0x1, "injected"),
    FrameRecord(Side.CLIENT, 0x8, True, 0, 2, b"\x03\xe8", False, 0x8),
]


@pytest.mark.parametrize("fast", [True, False], ids=["orjson", "json"])
@pytest.mark.parametrize("conn", ["c1", "w2-c17", '"\x00', "\x00"])
def test_frame_lines_from_templates_are_the_dictionary_lines(
    conn: str, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fast:
        monkeypatch.setattr(jsonenc, "ORJSON", None)
    monkeypatch.setattr(jsonlframes, "_TEMPLATES", {})
    for ts in (1796000000.123456, 1796000000.9999996, 0.5, 1e-7):
        for record in PLAIN_RECORDS:
            expected = _dictionary_line(conn, ts, record)
            assert jsonlframes.frame_bytes(conn, ts, record) == expected
            assert b"".join(jsonlframes.frame_line(conn, ts, record)) == expected


def test_templates_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonlframes, "_TEMPLATES", {})
    record = PLAIN_RECORDS[0]
    for n in range(jsonlframes._TEMPLATES_MAX + 10):
        assert jsonlframes.frame_bytes(f"c{n}", 1.0, record) == _dictionary_line(
            f"c{n}", 1.0, record
        )
    assert len(jsonlframes._TEMPLATES) <= jsonlframes._TEMPLATES_MAX


@pytest.mark.parametrize("fast", [True, False], ids=["orjson", "json"])
@pytest.mark.parametrize("conn", ["c1", '"\x00'])
def test_a_run_of_frames_is_the_lines_of_each(
    conn: str, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``frames_bytes`` (one read's frames at one instant) writes what ``frame_bytes`` writes
    for each: plain frames from the run's templates, the others (modified, in pieces, larger
    than a piece) the long way, in order."""
    if not fast:
        monkeypatch.setattr(jsonenc, "ORJSON", None)
    monkeypatch.setattr(jsonlframes, "_TEMPLATES", {})
    piece = FrameRecord(Side.SERVER, 0x1, False, 0, 9, b"abc", False, 0x1, offset=3, more=True)
    run = [*PLAIN_RECORDS, *RECORDS, piece, *PLAIN_RECORDS]
    for ts in (1796000000.123456, 1796000000.9999996, 0.5):
        expected = b"".join(jsonlframes.frame_bytes(conn, ts, record) for record in run)
        assert jsonlframes.frames_bytes(conn, ts, run) == expected
    assert jsonlframes.frames_bytes(conn, 1.0, []) == b""
