"""endpoint.py: FrameReader and FrameWriter, fed whole and one byte at a time.

Each error case is one playbook: these bytes from this peer, this close code. Every stream is
also fed byte by byte, and must read the same.
"""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sansio.conftest import (
    MIB,
    Wire,
    assemble,
    client_bytes,
    feed,
    frame_sequences,
    frames_bytes,
    parse,
    reader,
    server_bytes,
    split,
)
from wsproxy.sansio.deflate import DeflateParams, Inflater
from wsproxy.sansio.endpoint import READ_BUDGET, FrameReader
from wsproxy.sansio.events import ControlFrame, DataChunk, Event, Violation, clear_preview
from wsproxy.sansio.fastpath import EVENT_COST
from wsproxy.sansio.frames import (
    FIN,
    MASK,
    RSV1,
    RSV2,
    RSV3,
    Opcode,
    apply_mask,
    serialize_close,
    serialize_header,
)
from wsproxy.sansio.framewriter import JOIN_LIMIT, FrameWriter

KEY = bytes.fromhex("37fa213d")
TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG


def raw(first: int, payload: bytes = b"", *, masked: bool, length: bytes | None = None) -> bytes:
    """A frame built by hand, so it can break the rules: ``first`` is the whole first byte,
    ``length`` the raw length field (second byte's 7 bits plus any extension)."""
    if length is None:
        length = serialize_header(0, False, 0, len(payload))[1:]
    if not masked:
        return bytes([first]) + length + payload
    return bytes([first, length[0] | MASK]) + length[1:] + KEY + apply_mask(payload, KEY)


def whole_and_bytewise(masked: bool, data: bytes, **limits: int) -> list[Wire | Violation]:
    """Parse ``data`` fed whole and one byte at a time; both must agree."""
    whole = assemble(feed(reader(masked, **limits), data))
    bytewise = assemble(feed(reader(masked, **limits), data, step=1))
    assert whole == bytewise
    return whole


def violation(events: list[Event] | list[Wire | Violation]) -> Violation:
    """The one Violation, which must be the last event."""
    found = [event for event in events if isinstance(event, Violation)]
    assert len(found) == 1, events
    assert events[-1] is found[0]
    return found[0]


# --- streams that parse ------------------------------------------------------------------------

HELLO_SPLIT = "é€😀".encode()  # 2, 3 and 4-byte characters

VALID_STREAMS: dict[str, tuple[bool, bytes, list[Wire]]] = {
    "rfc unmasked text": (False, bytes.fromhex("810548656c6c6f"), [Wire(TEXT, b"Hello")]),
    "rfc masked text": (True, bytes.fromhex("818537fa213d7f9f4d5158"), [Wire(TEXT, b"Hello")]),
    "rfc fragmented": (
        False,
        bytes.fromhex("010348656c80026c6f"),
        [Wire(TEXT, b"Hel", fin=False), Wire(CONT, b"lo")],
    ),
    "rfc ping and pong": (
        False,
        bytes.fromhex("890548656c6c6f8a0548656c6c6f"),
        [Wire(PING, b"Hello"), Wire(PONG, b"Hello")],
    ),
    "empty frames": (
        True,
        client_bytes(
            Wire(TEXT, b"", fin=False),
            Wire(CONT, b"", fin=False),
            Wire(CONT, b""),
            Wire(BINARY, b""),
            Wire(PING, b""),
        ),
        [
            Wire(TEXT, b"", fin=False),
            Wire(CONT, b"", fin=False),
            Wire(CONT, b""),
            Wire(BINARY, b""),
            Wire(PING, b""),
        ],
    ),
    "16 and 64-bit lengths, masked": (
        True,
        client_bytes(
            Wire(BINARY, b"x" * 126), Wire(BINARY, b"y" * 65535), Wire(TEXT, b"z" * 65536)
        ),
        [Wire(BINARY, b"x" * 126), Wire(BINARY, b"y" * 65535), Wire(TEXT, b"z" * 65536)],
    ),
    "controls between fragments, in order": (
        True,
        client_bytes(
            Wire(BINARY, b"one", fin=False),
            Wire(PING, b"p1"),
            Wire(CONT, b"two", fin=False),
            Wire(PONG, b"p2"),
            Wire(CLOSE, serialize_close(1000, "mid")),
            Wire(CONT, b"three"),
        ),
        [
            Wire(BINARY, b"one", fin=False),
            Wire(PING, b"p1"),
            Wire(CONT, b"two", fin=False),
            Wire(PONG, b"p2"),
            Wire(CLOSE, serialize_close(1000, "mid")),
            Wire(CONT, b"three"),
        ],
    ),
    "text split inside characters": (
        False,
        server_bytes(
            *(Wire(CONT if i else TEXT, bytes([b]), i == 8) for i, b in enumerate(HELLO_SPLIT))
        ),
        [Wire(CONT if i else TEXT, bytes([b]), i == 8) for i, b in enumerate(HELLO_SPLIT)],
    ),
    "close with a 125-byte body": (
        True,
        client_bytes(Wire(CLOSE, serialize_close(4000, "r" * 123))),
        [Wire(CLOSE, serialize_close(4000, "r" * 123))],
    ),
}


