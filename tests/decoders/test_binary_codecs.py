"""msgpack and CBOR through their libraries, the protobuf wire format by hand: fixtures the
real encoders wrote, whole-payload decoding, the plausibility rule against random bytes,
hypothesis round trips."""

from __future__ import annotations

import random
from typing import Any

import cbor2
import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproxy.decoders import protobuf
from wsproxy.decoders.base import Hints
from wsproxy.decoders.cbor import CborDecoder, CborFactory
from wsproxy.decoders.msgpack import MsgpackDecoder, MsgpackFactory
from wsproxy.decoders.protobuf import ProtobufDecoder, ProtobufFactory

SOCKETIO_EVENT = {"type": 2, "data": ["chat", {"text": "hi", "raw": b"\x00\x01"}], "nsp": "/"}
SIGNALR_INVOCATION = [1, {}, "42", "Send", ["hello", 3.5, None, True]]

json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                              max_size=5),
    max_leaves=20,
)  # fmt: skip


# -- msgpack ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [SOCKETIO_EVENT, SIGNALR_INVOCATION])
def test_msgpack_real_payloads(value: Any) -> None:
    payload = msgpack.packb(value)
    assert MsgpackFactory().sniff(payload, text=False)
    d = MsgpackDecoder().decode(payload, text=False, from_client=True)
    assert d is not None and d.value == value and d.protocol == "msgpack"
    assert MsgpackDecoder().encode(d) == payload


def test_msgpack_summary_keeps_bytes() -> None:
    d = MsgpackDecoder().decode(msgpack.packb(SOCKETIO_EVENT), text=False, from_client=True)
    assert d is not None and d.kind == "map"
    assert d.summary.startswith('msgpack {"type": 2, "data": ["chat", {"text": "hi", "raw": b"')
    assert d.summary.endswith(" B)")


def test_msgpack_claims_wamp_and_keeps_ext_types() -> None:
    factory = MsgpackFactory()
    assert factory.claims(Hints(subprotocol="wamp.2.msgpack"))
    assert not factory.claims(Hints(subprotocol="wamp.2.json"))
    payload = msgpack.packb([msgpack.ExtType(5, b"\x01"), "x"])
    assert not factory.sniff(payload, text=False)  # an unknown extension: not sniffed
    d = factory.new(Hints(subprotocol="wamp.2.msgpack")).decode(payload, text=False, from_client=1)
    assert d is not None and d.value == [msgpack.ExtType(5, b"\x01"), "x"]


@pytest.mark.parametrize(
    "payload",
    [b"\x05", b"\x91\x13", msgpack.packb("just text"), msgpack.packb([1, 2, 3]),
     msgpack.packb({"a": 1}) + b"\x00", msgpack.packb({"a": 1})[:-1], b'{"a": 1}', b""],
)  # fmt: skip
def test_msgpack_sniffs_nothing_implausible(payload: bytes) -> None:
    assert not MsgpackFactory().sniff(payload, text=False)


def test_msgpack_not_whole_is_none() -> None:
    assert MsgpackDecoder().decode(msgpack.packb(1) + b"\x01", text=False, from_client=1) is None
    assert MsgpackDecoder().decode(b"\xa2\xff\xfe", text=False, from_client=1) is None  # UTF-8


def test_msgpack_non_shortest_forms_come_back_shorter() -> None:
    payload = b"\x81\xa1a\xce\x00\x00\x00\x01"  # {"a": 1} with 1 as a uint32
    d = MsgpackDecoder().decode(payload, text=False, from_client=True)
    assert d is not None and d.value == {"a": 1}
    assert MsgpackDecoder().encode(d) == msgpack.packb({"a": 1})


@pytest.mark.parametrize("value", [{1, 2}, [object()], {"a": 2**64}])
def test_msgpack_an_edit_it_cannot_write_is_not_encoded(value: Any) -> None:
    d = MsgpackDecoder().decode(msgpack.packb(SIGNALR_INVOCATION), text=False, from_client=True)
    assert d is not None
    d.value = value  # a set, an object, an integer past 64 bits: no msgpack type holds them
    assert MsgpackDecoder().encode(d) is None


