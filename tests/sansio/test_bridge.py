"""bridge.py: the frames between wsproxy-web and its workers, whole, byte at a time, refused."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproxy.sansio.bridge import BLOBS, MAX_FRAME, BridgeError, BridgeReader, encode

FRAME = {
    "type": "frame",
    "conn": "w2-c7",
    "fin": True,
    "length": 5,
    "payload": b"hello",
    "original": b"\x00\xff",
    "verdict": "modified",
}


def frame_of(header: bytes, blobs: bytes = b"") -> bytes:
    body = struct.pack("!I", len(header)) + header + blobs
    return struct.pack("!I", len(body)) + body


def read_all(data: bytes, **kwargs: int) -> list[dict[str, object]]:
    reader = BridgeReader(**kwargs)
    reader.feed(data)
    return reader.items()


def test_a_frame_round_trips_with_its_bytes_raw() -> None:
    data = encode(FRAME)
    assert read_all(data) == [FRAME]
    # The payload is there as itself, not base64 or escaped in the JSON.
    assert data.endswith(b"hello\x00\xff")
    header = json.loads(data[8 : data.index(b"hello")])
    assert header[BLOBS] == [["payload", 5], ["original", 2]]


def test_an_item_without_bytes_has_no_blob_table() -> None:
    item = {"type": "close", "conn": "c1", "text": "ünïcode"}
    data = encode(item)
    assert BLOBS.encode() not in data
    assert read_all(data) == [item]


def test_bytearray_and_memoryview_travel_as_bytes() -> None:
    out = read_all(encode({"a": bytearray(b"xy"), "b": memoryview(b"z"), "c": b""}))
    assert out == [{"a": b"xy", "b": b"z", "c": b""}]


def test_fed_one_byte_at_a_time_items_come_out_when_whole() -> None:
    items = [FRAME, {"type": "hello", "worker": 2}, {"type": "x", "p": b"\x00" * 300}]
    data = b"".join(encode(i) for i in items)
    reader = BridgeReader()
    out = []
    for index in range(len(data)):
        reader.feed(data[index : index + 1])
        out += reader.items()
        assert reader.buffered < 400  # never more than one frame held
    assert out == items
    assert reader.buffered == 0


def test_several_frames_in_one_feed_and_a_partial_one_kept() -> None:
    data = encode({"n": 1}) + encode({"n": 2}) + encode({"n": 3})
    reader = BridgeReader()
    reader.feed(data[:-3])
    assert reader.items() == [{"n": 1}, {"n": 2}]
    reader.feed(data[-3:])
    assert reader.items() == [{"n": 3}]


@given(
    st.dictionaries(
        st.text(min_size=1).filter(lambda k: k != BLOBS),
        st.one_of(st.binary(), st.text(), st.integers(), st.booleans(), st.none()),
    ),
    st.integers(min_value=1, max_value=64),
)
def test_any_item_round_trips_in_any_split(item: dict[str, object], step: int) -> None:
    data = encode(item)
    reader = BridgeReader()
    out = []
    for index in range(0, len(data), step):
        reader.feed(data[index : index + step])
        out += reader.items()
    assert out == [item]


def test_encode_refuses_a_frame_over_the_limit() -> None:
    with pytest.raises(ValueError, match="over 100"):
        encode({"p": b"x" * 200}, max_frame=100)
    assert MAX_FRAME >= 64 * 1024 * 1024 * 4 // 3  # a paused 64 MiB message as base64


def test_the_reader_refuses_a_length_over_the_limit_before_its_bytes_come() -> None:
    reader = BridgeReader(max_frame=100)
    reader.feed(struct.pack("!I", 101))
    with pytest.raises(BridgeError, match="101 bytes is over 100"):
        reader.items()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (struct.pack("!I", 2) + b"ab", "too short for its header length"),
        (struct.pack("!II", 4, 9), "header runs past its end"),
        (frame_of(b"\xff\xfe"), "not JSON"),
        (frame_of(b"{nope"), "not JSON"),
        (frame_of(b"[1, 2]"), "not a JSON object"),
        (frame_of(b'{"$blobs": 3}'), '"\\$blobs" is not a list'),
        (frame_of(b'{"$blobs": [["p"]]}'), "is not \\[key, length\\]"),
        (frame_of(b'{"$blobs": [[1, 2]]}', b"ab"), "is not \\[key, length\\]"),
        (frame_of(b'{"$blobs": [["p", "2"]]}', b"ab"), "is not \\[key, length\\]"),
        (frame_of(b'{"$blobs": [["p", true]]}', b"a"), "is not \\[key, length\\]"),
        (frame_of(b'{"$blobs": [["p", -1]]}'), "is not \\[key, length\\]"),
        (frame_of(b'{"$blobs": ["p"]}'), "is not \\[key, length\\]"),
        (frame_of(b'{"$blobs": [["p", 5]]}', b"abc"), "blob 'p' runs past its end"),
        (frame_of(b'{"$blobs": [["p", 1]]}', b"abc"), "2 bytes after its blobs"),
        (frame_of(b"{}", b"junk"), "4 bytes after its blobs"),
    ],
)
def test_a_malformed_frame_is_a_bridge_error_saying_why(data: bytes, why: str) -> None:
    with pytest.raises(BridgeError, match=why):
        read_all(data)