@pytest.mark.parametrize("name", VALID_STREAMS)
def test_valid_stream_whole_and_bytewise(name: str) -> None:
    masked, data, expected = VALID_STREAMS[name]
    assert whole_and_bytewise(masked, data) == expected


@pytest.mark.parametrize("name", VALID_STREAMS)
def test_valid_stream_at_every_two_way_split(name: str) -> None:
    masked, data, expected = VALID_STREAMS[name]
    # Long streams at a sample of cuts (around the headers); byte at a time covers the rest.
    cuts = range(len(data) + 1) if len(data) <= 300 else [*range(20), *range(120, 150, 1)]
    for cut in cuts:
        r = reader(masked)
        events = r.receive_data(data[:cut]) + r.receive_data(data[cut:])
        assert assemble(events) == expected, cut
        assert r._buffer == b""


def test_frame_arriving_whole_is_one_chunk() -> None:
    (chunk,) = reader(True).receive_data(client_bytes(Wire(TEXT, b"Hello")))
    assert chunk == DataChunk(
        opcode=TEXT,
        message_opcode=TEXT,
        fin=True,
        rsv=0,
        frame_length=5,
        data=b"Hello",
        content=b"Hello",
        frame_start=True,
        frame_end=True,
        compressed=False,
    )
    assert chunk.message_end


def test_chunks_carry_the_message_opcode_and_flags() -> None:
    data = server_bytes(Wire(TEXT, b"ab", fin=False), Wire(PING, b""), Wire(CONT, b"cd"))
    events = feed(reader(False), data, step=1)
    chunks = [e for e in events if isinstance(e, DataChunk)]
    assert [
        (c.opcode, c.message_opcode, c.fin, c.data, c.frame_start, c.frame_end) for c in chunks
    ] == [
        (TEXT, TEXT, False, b"a", True, False),
        (TEXT, TEXT, False, b"b", False, True),
        (CONT, TEXT, True, b"c", True, False),
        (CONT, TEXT, True, b"d", False, True),
    ]
    assert [c.message_end for c in chunks] == [False, False, False, True]
    assert events[2] == ControlFrame(PING, b"")


def test_in_message_and_bytes_received() -> None:
    r = reader(False)
    assert not r.in_message
    r.receive_data(server_bytes(Wire(BINARY, b"ab", fin=False)))
    assert r.in_message
    r.receive_data(server_bytes(Wire(PING, b"x")))
    assert r.in_message
    r.receive_data(server_bytes(Wire(CONT, b"c")))
    assert not r.in_message
    assert r.bytes_received == 4 + 3 + 3
    assert r.receive_data(b"") == []


def test_partial_control_frame_waits_for_its_payload() -> None:
    data = client_bytes(Wire(PING, b"0123456789"))
    r = reader(True)
    for cut in range(len(data) - 1):
        assert r.receive_data(data[cut : cut + 1]) == []
    assert r.receive_data(data[-1:]) == [ControlFrame(PING, b"0123456789")]
    assert r._buffer == b""


# --- close frames ------------------------------------------------------------------------------


@pytest.mark.parametrize("masked", [True, False])
def test_close_frames_parsed_into_code_and_reason(masked: bool) -> None:
    data = frames_bytes(
        [Wire(CLOSE, serialize_close(1001, "going ✈")), Wire(CLOSE, b"")], mask=masked
    )
    for step in (None, 1):
        events = feed(reader(masked), data, step)
        assert events == [
            ControlFrame(CLOSE, serialize_close(1001, "going ✈"), 1001, "going ✈"),
            ControlFrame(CLOSE, b"", None, ""),
        ]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"\x03", 1002),
        (b"\x03\xed", 1002),  # 1005
        (b"\x00\x00", 1002),
        (b"\x0b\xb7", 1002),  # 2999
        (b"\x03\xe8\xff", 1007),
        (b"\x03\xe8ok\xed\xa0\x80", 1007),
    ],
)
def test_bad_close_frame(body: bytes, code: int) -> None:
    for masked in (True, False):
        events = whole_and_bytewise(masked, raw(FIN | CLOSE, body, masked=masked))
        assert violation(events).code == code


# --- one test per error ------------------------------------------------------------------------


def check_error(masked: bool, data: bytes, code: int, **limits: int) -> Violation:
    """``data`` must fail with ``code``, whole and byte by byte, with nothing after it."""
    found = violation(whole_and_bytewise(masked, data, **limits))
    assert found.code == code
    return found


def test_unmasked_frame_from_client() -> None:
    found = check_error(True, raw(FIN | TEXT, b"Hello", masked=False), 1002)
    assert "unmasked" in found.reason


