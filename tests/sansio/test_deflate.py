"""permessage-deflate: RFC 7692 vectors, negotiation, the codecs, bombs and interop."""

from __future__ import annotations

import os
import random
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from wsproxy.exceptions import HandshakeError, ProtocolError
from wsproxy.sansio.deflate import (
    MAX_BFINAL_PER_MESSAGE,
    DeflateParams,
    Deflater,
    Inflater,
    negotiate,
    only_permessage_deflate,
    strip_permessage_deflate,
    validate_offer,
)

MIB = 1 << 20
DEFAULT = DeflateParams()
NO_TAKEOVER = DeflateParams(server_no_context_takeover=True, client_no_context_takeover=True)


def inflate_all(inflater: Inflater, payload: bytes, sizes: list[int] | None = None) -> bytes:
    """Feed one message in pieces of the given sizes (the rest in one piece), then end it."""
    out, pos = [], 0
    for size in sizes or []:
        out.append(inflater.feed(payload[pos : pos + size]))
        pos += size
    out.append(inflater.feed(payload[pos:]))
    out.append(inflater.end_message())
    return b"".join(out)


def sender(bits: int = 15) -> zlib._Compress:
    return zlib.compressobj(wbits=-bits)


def sender_message(encoder: zlib._Compress, data: bytes) -> bytes:
    """What a peer following RFC 7692 section 7.2.1 puts in a message's payload."""
    out = encoder.compress(data) + encoder.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


# --- RFC 7692 section 7.2.3 --------------------------------------------------------------

HELLO = bytes.fromhex("f248cdc9c90700")


def test_rfc_7_2_3_1_hello_unfragmented_and_fragmented() -> None:
    assert Inflater(DEFAULT, False, MIB).decompress(HELLO) == b"Hello"
    # The fragmented frames 0x41 0x03 f2 48 cd / 0x80 0x04 c9 c9 07 00.
    inflater = Inflater(DEFAULT, False, MIB)
    assert inflater.feed(HELLO[:3]) + inflater.feed(HELLO[3:]) + inflater.end_message() == b"Hello"


def test_rfc_7_2_3_2_sharing_the_window() -> None:
    inflater = Inflater(DEFAULT, True, MIB)
    assert inflater.decompress(HELLO) == b"Hello"
    assert inflater.decompress(bytes.fromhex("f200110000")) == b"Hello"
    deflater = Deflater(DEFAULT, True)
    assert deflater.compress(b"Hello") == HELLO
    assert deflater.compress(b"Hello") == bytes.fromhex("f200110000")


def test_rfc_7_2_3_2_no_context_takeover() -> None:
    deflater = Deflater(NO_TAKEOVER, True)
    assert deflater.compress(b"Hello") == HELLO
    assert deflater.compress(b"Hello") == HELLO
    inflater = Inflater(NO_TAKEOVER, True, MIB)
    assert inflater.decompress(HELLO) == b"Hello"
    with pytest.raises(ProtocolError) as info:  # refers back to a window that is gone
        inflater.decompress(bytes.fromhex("f200110000"))
    assert info.value.code == 1007


def test_only_the_senders_side_matters() -> None:
    params = DeflateParams(client_no_context_takeover=True)
    from_server = Deflater(params, False)
    assert from_server.compress(b"Hello") == HELLO
    assert from_server.compress(b"Hello") == bytes.fromhex("f200110000")
    from_client = Deflater(params, True)
    assert from_client.compress(b"Hello") == from_client.compress(b"Hello") == HELLO


def test_rfc_7_2_3_3_stored_block() -> None:
    payload = bytes.fromhex("000500faff48656c6c6f00")
    assert Inflater(DEFAULT, False, MIB).decompress(payload) == b"Hello"


def test_rfc_7_2_3_4_bfinal_block_and_the_window_after_it() -> None:
    inflater = Inflater(DEFAULT, False, MIB)
    assert inflater.decompress(bytes.fromhex("f348cdc9c9070000")) == b"Hello"
    # zlib ends its stream at BFINAL; the next message still shares the LZ77 window.
    assert inflater.decompress(bytes.fromhex("f200110000")) == b"Hello"
    assert inflater.decompress(HELLO) == b"Hello"


