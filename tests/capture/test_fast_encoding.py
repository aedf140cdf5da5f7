"""The optional fast encoders (orjson, pybase64: ``wsproxy[fast]``) write the same records as
the standard library's json and base64."""

from __future__ import annotations

import base64
import json
import os

import pytest

from wsproxy.capture import jsonl
from wsproxy.sansio.records import FrameRecord
from wsproxy.sansio.relay import Side

RECORDS = [
    FrameRecord(Side.CLIENT, 0x1, True, 0, 9, 'héllo ☃\n"'.encode(), False, 0x1),
    FrameRecord(Side.SERVER, 0x2, True, 0x40, 300_000, os.urandom(300_000), True, 0x2),
    FrameRecord(Side.CLIENT, 0x1, True, 0, 3, b"new", False, 0x1, "modified", "p", b"\xff\xfeold"),
]


def _lines(record: FrameRecord) -> list[object]:
    data = b"".join(jsonl.frame_line("c1", 1796000000.123456, record))
    return [json.loads(line) for line in data.splitlines()]


@pytest.mark.parametrize("record", RECORDS)
def test_fast_and_standard_encoders_agree(
    record: FrameRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = _lines(record)
    monkeypatch.setattr(jsonl, "_orjson", None)
    monkeypatch.setattr(jsonl, "_b64encode", base64.b64encode)
    assert _lines(record) == fast


def test_a_record_orjson_refuses_falls_back_to_json() -> None:
    record = {"type": "x", "big": 1 << 70, "text": "\ud800"}  # over 64 bits; a lone surrogate
    with pytest.raises(UnicodeEncodeError):
        jsonl.encode(record)  # json cannot write a lone surrogate as UTF-8 either
    assert json.loads(jsonl.encode({"type": "x", "big": 1 << 70})) == {"type": "x", "big": 1 << 70}
