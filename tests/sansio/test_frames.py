"""frames.py: RFC 6455 section 5.7 vectors byte for byte, lengths, masking, close bodies."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.sansio.conftest import MASK_COPIERS, Wire, parse
from wsproxy.exceptions import ProtocolError
from wsproxy.sansio import masking
from wsproxy.sansio.frames import (
    MAX_CONTROL_PAYLOAD,
    RSV1,
    RSV2,
    RSV3,
    Frame,
    Opcode,
    apply_mask,
    is_valid_close_code,
    new_mask_key,
    parse_close,
    serialize_close,
    serialize_frame,
    serialize_header,
)
from wsproxy.sansio.masking import MaskCopier

KEY = bytes.fromhex("37fa213d")


def masked_frame(opcode: int, payload: bytes, key: bytes, fin: bool = True) -> bytes:
    """A client frame with a chosen key (serialize_frame picks a random one)."""
    return serialize_header(opcode, fin, 0, len(payload), key) + apply_mask(payload, key)


# --- RFC 6455 section 5.7 ------------------------------------------------------------------


def test_rfc_5_7_single_frame_unmasked_text() -> None:
    wire = bytes.fromhex("810548656c6c6f")
    assert serialize_frame(Frame(Opcode.TEXT, b"Hello"), mask=False) == wire
    assert parse(wire, masked=False) == [Wire(Opcode.TEXT, b"Hello")]


def test_rfc_5_7_single_frame_masked_text() -> None:
    wire = bytes.fromhex("818537fa213d7f9f4d5158")
    assert masked_frame(Opcode.TEXT, b"Hello", KEY) == wire
    assert parse(wire, masked=True) == [Wire(Opcode.TEXT, b"Hello")]


def test_rfc_5_7_fragmented_unmasked_text() -> None:
    first, second = bytes.fromhex("010348656c"), bytes.fromhex("80026c6f")
    assert serialize_frame(Frame(Opcode.TEXT, b"Hel", fin=False), mask=False) == first
    assert serialize_frame(Frame(Opcode.CONTINUATION, b"lo"), mask=False) == second
    assert parse(first + second, masked=False) == [
        Wire(Opcode.TEXT, b"Hel", fin=False),
        Wire(Opcode.CONTINUATION, b"lo"),
    ]


def test_rfc_5_7_unmasked_ping_and_masked_pong() -> None:
    ping = bytes.fromhex("890548656c6c6f")
    pong = bytes.fromhex("8a8537fa213d7f9f4d5158")
    assert serialize_frame(Frame(Opcode.PING, b"Hello"), mask=False) == ping
    assert masked_frame(Opcode.PONG, b"Hello", KEY) == pong
    assert parse(ping, masked=False) == [Wire(Opcode.PING, b"Hello")]
    assert parse(pong, masked=True) == [Wire(Opcode.PONG, b"Hello")]


def test_rfc_5_7_256_bytes_binary() -> None:
    payload = bytes(range(256))
    wire = serialize_frame(Frame(Opcode.BINARY, payload), mask=False)
    assert wire[:4] == bytes.fromhex("827e0100")
    assert wire[4:] == payload
    assert parse(wire, masked=False) == [Wire(Opcode.BINARY, payload)]


def test_rfc_5_7_64_kib_binary() -> None:
    payload = bytes(range(256)) * 256
    wire = serialize_frame(Frame(Opcode.BINARY, payload), mask=False)
    assert wire[:10] == bytes.fromhex("827f0000000000010000")
    assert wire[10:] == payload
    assert parse(wire, masked=False) == [Wire(Opcode.BINARY, payload)]


# --- header and lengths --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "encoded"),
    [
        (0, "00"),
        (125, "7d"),
        (126, "7e007e"),
        (65535, "7effff"),
        (65536, "7f0000000000010000"),
        (2**32, "7f0000000100000000"),
        (2**63 - 1, "7f7fffffffffffffff"),
    ],
)
def test_shortest_length_encoding(length: int, encoded: str) -> None:
    assert serialize_header(Opcode.BINARY, True, 0, length) == b"\x82" + bytes.fromhex(encoded)
    masked = serialize_header(Opcode.BINARY, True, 0, length, KEY)
    assert (
        masked == bytes([0x82, 0x80 | bytes.fromhex(encoded)[0]]) + bytes.fromhex(encoded)[1:] + KEY
    )


def test_header_flags() -> None:
    assert serialize_header(Opcode.TEXT, False, 0, 0) == b"\x01\x00"
    assert serialize_header(Opcode.CONTINUATION, True, 0, 0) == b"\x80\x00"
    assert serialize_header(Opcode.TEXT, True, RSV1 | RSV2 | RSV3, 0) == b"\xf1\x00"
    frame = Frame(Opcode.BINARY, b"", fin=False, rsv1=True, rsv2=True, rsv3=True)
    assert serialize_frame(frame, mask=False) == b"\x72\x00"
    assert serialize_frame(Frame(Opcode.BINARY, rsv2=True), mask=False) == b"\xa2\x00"
    assert serialize_frame(Frame(Opcode.BINARY, rsv3=True), mask=False) == b"\x92\x00"


def test_frame_is_control() -> None:
    assert [Frame(op).is_control for op in Opcode] == [False, False, False, True, True, True]


def test_serialize_frame_masked_has_fresh_key_and_parses_back() -> None:
    frame = Frame(Opcode.TEXT, b"Hello")
    one, two = serialize_frame(frame, mask=True), serialize_frame(frame, mask=True)
    assert one[:2] == two[:2] == b"\x81\x85"
    assert one[2:6] != two[2:6]
    assert apply_mask(one[6:], one[2:6]) == b"Hello"
    assert parse(one + two, masked=True) == [Wire(Opcode.TEXT, b"Hello")] * 2


def test_serialize_frame_masked_empty_payload() -> None:
    wire = serialize_frame(Frame(Opcode.PING), mask=True)
    assert wire[:2] == b"\x89\x80"
    assert len(wire) == 6


# --- masking ----------------------------------------------------------------------------------


@pytest.fixture(params=MASK_COPIERS)
def masker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> MaskCopier:
    """apply_mask over each implementation of the XOR it calls, ``masking.mask_copy``
    (test_masking.py tests them directly)."""
    copier: MaskCopier = request.param
    monkeypatch.setattr(masking, "mask_copy", copier)
    return copier


def test_apply_mask_rfc_vector_and_inverse(masker: MaskCopier) -> None:
    assert apply_mask(b"Hello", KEY) == bytes.fromhex("7f9f4d5158")
    assert apply_mask(bytes.fromhex("7f9f4d5158"), KEY) == b"Hello"
    assert apply_mask(b"", KEY) == b""
    assert apply_mask(bytearray(b"Hello"), KEY) == apply_mask(memoryview(b"Hello"), KEY)


def test_apply_mask_leaves_its_input_alone(masker: MaskCopier) -> None:
    data = bytearray(b"Hello")
    assert apply_mask(data, KEY, 1) == bytes(b ^ KEY[(i + 1) % 4] for i, b in enumerate(data))
    assert data == b"Hello"


def test_apply_mask_at_every_split_point(masker: MaskCopier) -> None:
    payload = bytes(range(37))
    whole = apply_mask(payload, KEY)
    for split in range(len(payload) + 1):
        head = apply_mask(payload[:split], KEY)
        tail = apply_mask(payload[split:], KEY, split)
        assert head + tail == whole, split


@pytest.mark.parametrize("copier", MASK_COPIERS)
@given(
    payload=st.binary(max_size=300),
    key=st.binary(min_size=4, max_size=4),
    cuts=st.lists(st.integers(0, 300), max_size=8),
)
def test_apply_mask_in_pieces_equals_whole(
    copier: MaskCopier, payload: bytes, key: bytes, cuts: list[int]
) -> None:
    with pytest.MonkeyPatch.context() as patch:  # a fixture would outlive hypothesis examples
        patch.setattr(masking, "mask_copy", copier)
        bounds = sorted({0, len(payload), *(c for c in cuts if c <= len(payload))})
        pieces = [apply_mask(payload[a:b], key, a) for a, b in itertools.pairwise(bounds)]
        assert b"".join(pieces) == apply_mask(payload, key)
        expected = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        assert apply_mask(payload, key) == expected


def test_new_mask_key_is_four_fresh_bytes() -> None:
    keys = {new_mask_key() for _ in range(64)}
    assert all(len(key) == 4 for key in keys)
    assert len(keys) > 60  # a collision among 64 random 32-bit keys: about 1 in 2 million


# --- close bodies ------------------------------------------------------------------------------


def test_parse_close_empty_is_no_status() -> None:
    assert parse_close(b"") == (None, "")


def test_parse_close_one_byte_is_protocol_error() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close(b"\x03")
    assert info.value.code == 1002


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_parse_close_invalid_code(code: int) -> None:
    assert not is_valid_close_code(code)
    with pytest.raises(ProtocolError) as info:
        parse_close(code.to_bytes(2, "big") + b"bye")
    assert info.value.code == 1002


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, *range(1007, 1015), 3000, 3999, 4000, 4999]
)
def test_parse_close_valid_code(code: int) -> None:
    assert is_valid_close_code(code)
    assert parse_close(code.to_bytes(2, "big")) == (code, "")
    assert parse_close(code.to_bytes(2, "big") + "né".encode()) == (code, "né")


def test_valid_close_codes_exactly() -> None:
    valid = {code for code in range(65536) if is_valid_close_code(code)}
    assert valid == {1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)}


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xc3", b"\xed\xa0\x80", b"\xc0\xaf"])
def test_parse_close_reason_not_utf8(reason: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close(b"\x03\xe8" + reason)
    assert info.value.code == 1007


def test_serialize_close() -> None:
    assert serialize_close(None) == b""
    assert serialize_close(None, "ignored without a code") == b""
    assert serialize_close(1000) == b"\x03\xe8"
    assert serialize_close(1001, "bye") == b"\x03\xe9bye"
    assert parse_close(serialize_close(4999, "é" * 10)) == (4999, "é" * 10)


@pytest.mark.parametrize("char", ["a", "é", "€", "😀"])
@pytest.mark.parametrize("count", [60, 61, 62, 123, 124, 200])
def test_serialize_close_truncates_on_a_character_boundary(char: str, count: int) -> None:
    reason = char * count
    body = serialize_close(1000, reason)
    assert len(body) <= MAX_CONTROL_PAYLOAD
    code, parsed = parse_close(body)  # raises if the cut split a character
    assert code == 1000
    assert reason.startswith(parsed)
    # As much as fits: one more character would not.
    assert len(parsed.encode()) + len(char.encode()) > 123 or parsed == reason


@given(st.text(max_size=200))
def test_serialize_close_round_trips_or_truncates(reason: str) -> None:
    body = serialize_close(3000, reason)
    assert len(body) <= MAX_CONTROL_PAYLOAD
    code, parsed = parse_close(body)
    assert code == 3000
    assert reason.startswith(parsed)
    if len(reason.encode()) <= 123:
        assert parsed == reason