def test_bfinal_empty_first_message() -> None:
    inflater = Inflater(DEFAULT, False, MIB)
    assert inflater.decompress(bytes.fromhex("030000")) == b""  # fixed block, BFINAL, no data
    assert inflater.decompress(HELLO) == b"Hello"


def test_bfinal_blocks_per_message_are_capped() -> None:
    empty_final = bytes.fromhex("0300")  # a fixed block with BFINAL and no data
    inflater = Inflater(DEFAULT, False, MIB)
    ok = empty_final * MAX_BFINAL_PER_MESSAGE + b"\x00"
    assert inflater.decompress(ok) == b""
    assert inflater.decompress(ok) == b""  # the count is per message
    with pytest.raises(ProtocolError) as info:
        inflater.feed(empty_final * MAX_BFINAL_PER_MESSAGE)
        inflater.feed(empty_final)
    assert info.value.code == 1009


def test_bfinal_mid_message_then_back_references() -> None:
    first = os.urandom(1000)
    head = zlib.compressobj(wbits=-15)
    part1 = head.compress(first) + head.flush(zlib.Z_FINISH) + b"\x00"  # BFINAL, then 0x00
    # The rest of the message and the next one continue with the shared window.
    tail = zlib.compressobj(wbits=-15, zdict=first)
    part2 = sender_message(tail, first)
    assert len(part2) < 100  # proves that part2 is all back-references
    inflater = Inflater(DEFAULT, False, MIB)
    assert inflater.feed(part1) == first
    assert inflater.end_message() == b""
    assert inflater.decompress(part2) == first
    # The same bytes inside one message, fed a byte at a time.
    inflater = Inflater(DEFAULT, False, MIB)
    one_by_one = b"".join(inflater.feed(part1[i : i + 1]) for i in range(len(part1)))
    assert one_by_one + inflater.end_message() == first


def test_rfc_7_2_3_5_two_blocks() -> None:
    payload = bytes.fromhex("f24805000000ffffcac9c90700")
    assert Inflater(DEFAULT, False, MIB).decompress(payload) == b"Hello"


def test_rfc_7_2_3_6_empty_message_and_empty_last_fragment() -> None:
    assert Deflater(DEFAULT, True).compress(b"") == b"\x00"
    inflater = Inflater(DEFAULT, True, MIB)
    assert inflater.decompress(b"\x00") == b""
    # "Hello" sync-flushed in a first fragment, then an empty block as the last one.
    flushed = zlib.compressobj(wbits=-15)
    first = flushed.compress(b"Hello") + flushed.flush(zlib.Z_SYNC_FLUSH)
    assert inflate_all(inflater, first + b"\x00", [len(first)]) == b"Hello"
    # An empty message between two others does not disturb the shared window.
    deflater = Deflater(DEFAULT, True)
    payloads = [deflater.compress(m) for m in (b"Hello", b"", b"", b"Hello")]
    assert payloads[1:3] == [b"\x00", b"\x00"]
    receiver = Inflater(DEFAULT, True, MIB)
    assert [receiver.decompress(p) for p in payloads] == [b"Hello", b"", b"", b"Hello"]


def test_an_entirely_empty_payload_is_an_empty_message() -> None:
    inflater = Inflater(DEFAULT, True, MIB)
    assert inflater.decompress(b"") == b""
    assert inflater.feed(b"") == b""
    assert inflater.end_message() == b""
    assert inflater.decompress(HELLO) == b"Hello"  # the stream is still in step


# --- DeflateParams -----------------------------------------------------------------------


def test_params_defaults_and_header() -> None:
    assert DEFAULT.response_header() == "permessage-deflate"
    params = DeflateParams(True, True, 10, 8)
    assert params.response_header() == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=10; client_max_window_bits=8"
    )
    assert params.no_context_takeover(True) and params.no_context_takeover(False)
    assert (params.max_window_bits(True), params.max_window_bits(False)) == (8, 10)


@pytest.mark.parametrize("bits", [7, 16, 0])
def test_params_reject_window_bits(bits: int) -> None:
    with pytest.raises(ValueError):
        DeflateParams(server_max_window_bits=bits)
    with pytest.raises(ValueError):
        DeflateParams(client_max_window_bits=bits)