def test_msgpack_a_timestamp_is_plain_data_but_depth_is_bounded() -> None:
    stamped = msgpack.packb(["at", msgpack.Timestamp(1, 0)])
    assert MsgpackFactory().sniff(stamped, text=False)  # the one extension type sniffed

    def nested(levels: int) -> bytes:
        value: Any = "leaf"
        for _ in range(levels):
            value = [value]
        return bytes(msgpack.packb(value))

    assert MsgpackFactory().sniff(nested(10), text=False)
    payload = nested(100)
    assert not MsgpackFactory().sniff(payload, text=False)  # deeper than any message
    d = MsgpackDecoder().decode(payload, text=False, from_client=True)  # chosen: still read
    assert d is not None and d.kind == "array" and MsgpackDecoder().encode(d) == payload


def test_msgpack_a_scalar_is_decoded_when_chosen_but_never_sniffed() -> None:
    assert not MsgpackFactory().sniff(b"\xcd\x01\x00", text=False)
    d = MsgpackDecoder().decode(b"\xcd\x01\x00", text=False, from_client=True)  # uint16 256
    assert d is not None and (d.kind, d.value, d.summary) == ("int", 256, "msgpack 256 (3 B)")


@given(json_like)
def test_msgpack_round_trip(value: Any) -> None:
    payload = msgpack.packb(value, use_bin_type=True)
    d = MsgpackDecoder().decode(payload, text=False, from_client=True)
    assert d is not None and MsgpackDecoder().encode(d) == payload


# -- CBOR -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [SOCKETIO_EVENT, SIGNALR_INVOCATION])
def test_cbor_real_payloads(value: Any) -> None:
    payload = cbor2.dumps(value)
    assert CborFactory().sniff(payload, text=False)
    d = CborDecoder().decode(payload, text=False, from_client=True)
    assert d is not None and d.value == value and d.protocol == "cbor"
    assert CborDecoder().encode(d) == payload


def test_cbor_trailing_bytes_are_not_cbor() -> None:
    assert cbor2.loads(b"\x82\x01\x02\x00") == [1, 2]  # the library alone would say it is
    assert CborDecoder().decode(b"\x82\x01\x02\x00", text=False, from_client=True) is None


def test_cbor_rfc_8949_appendix_a_vectors() -> None:
    # RFC 8949 Appendix A: {"a": 1, "b": [2, 3]}, and an indefinite-length array.
    d = CborDecoder().decode(bytes.fromhex("a26161016162820203"), text=False, from_client=1)
    assert d is not None and d.value == {"a": 1, "b": [2, 3]}
    assert CborDecoder().encode(d) == bytes.fromhex("a26161016162820203")
    d = CborDecoder().decode(bytes.fromhex("9f018202039f0405ffff"), text=False, from_client=1)
    assert d is not None and d.value == [1, [2, 3], [4, 5]]
    assert CborDecoder().encode(d) == bytes.fromhex("8301820203820405")  # definite, shorter


def test_cbor_claims_and_tags() -> None:
    factory = CborFactory()
    assert factory.claims(Hints(subprotocol="wamp.2.cbor"))
    payload = cbor2.dumps([cbor2.CBORTag(4000, "x"), "y"])
    assert not factory.sniff(payload, text=False)
    d = factory.new(Hints(subprotocol="wamp.2.cbor")).decode(payload, text=False, from_client=1)
    assert d is not None and d.value[0] == cbor2.CBORTag(4000, "x")
    assert factory.new(Hints()).encode(d) == payload


@pytest.mark.parametrize("payload", [b"\x05", b"\x81\x01", b"\xf7", b"\x9f" * 1000, b""])
def test_cbor_sniffs_nothing_implausible(payload: bytes) -> None:
    assert not CborFactory().sniff(payload, text=False)


def test_cbor_huge_claimed_lengths_and_depths_cost_nothing() -> None:
    for payload in (
        b"\x9b\x00\x00\x00\xff\xff\xff\xff\xff",
        b"\x5a\xff\xff\xff\xff",
        b"\x81" * 10**5,
    ):
        assert CborDecoder().decode(payload, text=False, from_client=True) is None


def test_cbor_an_edit_it_cannot_write_is_not_encoded() -> None:
    d = CborDecoder().decode(cbor2.dumps(SIGNALR_INVOCATION), text=False, from_client=True)
    assert d is not None
    d.value = [object()]  # no CBOR type holds an arbitrary object
    assert CborDecoder().encode(d) is None