def test_masked_frame_from_server() -> None:
    found = check_error(False, raw(FIN | TEXT, b"Hello", masked=True), 1002)
    assert "masked" in found.reason


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
@pytest.mark.parametrize("masked", [True, False])
def test_reserved_opcode(opcode: int, masked: bool) -> None:
    found = check_error(masked, raw(FIN | opcode, b"x", masked=masked), 1002)
    assert hex(opcode) in found.reason


@pytest.mark.parametrize("rsv", [RSV2, RSV3, RSV2 | RSV3, RSV1 | RSV2])
@pytest.mark.parametrize("opcode", [TEXT, BINARY, PING])
def test_rsv2_rsv3(rsv: int, opcode: int) -> None:
    check_error(True, raw(FIN | rsv | opcode, b"x", masked=True), 1002)


def test_rsv2_is_refused_even_with_deflate() -> None:
    r = reader(False)
    r.inflater = Inflater(DeflateParams(), False, MIB)
    assert violation(r.receive_data(raw(FIN | RSV2 | TEXT, b"x", masked=False))).code == 1002


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_rsv1_without_deflate(opcode: int) -> None:
    check_error(True, raw(FIN | RSV1 | opcode, b"x", masked=True), 1002)


@pytest.mark.parametrize("opcode", [CLOSE, PING, PONG])
def test_rsv1_on_a_control_frame(opcode: int) -> None:
    check_error(False, raw(FIN | RSV1 | opcode, b"", masked=False), 1002)
    r = reader(False)
    r.inflater = Inflater(DeflateParams(), False, MIB)
    assert violation(r.receive_data(raw(FIN | RSV1 | opcode, b"", masked=False))).code == 1002


def test_rsv1_on_a_continuation() -> None:
    data = raw(TEXT, b"a", masked=True) + raw(FIN | RSV1 | CONT, b"b", masked=True)
    found = check_error(True, data, 1002)
    assert "continuation" in found.reason
    # Also with deflate negotiated: only the first frame of a message may carry RSV1.
    r = reader(False)
    r.inflater = Inflater(DeflateParams(), False, MIB)
    first = raw(RSV1 | TEXT, b"\xf2\x48", masked=False)
    events = r.receive_data(first + raw(FIN | RSV1 | CONT, b"\xcd", masked=False))
    assert violation(events).code == 1002


@pytest.mark.parametrize(
    "length",
    [
        b"\x7e\x00\x00",
        b"\x7e\x00\x7d",
        b"\x7f" + (0).to_bytes(8, "big"),
        b"\x7f" + (125).to_bytes(8, "big"),
        b"\x7f" + (65535).to_bytes(8, "big"),
    ],
    ids=["16-bit 0", "16-bit 125", "64-bit 0", "64-bit 125", "64-bit 65535"],
)
def test_length_not_in_shortest_form(length: bytes) -> None:
    # The violation comes at the header: no payload is ever sent.
    found = check_error(True, raw(FIN | BINARY, masked=True, length=length), 1002)
    assert "shortest" in found.reason


def test_64_bit_length_with_top_bit_set() -> None:
    length = b"\x7f" + (2**63 + 65536).to_bytes(8, "big")
    found = check_error(False, raw(FIN | BINARY, masked=False, length=length), 1002)
    assert "top bit" in found.reason
    check_error(True, raw(FIN | BINARY, masked=True, length=b"\x7f" + b"\xff" * 8), 1002)


@pytest.mark.parametrize("opcode", [CLOSE, PING, PONG])
def test_control_frame_over_125_bytes(opcode: int) -> None:
    # 126 bytes: only the header is sent, the error must not wait for the payload.
    found = check_error(True, raw(FIN | opcode, masked=True, length=b"\x7e\x00\x7e"), 1002)
    assert "125" in found.reason
    check_error(False, raw(FIN | opcode, b"x" * 126, masked=False), 1002)


@pytest.mark.parametrize("opcode", [CLOSE, PING, PONG])
def test_fragmented_control_frame(opcode: int) -> None:
    found = check_error(True, raw(opcode, b"x", masked=True), 1002)
    assert "fragmented" in found.reason


def test_continuation_without_a_message() -> None:
    check_error(True, raw(FIN | CONT, b"x", masked=True), 1002)
    check_error(False, raw(CONT, b"x", masked=False), 1002)
    # After a finished message, too.
    check_error(
        False, raw(FIN | TEXT, b"a", masked=False) + raw(FIN | CONT, b"b", masked=False), 1002
    )


@pytest.mark.parametrize("first", [TEXT, BINARY])
@pytest.mark.parametrize("second", [TEXT, BINARY])
def test_new_message_inside_a_fragmented_one(first: int, second: int) -> None:
    data = raw(first, b"a", masked=True) + raw(FIN | second, b"b", masked=True)
    events = whole_and_bytewise(True, data)
    assert events[0] == Wire(first, b"a", fin=False)
    assert violation(events).code == 1002


def test_events_before_the_violation_come_out() -> None:
    data = client_bytes(Wire(TEXT, b"Hello"), Wire(PING, b"p")) + raw(
        FIN | RSV2 | TEXT, b"x", masked=True
    )
    events = whole_and_bytewise(True, data)
    assert events[:2] == [Wire(TEXT, b"Hello"), Wire(PING, b"p")]
    assert violation(events).code == 1002