# --- negotiation -------------------------------------------------------------------------

FULL_OFFER = "permessage-deflate; client_max_window_bits"


@pytest.mark.parametrize(
    ("offer", "answer", "expected"),
    [
        (FULL_OFFER, "permessage-deflate", DEFAULT),
        (FULL_OFFER, "permessage-deflate; server_no_context_takeover", DeflateParams(True)),
        (FULL_OFFER, "permessage-deflate; client_no_context_takeover", DeflateParams(False, True)),
        (
            FULL_OFFER,
            "permessage-deflate; server_max_window_bits=8; client_max_window_bits=9",
            DeflateParams(server_max_window_bits=8, client_max_window_bits=9),
        ),
        (
            FULL_OFFER,
            'permessage-deflate; server_max_window_bits="12"',
            DeflateParams(False, False, 12),
        ),
        (
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10",
            DeflateParams(server_max_window_bits=10),
        ),
        (
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=9",
            DeflateParams(server_max_window_bits=9),
        ),
        (
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            NO_TAKEOVER,
        ),
        # The server may limit the client's window below, or even above, the offered value.
        (
            "permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; client_max_window_bits=9",
            DeflateParams(client_max_window_bits=9),
        ),
        (
            "permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; client_max_window_bits=12",
            DeflateParams(client_max_window_bits=12),
        ),
        # Several alternatives: the answer need only fit one of them.
        (
            "permessage-deflate; server_max_window_bits=10, permessage-deflate",
            "permessage-deflate; server_max_window_bits=12",
            DeflateParams(server_max_window_bits=12),
        ),
        (
            "permessage-deflate; server_no_context_takeover, "
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=11",
            DeflateParams(client_max_window_bits=11),
        ),
        # Names compare without case; other offered extensions may be accepted too.
        ("PerMessage-Deflate, x-foo", "x-foo, permessage-deflate", DEFAULT),
        ("permessage-deflate, x-foo; a=1", "x-foo", None),
        (FULL_OFFER, "", None),
        ("", "", None),
    ],
)
def test_negotiate_accepts(offer: str, answer: str, expected: DeflateParams | None) -> None:
    assert negotiate([offer], [answer] if answer else []) == expected


def test_negotiate_accepts_split_header_values() -> None:
    offer = ["x-foo", "permessage-deflate; client_max_window_bits"]
    answer = ["x-foo", "permessage-deflate; client_max_window_bits=10"]
    assert negotiate(offer, answer) == DeflateParams(client_max_window_bits=10)


def test_negotiated_header_negotiates_the_same() -> None:
    params = DeflateParams(True, True, 9, 8)
    assert negotiate([FULL_OFFER], [params.response_header()]) == params


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        ("permessage-deflate", "x-foo"),  # an extension never offered
        ("x-foo", "permessage-deflate"),
        ("", "permessage-deflate"),
        (FULL_OFFER, "permessage-deflate, permessage-deflate"),  # more than once
        (FULL_OFFER, "permessage-deflate; server_no_context_takeover; server_no_context_takeover"),
        (FULL_OFFER, "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9"),
        (FULL_OFFER, "permessage-deflate; x_unknown"),
        (FULL_OFFER, "permessage-deflate; server_no_context_takeover=1"),
        (FULL_OFFER, "permessage-deflate; client_no_context_takeover=true"),
        (FULL_OFFER, "permessage-deflate; server_max_window_bits"),  # value required
        (FULL_OFFER, "permessage-deflate; client_max_window_bits"),  # value required in answer
        (FULL_OFFER, "permessage-deflate; server_max_window_bits=7"),
        (FULL_OFFER, "permessage-deflate; server_max_window_bits=16"),
        (FULL_OFFER, "permessage-deflate; server_max_window_bits=010"),
        (FULL_OFFER, "permessage-deflate; server_max_window_bits=abc"),
        (FULL_OFFER, "permessage-deflate; client_max_window_bits=8.5"),
        ("permessage-deflate", "permessage-deflate; client_max_window_bits=10"),  # not offered
        ("permessage-deflate; server_no_context_takeover", "permessage-deflate"),
        ("permessage-deflate; server_max_window_bits=10", "permessage-deflate"),
        (
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=11",
        ),
        (
            "permessage-deflate; server_max_window_bits=10, "
            "permessage-deflate; server_max_window_bits=9; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits=11; server_no_context_takeover",
        ),
        (FULL_OFFER, "permessage-deflate; =bad"),  # not the header grammar
    ],
)
def test_negotiate_rejects(offer: str, answer: str) -> None:
    with pytest.raises(HandshakeError) as info:
        negotiate([offer] if offer else [], [answer])
    assert info.value.status == 502