@given(json_like)
def test_cbor_round_trip(value: Any) -> None:
    payload = cbor2.dumps(value)
    d = CborDecoder().decode(payload, text=False, from_client=True)
    assert d is not None and CborDecoder().encode(d) == payload


# -- protobuf ---------------------------------------------------------------------------------

# The encoding guide's examples: field 1 = 150; field 2 = "testing"; field 3 = {1: 150}.
TEST1 = bytes.fromhex("089601")
TEST2 = bytes.fromhex("120774657374696e67")
TEST3 = bytes.fromhex("1a03089601")
PERSON = TEST1 + TEST2 + TEST3 + bytes.fromhex("2101000000000000002d02000000")


def test_protobuf_the_guide_examples() -> None:
    d = ProtobufDecoder().decode(PERSON, text=False, from_client=True)
    assert d is not None and (d.protocol, d.kind) == ("protobuf", "message")
    assert d.value == [
        {"field": 1, "wire": "varint", "value": 150},
        {"field": 2, "wire": "len", "as": "string", "value": "testing"},
        {"field": 3, "wire": "len", "as": "message",
         "value": [{"field": 1, "wire": "varint", "value": 150}]},
        {"field": 4, "wire": "i64", "value": 1},
        {"field": 5, "wire": "i32", "value": 2},
    ]  # fmt: skip
    assert d.summary == 'protobuf 1=150 2="testing" 3={1=150} 4=1 5=2 (31 B)'
    assert ProtobufDecoder().encode(d) == PERSON
    assert ProtobufFactory().sniff(PERSON, text=False)


def test_protobuf_groups_are_read_but_never_sniffed() -> None:
    grouped = bytes.fromhex("0b08010c") + TEST1  # field 1 group {1: 1}, then field 1 = 150
    d = ProtobufDecoder().decode(grouped, text=False, from_client=True)
    assert d is not None and d.value[0]["wire"] == "group"
    assert ProtobufDecoder().encode(d) == grouped
    assert not ProtobufFactory().sniff(grouped, text=False)


@pytest.mark.parametrize(
    "payload",
    [TEST1, TEST2 + TEST1, b"\x08\x80\x00", b"\x0c", b"\x0b\x08\x01", b"\x07\x01", b"\x00\x01",
     b"\x12\x05ab", b"\x08" + b"\xff" * 10 + b"\x01", b"\xc0\xa3\x09\x01" * 2, b"hello"],
)  # fmt: skip
def test_protobuf_sniffs_nothing_implausible(payload: bytes) -> None:
    # One field alone, fields out of order, a non-shortest varint, an unmatched end of group,
    # a group left open, wire type 7, field 0, a length past the end, an 11-byte varint, a
    # reserved field number (19000+), and text.
    assert not ProtobufFactory().sniff(payload, text=False)


def test_protobuf_bytes_that_are_no_message_stay_bytes() -> None:
    payload = TEST1 + b"\x12\x03\xff\xfe\x07"
    d = ProtobufDecoder().decode(payload, text=False, from_client=True)
    assert d is not None and d.value[1] == {"field": 2, "wire": "len", "as": "bytes",
                                             "value": b"\xff\xfe\x07"}  # fmt: skip
    assert ProtobufDecoder().encode(d) == payload


def test_protobuf_edits_and_bad_edits() -> None:
    d = ProtobufDecoder().decode(PERSON, text=False, from_client=True)
    assert d is not None
    d.value[1]["value"] = "edited"
    encoded = ProtobufDecoder().encode(d)
    assert encoded is not None and b"\x12\x06edited" in encoded
    d.value[0]["wire"] = "nonsense"
    assert ProtobufDecoder().encode(d) is None


def test_protobuf_one_wire_type_per_field_number_to_be_sniffed() -> None:
    payload = TEST1 + b"\x0a\x01x"  # field 1 as a varint, then as a LEN
    d = ProtobufDecoder().decode(payload, text=False, from_client=True)
    assert d is not None and [f["wire"] for f in d.value] == ["varint", "len"]
    assert not ProtobufFactory().sniff(payload, text=False)


def _nested(levels: int) -> bytes:
    """Field 1 = 1, wrapped ``levels`` times in a field 1 LEN."""
    message = b"\x08\x01"
    for _ in range(levels):
        message = b"\x0a" + bytes([len(message)]) + message
    return message