def test_nothing_after_a_violation() -> None:
    r = reader(True)
    events = r.receive_data(raw(FIN | 3, b"", masked=True) + client_bytes(Wire(TEXT, b"lost")))
    assert events == [Violation(1002, "reserved opcode 0x3")]
    assert r.failed == events[0]
    assert r.receive_data(client_bytes(Wire(TEXT, b"more"), Wire(PING, b""))) == []
    assert r.receive_data(b"\x00" * 100) == []
    assert r._buffer == b""


# --- UTF-8 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",
        b"\xc0\xaf",
        b"ok\x80",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe0\x80\x80",
        b"a\xc3(",
    ],
)
def test_invalid_utf8_text(payload: bytes) -> None:
    check_error(True, raw(FIN | TEXT, payload, masked=True), 1007)
    check_error(False, raw(FIN | TEXT, payload, masked=False), 1007)


def test_binary_is_not_checked_for_utf8() -> None:
    assert whole_and_bytewise(True, raw(FIN | BINARY, b"\xff\xed\xa0\x80", masked=True)) == [
        Wire(BINARY, b"\xff\xed\xa0\x80")
    ]


def test_text_ending_in_a_truncated_character() -> None:
    check_error(False, raw(FIN | TEXT, b"ok\xe2\x82", masked=False), 1007)
    data = raw(TEXT, b"ok\xe2", masked=False) + raw(FIN | CONT, b"\x82", masked=False)
    check_error(False, data, 1007)


@pytest.mark.parametrize("char", ["é", "€", "😀", "\U0010ffff", "\ud7ff", "\ue000"])
def test_character_split_across_fragments_is_valid(char: str) -> None:
    encoded = char.encode()
    for cut in range(1, len(encoded)):
        frames = [Wire(TEXT, b"a" + encoded[:cut], fin=False), Wire(PING, b"")]
        frames.append(Wire(CONT, encoded[cut:] + b"z"))
        assert whole_and_bytewise(True, client_bytes(*frames)) == frames


@pytest.mark.parametrize(
    ("head", "tail"),
    [(b"\xe2", b"\x28\xa1"), (b"\xed", b"\xa0\x80"), (b"\xf0\x9f", b"\x98\x28"), (b"\xc3", b"A")],
)
def test_character_split_across_fragments_is_invalid(head: bytes, tail: bytes) -> None:
    data = raw(TEXT, b"a" + head, masked=True) + raw(FIN | CONT, tail, masked=True)
    events = whole_and_bytewise(True, data)
    assert events[0] == Wire(TEXT, b"a" + head, fin=False)
    assert violation(events).code == 1007


@pytest.mark.parametrize(
    ("valid", "bad"),
    [
        (b"Hello ", b"\xff"),
        (b"caf\xc3", b"\x28"),
        (b"\xe2\x82", b"\x28"),
        (b"x\xed", b"\xa0"),  # the surrogate ED A0 80: CPython alone would wait for the 80
        (b"\xed", b"\xbf"),
        (b"\xf4", b"\x90"),
        (b"\xe0", b"\x80"),
        (b"\xf0\x9f\x98", b"A"),
    ],
)
@pytest.mark.parametrize("masked", [True, False])
def test_invalid_utf8_fails_at_the_first_bad_byte(valid: bytes, bad: bytes, masked: bool) -> None:
    rest = b" and plenty more that never needs to arrive"
    data = raw(FIN | TEXT, valid + bad + rest, masked=masked)
    header = len(data) - len(valid + bad + rest)
    r = reader(masked)
    events = feed(r, data[: header + len(valid)], step=1)
    assert not any(isinstance(event, Violation) for event in events)
    assert b"".join(e.data for e in events if isinstance(e, DataChunk)) == valid
    assert (
        violation(r.receive_data(data[header + len(valid) : header + len(valid) + 1])).code == 1007
    )


def test_fail_fast_across_fragments() -> None:
    r = reader(True)
    events = r.receive_data(raw(TEXT, b"ok\xed", masked=True) + client_bytes(Wire(PING, b"")))
    assert not any(isinstance(event, Violation) for event in events)
    bad = raw(FIN | CONT, b"\xa0\x80 and more", masked=True)
    header = 6
    assert r.receive_data(bad[:header]) == []
    assert violation(r.receive_data(bad[header : header + 1])).code == 1007


def _utf8_prefixes() -> set[bytes]:
    """Every prefix of every character's encoding, up to 3 bytes (for 4-byte ones too)."""
    prefixes = set()
    for code_point in range(0x80, 0x110000):
        if not 0xD800 <= code_point <= 0xDFFF:
            encoded = chr(code_point).encode()
            prefixes.update(encoded[:i] for i in range(1, min(len(encoded), 3) + 1))
    return prefixes