# --- offers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; client_max_window_bits=8; server_max_window_bits=15",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        'permessage-deflate; server_max_window_bits="10", permessage-deflate',
        "x-unknown; whatever=1; whatever=2, permessage-deflate",
        "",
    ],
)
def test_validate_offer_accepts(offer: str) -> None:
    validate_offer([offer])


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits",  # value required in an offer too
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=08",
        "permessage-deflate; client_max_window_bits; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=yes",
        "permessage-deflate; foo",
        "permessage-deflate, permessage-deflate; foo=1",  # any alternative
        "permessage-deflate;;",  # not the grammar
    ],
)
def test_validate_offer_rejects(offer: str) -> None:
    with pytest.raises(HandshakeError) as info:
        validate_offer([offer])
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["permessage-deflate; client_max_window_bits"], []),
        (["permessage-deflate, permessage-deflate; server_no_context_takeover"], []),
        (["x-foo; a=1, permessage-deflate", "PerMessage-Deflate, x-bar"], ["x-foo; a=1, x-bar"]),
        (['x-foo; a="b c"; d="e\\"f"; g'], ['x-foo; a="b c"; d="e\\"f"; g']),
        ([], []),
    ],
)
def test_strip(values: list[str], expected: list[str]) -> None:
    assert strip_permessage_deflate(values) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["x-foo; a=1, permessage-deflate", "x-bar"], ["permessage-deflate"]),
        # Tokens compare case-insensitively: an offer spelled this way is kept, as spelled.
        (
            ["PerMessage-Deflate; Client_Max_Window_Bits"],
            ["PerMessage-Deflate; Client_Max_Window_Bits"],
        ),
        (
            ["permessage-deflate; server_max_window_bits=10, x-foo, PERMESSAGE-DEFLATE"],
            ["permessage-deflate; server_max_window_bits=10, PERMESSAGE-DEFLATE"],
        ),
        (["x-foo"], []),
        ([], []),
    ],
)
def test_only_permessage_deflate(values: list[str], expected: list[str]) -> None:
    assert only_permessage_deflate(values) == expected


def test_strip_rejects_malformed() -> None:
    with pytest.raises(HandshakeError) as info:
        strip_permessage_deflate(["permessage-deflate; a b"])
    assert info.value.status == 400


# --- Inflater ----------------------------------------------------------------------------

TEXT = b"".join(
    b"message %d: the quick brown fox jumps over the lazy dog\n" % i for i in range(400)
)


def test_feed_byte_at_a_time_equals_whole() -> None:
    payload = sender_message(sender(), TEXT)
    inflater = Inflater(DEFAULT, True, MIB)
    pieces = [inflater.feed(payload[i : i + 1]) for i in range(len(payload))]
    assert b"".join(pieces) + inflater.end_message() == TEXT
    assert sum(1 for piece in pieces if piece) > 10  # output streams, it is not held back


def test_feed_across_fragments_and_messages_with_takeover() -> None:
    encoder = sender()
    inflater = Inflater(DEFAULT, False, MIB)
    rng = random.Random(7)
    for i in range(20):
        message = TEXT[i * 100 :] + os.urandom(rng.randrange(100))
        payload = sender_message(encoder, message)
        cuts = [rng.randrange(1, 50) for _ in range(rng.randrange(5))]
        assert inflate_all(inflater, payload, cuts) == message