@pytest.mark.parametrize("levels", [protobuf.MAX_DEPTH, protobuf.MAX_DEPTH + 1])
def test_protobuf_nested_messages_are_read_to_a_depth_then_kept_as_bytes(levels: int) -> None:
    payload = _nested(levels)
    d = ProtobufDecoder().decode(payload, text=False, from_client=True)
    assert d is not None
    field, depth = d.value[0], 0
    while field.get("as") == "message":
        field, depth = field["value"][0], depth + 1
    assert depth == min(levels, protobuf.MAX_DEPTH)
    if levels > protobuf.MAX_DEPTH:  # the innermost message stays the bytes it was
        assert field == {"field": 1, "wire": "len", "as": "bytes", "value": b"\x08\x01"}
    else:
        assert field == {"field": 1, "wire": "varint", "value": 1}
    assert ProtobufDecoder().encode(d) == payload


def test_protobuf_groups_nested_past_the_depth_are_not_protobuf() -> None:
    # A group has no length to skip it by, so one nested too deep ends the whole parse.
    def grouped(levels: int) -> bytes:
        return b"\x0b" * levels + b"\x08\x01" + b"\x0c" * levels

    d = ProtobufDecoder().decode(grouped(protobuf.MAX_DEPTH), text=False, from_client=True)
    assert d is not None and ProtobufDecoder().encode(d) == grouped(protobuf.MAX_DEPTH)
    assert ProtobufDecoder().decode(grouped(protobuf.MAX_DEPTH + 1), text=False,
                                    from_client=True) is None  # fmt: skip


def test_protobuf_claims_its_subprotocols_and_cuts_a_long_summary() -> None:
    factory = ProtobufFactory()
    for name in ("protobuf", "Proto", "application/x-protobuf"):
        assert factory.claims(Hints(subprotocol=name))
        assert isinstance(factory.new(Hints(subprotocol=name)), ProtobufDecoder)
    assert not factory.claims(Hints(subprotocol="wamp.2.msgpack")) and not factory.claims(Hints())
    payload = b"".join(_varint(n << 3) + _varint(10**6 + n) for n in range(1, 40))
    d = ProtobufDecoder().decode(payload, text=False, from_client=True)
    assert d is not None and len(d.value) == 39
    body = d.summary.removeprefix("protobuf ").removesuffix(f" ({len(payload)} B)")
    assert body.startswith("1=1000001 2=1000002 ") and body.endswith("…")
    assert len(body) <= protobuf.WIDTH


fields_strategy = st.lists(
    st.tuples(st.integers(1, 18999), st.sampled_from(["varint", "i64", "i32", "bytes"]),
              st.integers(0, 2**32 - 1), st.binary(max_size=12)),
    max_size=8,
)  # fmt: skip


@given(fields_strategy)
def test_protobuf_round_trip(records: list[tuple[int, str, int, bytes]]) -> None:
    payload = bytearray()
    for number, wire, value, data in records:
        if wire == "varint":
            payload += _varint(number << 3) + _varint(value)
        elif wire == "i64":
            payload += _varint(number << 3 | 1) + value.to_bytes(8, "little")
        elif wire == "i32":
            payload += _varint(number << 3 | 5) + value.to_bytes(4, "little")
        else:
            payload += _varint(number << 3 | 2) + _varint(len(data)) + data
    d = ProtobufDecoder().decode(bytes(payload), text=False, from_client=True)
    assert d is not None and ProtobufDecoder().encode(d) == bytes(payload)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


# -- all three --------------------------------------------------------------------------------

FACTORIES = [MsgpackFactory(), CborFactory(), ProtobufFactory()]


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.protocol)
def test_random_binary_is_rarely_taken(factory: Any) -> None:
    rng = random.Random(14)
    taken = sum(
        factory.sniff(rng.randbytes(rng.randrange(2, 200)), text=False) for _ in range(10_000)
    )
    assert taken <= 40, f"{factory.protocol} took {taken} of 10 000 random payloads"


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.protocol)
@given(payload=st.binary(max_size=200), text=st.booleans())
def test_no_input_crashes(factory: Any, payload: bytes, text: bool) -> None:
    factory.sniff(payload, text=text)
    decoder = factory.new(Hints())
    d = decoder.decode(payload, text=text, from_client=True)
    if d is not None:
        decoder.encode(d)