def test_every_impossible_utf8_prefix_fails_at_once() -> None:
    """Exhaustive: after a lead byte and up to two more, the reader fails exactly when no
    character starts with those bytes (RFC 6455 8.1: fail as soon as the data cannot be valid)."""
    prefixes = _utf8_prefixes()
    candidates = [bytes([lead]) for lead in range(0x80, 0x100)]
    candidates += [
        bytes([lead, b])
        for lead in range(0xC0, 0x100)
        if bytes([lead]) in prefixes
        for b in range(256)
    ]
    candidates += [
        bytes([lead, b, c])
        for lead in range(0xE0, 0xF5)
        for b in range(256)
        if bytes([lead, b]) in prefixes
        for c in range(256)
    ]
    header = raw(FIN | TEXT, masked=False, length=b"\x7d")  # 125 bytes to come: never the end
    wrong = []
    for candidate in candidates:
        r = reader(False)
        r.receive_data(header)
        failed = any(isinstance(e, Violation) for e in r.receive_data(candidate))
        if failed == (candidate in prefixes):
            wrong.append(candidate.hex())
    assert wrong == []


# --- limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize("masked", [True, False])
def test_frame_over_max_frame_size_fails_at_the_header(masked: bool) -> None:
    data = raw(FIN | BINARY, b"x" * 1001, masked=masked)
    header = len(data) - 1001
    r = reader(masked, max_frame_size=1000)
    assert violation(feed(r, data[:header], step=1)).code == 1009
    assert r.receive_data(data[header:]) == []
    # The limit itself is fine.
    exact = raw(FIN | BINARY, b"x" * 1000, masked=masked)
    assert whole_and_bytewise(masked, exact, max_frame_size=1000) == [Wire(BINARY, b"x" * 1000)]


def test_huge_declared_length_fails_at_the_header() -> None:
    r = reader(False, max_frame_size=MIB)
    found = violation(
        r.receive_data(raw(FIN | BINARY, masked=False, length=b"\x7f" + b"\x7f" + b"\xff" * 7))
    )
    assert found.code == 1009


def test_message_over_max_message_size_across_fragments() -> None:
    frames = [Wire(TEXT, b"a" * 400, fin=False), Wire(CONT, b"b" * 400, fin=False)]
    ok = client_bytes(*frames, Wire(CONT, b"c" * 200))
    assert len(whole_and_bytewise(True, ok, max_message_size=1000)) == 3
    too_big = client_bytes(*frames, Wire(PING, b""), Wire(CONT, b"c" * 201))
    r = reader(True, max_message_size=1000)
    events = r.receive_data(too_big[:-201])  # up to the last frame's header only
    assert violation(events).code == 1009
    assert len(assemble(events)) == 4  # two fragments and the ping came out first
    check_error(True, too_big, 1009, max_message_size=1000)


def test_message_size_counts_per_message() -> None:
    data = client_bytes(*[Wire(BINARY, b"x" * 600)] * 5)
    assert len(whole_and_bytewise(True, data, max_message_size=600)) == 5