@pytest.mark.parametrize("takeover", [True, False])
def test_context_takeover_follows_the_sender(takeover: bool) -> None:
    params = DEFAULT if takeover else NO_TAKEOVER
    messages = [TEXT[:3000], TEXT[:3000], TEXT[1000:5000]]
    encoder = sender()
    payloads = []
    for message in messages:
        if not takeover:
            encoder = sender()
        payloads.append(sender_message(encoder, message))
    if takeover:
        assert len(payloads[1]) < 60  # the second message is back-references only
    inflater = Inflater(params, True, MIB)
    assert [inflater.decompress(p) for p in payloads] == messages


@pytest.mark.parametrize("bits", range(9, 16))
def test_window_bits_of_the_sender(bits: int) -> None:
    params = DeflateParams(server_max_window_bits=bits, client_max_window_bits=bits)
    encoder = sender(bits)
    inflater = Inflater(params, False, MIB)
    for _ in range(3):
        message = os.urandom(300) * 20 + TEXT
        assert inflater.decompress(sender_message(encoder, message)) == message


def bomb(inflated: int) -> bytes:
    """A fixed-Huffman DEFLATE stream of about ``inflated`` zero bytes, built without them.

    A literal 0, then codes "length 258, distance 1" (8 + 5 bits each). Eight codes make 13
    bytes; one code after the 3 header bits and the literal lands on a byte boundary.
    """
    bits = 0b011  # BFINAL=0, BTYPE=01 (fixed), read from the least significant bit
    nbits = 3

    def put_code(code: int, length: int) -> None:  # Huffman codes go most significant first
        nonlocal bits, nbits
        for i in reversed(range(length)):
            bits |= ((code >> i) & 1) << nbits
            nbits += 1

    put_code(0b00110000, 8)  # literal 0
    for _ in range(9):  # one to reach the boundary, eight for the repeating pattern
        put_code(0b11000101, 8)  # length 258 (symbol 285)
        put_code(0b00000, 5)  # distance 1
    raw = bits.to_bytes((nbits + 7) // 8, "little")
    assert nbits == 24 + 104
    prefix, pattern = raw[:3], raw[3:]
    return prefix + pattern * (inflated // (258 * 8))


def test_bomb_construction() -> None:
    payload = bomb(4 * MIB)
    out = zlib.decompressobj(wbits=-15).decompress(payload)
    assert out == bytes(len(out)) and len(out) == 1 + 258 * (1 + 8 * (4 * MIB // 2064))


@pytest.mark.parametrize("chunk", [None, 64 * 1024, 1024])
def test_bomb_fails_fast_with_bounded_memory(chunk: int | None) -> None:
    payload = bomb(1 << 30)  # 1 GiB of zeros in 6.5 MB
    inflater = Inflater(DEFAULT, True, MIB)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as info:
            if chunk is None:
                inflater.decompress(payload)
            else:
                for i in range(0, len(payload), chunk):
                    inflater.feed(payload[i : i + chunk])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == 1009
    # zlib stops one byte past the limit; CPython gathers that output in blocks and joins
    # them, so the peak is twice the limit, plus the copies of the input zlib keeps
    # (unconsumed_tail). Nowhere near the gigabyte the payload stands for.
    budget = 2 * MIB + 64 * 1024 + 2 * (len(payload) if chunk is None else chunk)
    assert peak < budget


def test_limit_is_exact_and_per_message() -> None:
    message = bytes(1000)
    payload = sender_message(sender(), message)
    inflater = Inflater(NO_TAKEOVER, True, 1000)
    assert inflater.decompress(payload) == message
    assert inflate_all(inflater, payload, [1, 2, 3]) == message  # the count starts again
    with pytest.raises(ProtocolError) as info:
        Inflater(NO_TAKEOVER, True, 999).decompress(payload)
    assert info.value.code == 1009


def test_limit_counts_across_fragments() -> None:
    payload = sender_message(sender(), os.urandom(3000))
    inflater = Inflater(DEFAULT, True, 2500)
    inflater.feed(payload[:1000])
    with pytest.raises(ProtocolError) as info:
        inflater.feed(payload[1000:])
        inflater.end_message()
    assert info.value.code == 1009


def test_no_limit() -> None:
    message = bytes(20 * MIB)
    payload = sender_message(sender(), message)
    assert Inflater(DEFAULT, True, None).decompress(payload) == message


def test_large_message_through_the_two_call_path() -> None:
    message = os.urandom(5000)
    inflater = Inflater(DEFAULT, True, MIB)
    assert inflater.decompress(sender_message(sender(), message)) == message


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xff\xff\xff",  # reserved block type 11
        bytes.fromhex("0005001234"),  # stored block whose NLEN is not ~LEN
        bytes.fromhex("f200110000"),  # back-reference before the start
    ],
)
def test_corrupt_data_is_1007(payload: bytes) -> None:
    inflater = Inflater(DEFAULT, False, MIB)
    with pytest.raises(ProtocolError) as info:
        inflater.feed(payload)
        inflater.end_message()
    assert info.value.code == 1007


def test_corrupt_data_after_bfinal_is_1007() -> None:
    with pytest.raises(ProtocolError) as info:
        Inflater(DEFAULT, False, MIB).decompress(bytes.fromhex("f348cdc9c90700ff"))
    assert info.value.code == 1007


def test_long_history_for_bfinal_restart() -> None:
    """The remembered window is the last 32 KiB, however the output arrived."""
    inflater = Inflater(DEFAULT, True, None)
    encoder = sender()
    history = b""
    for size in (70000, 100, 40000, 30000):
        message = os.urandom(size)
        history += message
        assert inflater.decompress(sender_message(encoder, message)) == message
    last = zlib.compressobj(wbits=-15)
    payload = last.compress(b"x") + last.flush(zlib.Z_FINISH) + b"\x00"
    assert inflater.decompress(payload) == b"x"
    history += b"x"
    following = zlib.compressobj(wbits=-15, zdict=history[-32768:])
    assert inflater.decompress(sender_message(following, history[-32768:])) == history[-32768:]


# --- Deflater ----------------------------------------------------------------------------


@pytest.mark.parametrize("bits", range(8, 16))
@pytest.mark.parametrize("takeover", [True, False])
def test_deflater_output_decodes_with_plain_zlib(bits: int, takeover: bool) -> None:
    params = DeflateParams(not takeover, not takeover, bits, bits)
    deflater = Deflater(params, from_client=False)
    decoder = zlib.decompressobj(wbits=-bits)
    rng = random.Random(bits)
    for _ in range(4):
        # Repeats at distances 251..600 tempt any matcher past a small window.
        block = rng.randbytes(rng.randrange(251, 600))
        message = block * 5 + TEXT[: rng.randrange(3000)] + bytes(500)
        payload = deflater.compress(message)
        if not takeover:
            decoder = zlib.decompressobj(wbits=-bits)
        # One byte of output per call: every back-reference is checked against the window.
        out, data = [], payload + b"\x00\x00\xff\xff"
        while data:
            out.append(decoder.decompress(data, 1))
            data = decoder.unconsumed_tail
        assert b"".join(out) == message


def test_small_window_check_catches_far_references() -> None:
    """The control for the test above: a 10-bit stream fails an 8-bit decoder that way."""
    encoder = sender(10)
    payload = sender_message(encoder, os.urandom(300) * 5) + b"\x00\x00\xff\xff"
    decoder = zlib.decompressobj(wbits=-8)
    with pytest.raises(zlib.error, match="too far back"):
        while payload:
            decoder.decompress(payload, 1)
            payload = decoder.unconsumed_tail


def ws_decoder(params: DeflateParams, from_client: bool) -> PerMessageDeflate:
    """websockets' own receiving end of messages sent by ``from_client``'s side."""
    return PerMessageDeflate(
        remote_no_context_takeover=params.no_context_takeover(from_client),
        local_no_context_takeover=params.no_context_takeover(not from_client),
        remote_max_window_bits=params.max_window_bits(from_client),
        local_max_window_bits=max(9, params.max_window_bits(not from_client)),
    )


@pytest.mark.parametrize(
    "params",
    [DEFAULT, NO_TAKEOVER, DeflateParams(False, True, 8, 9), DeflateParams(True, False, 12, 8)],
)
@pytest.mark.parametrize("from_client", [True, False])
def test_interop_with_websockets(params: DeflateParams, from_client: bool) -> None:
    deflater = Deflater(params, from_client)
    theirs = ws_decoder(params, from_client)
    for message in (b"Hello", b"", TEXT, b"Hello", os.urandom(2000) * 3):
        frame = Frame(Opcode.BINARY, deflater.compress(message), rsv1=True)
        assert theirs.decode(frame, max_size=MIB).data == message
    # And the other way: websockets compresses, we inflate.
    sender_side = PerMessageDeflate(
        remote_no_context_takeover=params.no_context_takeover(not from_client),
        local_no_context_takeover=params.no_context_takeover(from_client),
        remote_max_window_bits=params.max_window_bits(not from_client),
        local_max_window_bits=max(9, params.max_window_bits(from_client)),
    )
    inflater = Inflater(params, from_client, MIB)
    for message in (b"Hello", TEXT, b"Hello", b""):
        frame = sender_side.encode(Frame(Opcode.TEXT, message))
        assert inflater.decompress(bytes(frame.data)) == message


def test_switching_to_our_deflater_mid_stream() -> None:
    """Forward the sender's bytes, then recompress: the receiver's window stays consistent."""
    theirs = sender()
    receiver = ws_decoder(DEFAULT, True)
    for message in (TEXT, TEXT[:500]):
        frame = Frame(Opcode.TEXT, sender_message(theirs, message), rsv1=True)
        assert receiver.decode(frame).data == message
    ours = Deflater(DEFAULT, True)
    for message in (b"modified " + TEXT, TEXT, b"modified " + TEXT):
        frame = Frame(Opcode.TEXT, ours.compress(message), rsv1=True)
        assert receiver.decode(frame).data == message


def test_deflater_level() -> None:
    fast = Deflater(DEFAULT, True, level=1).compress(TEXT)
    none = Deflater(DEFAULT, True, level=0).compress(TEXT)
    assert len(fast) < len(none)
    assert Inflater(DEFAULT, True, MIB).decompress(none) == TEXT


@pytest.mark.parametrize("size", [0, 1, 100, 2047, 2048, 65536, MIB, 16 * MIB])
def test_round_trip_sizes(size: int) -> None:
    message = (TEXT * (size // len(TEXT) + 1))[:size]
    if size >= MIB:
        message = message[: size // 2] + os.urandom(size // 2)
    deflater = Deflater(DEFAULT, False)
    inflater = Inflater(DEFAULT, False, 16 * MIB)
    for _ in range(2):
        assert inflater.decompress(deflater.compress(message)) == message


# --- properties --------------------------------------------------------------------------

params_strategy = st.builds(
    DeflateParams,
    st.booleans(),
    st.booleans(),
    st.integers(8, 15),
    st.integers(8, 15),
)


@settings(max_examples=60, deadline=None)
@given(
    params=params_strategy,
    from_client=st.booleans(),
    messages=st.lists(st.binary(max_size=3000) | st.text(max_size=500).map(str.encode), max_size=6),
)
def test_round_trip_property(
    params: DeflateParams, from_client: bool, messages: list[bytes]
) -> None:
    deflater = Deflater(params, from_client)
    inflater = Inflater(params, from_client, MIB)
    for message in messages:
        assert inflater.decompress(deflater.compress(message)) == message


@settings(max_examples=60, deadline=None)
@given(
    messages=st.lists(st.binary(max_size=2000).map(lambda b: b * 3), min_size=1, max_size=4),
    data=st.data(),
)
def test_chunking_property(messages: list[bytes], data: st.DataObject) -> None:
    deflater = Deflater(DEFAULT, True)
    whole = Inflater(DEFAULT, True, MIB)
    chunked = Inflater(DEFAULT, True, MIB)
    for message in messages:
        payload = deflater.compress(message)
        cuts = data.draw(st.lists(st.integers(0, 40), max_size=len(payload) // 4 + 1))
        assert inflate_all(chunked, payload, cuts) == whole.decompress(payload) == message


# --- compress_piece: a recompressed message that goes out in several frames -------------------

PIECES = [TEXT[:700], b"", TEXT[700:1500], TEXT[1500:]]


def compress_pieces(deflater: Deflater, pieces: list[bytes]) -> list[bytes]:
    return [deflater.compress_piece(p, i == len(pieces) - 1) for i, p in enumerate(pieces)]


@pytest.mark.parametrize("params", [DEFAULT, NO_TAKEOVER, DeflateParams(False, False, 9, 9)])
def test_pieces_inflate_as_they_arrive(params: DeflateParams) -> None:
    deflater = Deflater(params, from_client=True)
    inflater = Inflater(params, True, MIB)
    for _ in range(3):  # three messages: the window carries on, or restarts, as negotiated
        payloads = compress_pieces(deflater, PIECES)
        # Every piece but the last ends with its sync flush; RFC 7692 7.2.1 strips the last's.
        assert all(p.endswith(b"\x00\x00\xff\xff") for p in payloads[:-1])
        assert not payloads[-1].endswith(b"\x00\x00\xff\xff")
        # Each frame's worth inflates whole, before the next frame arrives.
        for piece, payload in zip(PIECES[:-1], payloads[:-1], strict=True):
            assert inflater.feed(payload) == piece
        assert inflater.feed(payloads[-1]) + inflater.end_message() == PIECES[-1]


def test_pieces_fed_byte_by_byte_are_the_message() -> None:
    payload = b"".join(compress_pieces(Deflater(DEFAULT, False), PIECES))
    inflater = Inflater(DEFAULT, False, MIB)
    out = b"".join(inflater.feed(payload[i : i + 1]) for i in range(len(payload)))
    assert out + inflater.end_message() == TEXT


@pytest.mark.parametrize("params", [DEFAULT, NO_TAKEOVER])
@pytest.mark.parametrize("from_client", [True, False])
def test_pieces_interoperate_with_websockets(params: DeflateParams, from_client: bool) -> None:
    deflater = Deflater(params, from_client)
    theirs = ws_decoder(params, from_client)
    for _ in range(2):
        payloads = compress_pieces(deflater, PIECES)
        frames = [
            Frame(
                Opcode.TEXT if i == 0 else Opcode.CONT,
                payload,
                fin=i == len(payloads) - 1,
                rsv1=i == 0,
            )
            for i, payload in enumerate(payloads)
        ]
        assert b"".join(theirs.decode(frame, max_size=MIB).data for frame in frames) == TEXT


@pytest.mark.parametrize("takeover", [True, False])
def test_pieces_follow_context_takeover(takeover: bool) -> None:
    # The second message repeats the first: with takeover it refers back into the first
    # one's window, so a fresh decoder cannot read it; without, it stands alone.
    params = DEFAULT if takeover else NO_TAKEOVER
    deflater = Deflater(params, from_client=True)
    compress_pieces(deflater, PIECES)
    second = b"".join(compress_pieces(deflater, PIECES)) + b"\x00\x00\xff\xff"
    fresh = zlib.decompressobj(wbits=-15)
    if takeover:
        with pytest.raises(zlib.error, match="too far back"):
            fresh.decompress(second)
    else:
        assert fresh.decompress(second) == TEXT


def test_pieces_and_whole_messages_share_the_window() -> None:
    deflater = Deflater(DEFAULT, from_client=False)
    inflater = Inflater(DEFAULT, False, MIB)
    assert inflater.decompress(deflater.compress(TEXT)) == TEXT
    assert inflater.decompress(b"".join(compress_pieces(deflater, PIECES))) == TEXT
    assert inflater.decompress(deflater.compress(TEXT)) == TEXT


@pytest.mark.parametrize("pieces", [[b""], [b"", b""], [b"abc", b""]])
def test_empty_pieces_and_an_empty_last_piece(pieces: list[bytes]) -> None:
    # An empty last piece still ends the message with a payload a receiver can read
    # (RFC 7692 section 7.2.3.6: the 0x00 of an empty message).
    payloads = compress_pieces(Deflater(NO_TAKEOVER, True), pieces)
    assert payloads[-1] != b""
    assert Inflater(NO_TAKEOVER, True, MIB).decompress(b"".join(payloads)) == b"".join(pieces)
    fresh = zlib.decompressobj(wbits=-15)
    assert fresh.decompress(b"".join(payloads) + b"\x00\x00\xff\xff") == b"".join(pieces)