def test_16_mib_frame_in_64_kib_pieces_streams_with_a_small_buffer() -> None:
    size = 16 * MIB
    payload = bytes(range(256)) * (size // 256)
    writer = FrameWriter(mask=True)
    writer.send_frame(BINARY, payload)
    data = writer.data_to_send()
    r = reader(True, max_frame_size=size, max_message_size=size)
    received = bytearray()
    chunks = 0
    step = 64 * 1024
    for start in range(0, len(data), step):
        for event in r.receive_data(data[start : start + step]):
            assert isinstance(event, DataChunk)
            assert event.frame_length == size
            assert len(event.data) <= step
            received += event.data
            chunks += 1
        assert len(r._buffer) <= 14  # at most a header: the payload is never held
    assert chunks == 257  # the header shifts the pieces by 14 bytes
    assert received == payload


# --- permessage-deflate --------------------------------------------------------------------------

HELLO_DEFLATED = bytes.fromhex("f248cdc9c90700")  # RFC 7692 section 7.2.3.1


def deflating_reader(masked: bool, limit: int | None = MIB, **limits: int) -> FrameReader:
    r = reader(masked, **limits)
    r.inflater = Inflater(DeflateParams(), masked, limit)
    return r


def test_compressed_message_rfc_7692_vectors() -> None:
    for data in (
        bytes.fromhex("c107f248cdc9c90700"),
        bytes.fromhex("4103f248cd8004c9c90700"),
    ):
        for step in (None, 1):
            events = feed(deflating_reader(False), data, step)
            chunks = [e for e in events if isinstance(e, DataChunk)]
            assert b"".join(c.content for c in chunks) == b"Hello"
            assert b"".join(c.data for c in chunks) == HELLO_DEFLATED
            assert all(c.compressed and c.message_opcode == TEXT for c in chunks)
            assert chunks[0].rsv == RSV1


def test_compressed_then_plain_message() -> None:
    data = raw(FIN | RSV1 | TEXT, HELLO_DEFLATED, masked=True) + raw(
        FIN | TEXT, b"plain", masked=True
    )
    chunks = [e for e in deflating_reader(True).receive_data(data) if isinstance(e, DataChunk)]
    assert [(c.compressed, c.content) for c in chunks] == [(True, b"Hello"), (False, b"plain")]


def test_compressed_text_with_invalid_utf8_after_inflating() -> None:
    encoder = zlib.compressobj(wbits=-15)
    payload = (encoder.compress(b"ok\xff") + encoder.flush(zlib.Z_SYNC_FLUSH))[:-4]
    events = deflating_reader(False).receive_data(raw(FIN | RSV1 | TEXT, payload, masked=False))
    assert violation(events).code == 1007


def test_compressed_message_over_the_limit() -> None:
    """The limit applies to the inflated size, across fragments, while inflating."""
    encoder = zlib.compressobj(wbits=-15)
    payload = (encoder.compress(b"\x00" * 100_000) + encoder.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert len(payload) < 1000
    half = len(payload) // 2
    data = raw(RSV1 | BINARY, payload[:half], masked=True) + raw(
        FIN | CONT, payload[half:], masked=True
    )
    for step in (None, 1, 7):
        r = deflating_reader(True, limit=50_000, max_message_size=50_000)
        events = feed(r, data, step)
        assert violation(events).code == 1009
        inflated = sum(len(e.content) for e in events if isinstance(e, DataChunk))
        assert inflated <= 50_000
    # The same message under a larger limit inflates whole.
    r = deflating_reader(True, limit=100_000, max_message_size=100_000)
    events = r.receive_data(data)
    assert sum(len(e.content) for e in events if isinstance(e, DataChunk)) == 100_000


def test_corrupt_compressed_data() -> None:
    events = deflating_reader(False).receive_data(
        raw(FIN | RSV1 | BINARY, b"\xff\xff\xff", masked=False)
    )
    assert violation(events).code == 1007


# --- properties --------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(frames=frame_sequences(), masked=st.booleans(), data=st.data())
def test_valid_frames_parse_back_at_any_split(
    frames: list[Wire], masked: bool, data: st.DataObject
) -> None:
    wire = frames_bytes(frames, mask=masked)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    r = reader(masked)
    events = []
    for piece in split(wire, cuts):
        events += r.receive_data(piece)
    assert assemble(events) == frames
    assert r._buffer == b""


@settings(max_examples=300, deadline=None)
@given(
    blob=st.binary(max_size=400),
    masked=st.booleans(),
    deflate=st.booleans(),
    cuts=st.lists(st.integers(0, 400), max_size=8),
)
def test_arbitrary_bytes_never_raise(
    blob: bytes, masked: bool, deflate: bool, cuts: list[int]
) -> None:
    def run(pieces: list[bytes]) -> tuple[list[Wire | Violation], bytes]:
        r = reader(masked, max_frame_size=300, max_message_size=500)
        if deflate:
            r.inflater = Inflater(DeflateParams(), masked, 500)
        events: list[Event] = []
        for piece in pieces:
            events += r.receive_data(piece)
        assert sum(isinstance(e, Violation) for e in events) <= 1
        if r.failed is not None:
            assert events[-1] is r.failed
            assert r.failed.code in (1002, 1007, 1009)
        data = b"".join(e.data for e in events if isinstance(e, DataChunk))
        return assemble(events), data

    assert run([blob]) == run(split(blob, cuts))


# --- FrameWriter ---------------------------------------------------------------------------------


def test_writer_masked_output_parses_back() -> None:
    writer = FrameWriter(mask=True)
    writer.send_frame(TEXT, b"Hel", fin=False)
    writer.send_frame(PING, b"")
    writer.send_frame(CONT, b"lo")
    writer.send_frame(BINARY, bytes(70_000))
    writer.send_close(1000, "bye")
    data = writer.data_to_send()
    assert writer.bytes_sent == len(data)
    assert writer.data_to_send() == b""
    assert parse(data, masked=True) == [
        Wire(TEXT, b"Hel", fin=False),
        Wire(PING, b""),
        Wire(CONT, b"lo"),
        Wire(BINARY, bytes(70_000)),
        Wire(CLOSE, b"\x03\xe8bye"),
    ]


def test_writer_unmasked_output_is_plain() -> None:
    writer = FrameWriter(mask=False)
    writer.send_frame(TEXT, b"Hello")
    writer.send_close(None)
    writer.send_frame(BINARY, b"\x01", rsv=RSV1)
    assert writer.data_to_send() == bytes.fromhex("810548656c6c6f 8800 c20101")


def test_writer_uses_a_fresh_key_per_frame() -> None:
    writer = FrameWriter(mask=True)
    writer.send_frame(TEXT, b"Hello")
    first = writer.data_to_send()
    writer.send_frame(TEXT, b"Hello")
    second = writer.data_to_send()
    assert first[:2] == second[:2] == b"\x81\x85"
    assert first[2:6] != second[2:6]
    assert first[6:] != second[6:]
    writer.start_frame(BINARY, True, 0, 4)
    writer.send_payload(b"abcd")
    third = writer.data_to_send()
    assert len({first[2:6], second[2:6], third[2:6]}) == 3


@pytest.mark.parametrize("mask", [True, False])
@pytest.mark.parametrize("size", [0, 5, 125, 126, 70_000])
def test_writer_streaming_equals_send_frame(mask: bool, size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    whole = FrameWriter(mask=mask)
    whole.send_frame(BINARY, payload, fin=False, rsv=0)
    streamed = FrameWriter(mask=mask)
    streamed.start_frame(BINARY, False, 0, size)
    for piece in split(payload, [1, 2, 3, 7, 100, 65_536]):
        streamed.send_payload(piece)
    one, two = whole.data_to_send(), streamed.data_to_send()
    assert len(one) == len(two)
    assert parse(one, masked=mask) == parse(two, masked=mask) == [Wire(BINARY, payload, fin=False)]
    if not mask:
        assert one == two
    else:  # same bytes once each is unmasked with its own key
        offset = len(one) - size - 4
        assert one[:offset] == two[:offset]
        assert apply_mask(one[offset + 4 :], one[offset : offset + 4]) == payload
        assert apply_mask(two[offset + 4 :], two[offset : offset + 4]) == payload


# --- binary payloads that stay masked (keep_binary_masked), as the relay forwards them ----------


def kept_masked_reader() -> FrameReader:
    r = reader(True)
    r.keep_binary_masked = True
    return r


def chunks(events: list[Event]) -> list[DataChunk]:
    assert all(isinstance(event, DataChunk) for event in events), events
    return [event for event in events if isinstance(event, DataChunk)]


def test_binary_from_a_client_may_stay_masked() -> None:
    payload = bytes(range(10))
    wire = raw(FIN | BINARY, payload, masked=True)
    (chunk,) = chunks(kept_masked_reader().receive_data(wire))
    assert chunk.data == wire[-10:] == apply_mask(payload, KEY)  # as it came, still masked
    assert (chunk.mask_key, chunk.mask_offset) == (KEY, 0)
    assert clear_preview(chunk) == payload
    assert clear_preview(chunk, 3) == payload[:3]


def test_masked_pieces_carry_their_offset_byte_by_byte() -> None:
    payload = b"every byte its own offset"
    wire = raw(FIN | BINARY, payload, masked=True)
    pieces = chunks(feed(kept_masked_reader(), wire, step=1))
    assert [c.mask_offset for c in pieces] == list(range(len(payload)))
    assert b"".join(clear_preview(c) for c in pieces) == payload
    assert b"".join(c.data for c in pieces) == apply_mask(payload, KEY)
    assert all(c.mask_key == KEY for c in pieces)


@pytest.mark.parametrize("masked_opcode", [TEXT, BINARY])
def test_only_plain_binary_stays_masked(masked_opcode: int) -> None:
    # Text is checked for UTF-8, so it is unmasked whatever keep_binary_masked says.
    payload = "é".encode() * 3
    (chunk,) = chunks(
        kept_masked_reader().receive_data(raw(FIN | masked_opcode, payload, masked=True))
    )
    if masked_opcode == TEXT:
        assert (chunk.data, chunk.mask_key) == (payload, b"")
    else:
        assert (chunk.data, chunk.mask_key) == (apply_mask(payload, KEY), KEY)
    assert clear_preview(chunk) == payload


def test_compressed_binary_is_unmasked_to_inflate() -> None:
    r = kept_masked_reader()
    r.inflater = Inflater(DeflateParams(), True, MIB)
    compressed = bytes.fromhex("f248cdc9c90700")  # RFC 7692 section 7.2.3.1: "Hello"
    (chunk,) = chunks(r.receive_data(raw(FIN | RSV1 | BINARY, compressed, masked=True)))
    assert (chunk.data, chunk.content, chunk.mask_key) == (compressed, b"Hello", b"")
    assert clear_preview(chunk) == b"Hello"


def test_clear_preview_of_a_plain_chunk_is_its_content() -> None:
    (chunk,) = chunks(reader(False).receive_data(raw(FIN | BINARY, bytes(100), masked=False)))
    assert chunk.mask_key == b""
    assert clear_preview(chunk) == bytes(64)
    assert clear_preview(chunk, 100) == bytes(100)


@pytest.mark.parametrize("streamed", [False, True])
def test_a_masked_payload_is_remasked_in_one_pass(streamed: bool) -> None:
    # client -> proxy -> upstream: the payload stays masked with the client's key and the
    # writer masks it again with both keys XORed; the upstream reads the plain payload.
    payload = bytes(i % 251 for i in range(70_000))
    wire = raw(FIN | BINARY, payload, masked=True)
    writer = FrameWriter(mask=True)
    for step in (None, 997) if streamed else (None,):
        pieces = chunks(feed(kept_masked_reader(), wire, step))
        if streamed:
            first = pieces[0]
            writer.start_frame(first.opcode, first.fin, first.rsv, first.frame_length)
            for piece in pieces:
                writer.send_payload(piece.data, masked_with=piece.mask_key)
        else:
            (whole,) = pieces
            writer.send_frame(BINARY, whole.data, masked_with=whole.mask_key)
    out = writer.data_to_send()
    expected = [Wire(BINARY, payload)] * (2 if streamed else 1)
    assert parse(out, masked=True) == expected
    assert payload[:64] not in out  # masked on the wire, with a key of the writer's


# --- chunks_to_send: what the asyncio shell writes ---------------------------------------------


def test_chunks_to_send_joins_small_output_into_one_write() -> None:
    writer = FrameWriter(mask=False)
    writer.send_frame(TEXT, b"Hello")
    writer.send_frame(PING, b"p")
    writer.send_close(1000)
    assert writer.chunks_to_send() == [bytes.fromhex("810548656c6c6f 890170 880203e8")]
    assert writer.bytes_sent == 14
    assert writer.chunks_to_send() == []
    assert writer.bytes_sent == 14


def test_chunks_to_send_passes_large_payloads_without_a_copy() -> None:
    writer = FrameWriter(mask=False)
    payload = bytes(JOIN_LIMIT)
    writer.send_frame(BINARY, payload)
    out = writer.chunks_to_send()
    assert out[0] == serialize_header(BINARY, True, 0, JOIN_LIMIT)
    assert out[1] is payload
    assert len(out) == 2
    assert writer.bytes_sent == len(out[0]) + JOIN_LIMIT


def test_chunks_to_send_joins_up_to_the_limit_exactly() -> None:
    writer = FrameWriter(mask=False)
    header = serialize_header(BINARY, True, 0, JOIN_LIMIT - 4)
    writer.send_frame(BINARY, bytes(JOIN_LIMIT - len(header)))
    (one,) = writer.chunks_to_send()
    assert len(one) == JOIN_LIMIT
    writer.send_frame(BINARY, bytes(JOIN_LIMIT - len(header) + 1))
    assert [len(piece) for piece in writer.chunks_to_send()] == [4, JOIN_LIMIT - 3]


def test_chunks_to_send_leaves_a_single_piece_alone() -> None:
    writer = FrameWriter(mask=True)
    writer.start_frame(BINARY, True, 0, 3)
    (header,) = writer.chunks_to_send()
    assert header[:2] == bytes([FIN | BINARY, MASK | 3])
    assert len(header) == 6
    writer.send_payload(b"abc")
    (body,) = writer.chunks_to_send()
    assert apply_mask(body, header[2:6]) == b"abc"
    assert writer.bytes_sent == 9


def test_chunks_to_send_and_data_to_send_agree() -> None:
    sent = [Wire(TEXT, b"x" * 10), Wire(BINARY, bytes(100_000)), Wire(PING, b"")]
    one, two = FrameWriter(mask=False), FrameWriter(mask=False)
    for frame in sent:
        one.send_frame(frame.opcode, frame.payload)
        two.send_frame(frame.opcode, frame.payload)
    data = two.data_to_send()
    assert b"".join(one.chunks_to_send()) == data
    assert one.bytes_sent == two.bytes_sent == len(data)
    assert parse(data, masked=False) == sent


# --- READ_BUDGET: one call passes on a bounded batch ------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"tiny", bytes(300)])
def test_a_read_of_many_small_frames_comes_out_in_bounded_batches(payload: bytes) -> None:
    """Thousands of small frames (empty ones and pings too) in one read: each call passes on
    events holding at most READ_BUDGET (contents and EVENT_COST each), keeps the rest with
    ``pending`` set, and the batches together are the events of the whole read, in order."""
    frames = [Wire(Opcode.BINARY, payload), Wire(Opcode.PING, b"p")] * 6000
    data = server_bytes(*frames)
    reader = FrameReader(masked=False, max_frame_size=MIB, max_message_size=MIB)
    batches = [reader.receive_data(data)]
    while reader.pending:
        batches.append(reader.receive_data(b""))
    assert len(batches) > 2
    for batch in batches:
        held = sum((len(e.content) if isinstance(e, DataChunk) else 0) + EVENT_COST for e in batch)
        assert held < READ_BUDGET + EVENT_COST + len(payload)
    events = [e for batch in batches for e in batch]
    assert len(events) == len(frames)
    assert [e.opcode for e in events] == [f.opcode for f in frames]
    assert reader.bytes_received == len(data) and not reader.in_message


def test_held_bytes_are_parsed_before_what_comes_next() -> None:
    reader = FrameReader(masked=False, max_frame_size=MIB, max_message_size=MIB)
    reader.hold(server_bytes(Wire(Opcode.TEXT, b"first"), Wire(Opcode.TEXT, b"sec", fin=False)))
    assert reader.pending and reader.bytes_received == 7 + 5
    events = reader.receive_data(server_bytes(Wire(Opcode.CONTINUATION, b"ond")))
    assert [e.content for e in events if isinstance(e, DataChunk)] == [b"first", b"sec", b"ond"]
    assert not reader.pending
    reader.hold(b"")  # nothing kept: nothing pending
    assert not reader.pending
