"""Protocol Buffers wire format without a schema: field numbers, wire types and values, as
``protoc --decode_raw`` would show them.

The encoding (protobuf.dev/programming-guides/encoding) is a sequence of records, each a tag
(``field_number << 3 | wire_type``, a varint) and a value: VARINT (0), I64 (1, little-endian),
LEN (2, a varint length and that many bytes), SGROUP/EGROUP (3/4, deprecated groups) and I32
(5). Without the schema a LEN's bytes are read as text when they are printable UTF-8, else as a
nested message when they parse as a plausible one, else kept as bytes.

Groups: proto2's groups are deprecated and next to never sent, while random bytes hold wire
types 3 and 4 as often as any other. So a decoder (protobuf chosen for the connection) reads
them, but sniffing never takes a payload that has one.

Sniffing (no standard subprotocol names protobuf; ``protobuf`` and ``proto`` are taken) asks
more than a parse, since many short byte strings parse as something (``08 05`` is field 1 =
5, and any five bytes starting ``0d`` are a 32-bit field): every byte used, no group, field
numbers at most ``MAX_SNIFF_FIELD`` and in ascending order within each message (as every
official encoder writes known fields), one wire type per field number, and at least
``MIN_SNIFF_RECORDS`` records, nested ones counted. A one-field message is then left to a
subprotocol; random binary is taken for protobuf well under once in a hundred times.

Round trip: varints must be in their shortest form (encoders write no other; a longer one is
"not protobuf"), so encode gives back the bytes decoded, byte for byte.
"""

from __future__ import annotations

import struct
from typing import Any

from wsproxy.decoders.base import Decoded, Decoder, DecoderFactory, Hints
from wsproxy.decoders.preview import WIDTH, clip, render, size

__all__ = ["ProtobufDecoder", "ProtobufFactory"]

VARINT, I64, LEN, SGROUP, EGROUP, I32 = range(6)
WIRE_NAMES = {VARINT: "varint", I64: "i64", LEN: "len", SGROUP: "group", I32: "i32"}
WIRE_TYPES = {name: wire for wire, name in WIRE_NAMES.items()}
MAX_FIELD = (1 << 29) - 1
RESERVED = range(19000, 20000)  # field numbers the implementation keeps for itself
MAX_DEPTH = 32  # nested messages tried; deeper LEN values stay bytes (bounded recursion)
MAX_SNIFF_FIELD = 1 << 15  # real schemas number their fields in the hundreds, not millions
MIN_SNIFF_RECORDS = 2

Field = dict[str, Any]  # {"field": 1, "wire": "varint", "value": 150} (and "as" for a LEN)


class Malformed(Exception):
    """Inside this module only: not the protobuf wire format."""


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A varint at ``pos`` (at most 10 bytes, 64 bits, shortest form): (value, next)."""
    value = 0
    for i in range(10):
        if pos + i >= end:
            raise Malformed("a varint cut short")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if (i and not byte) or value >> 64:
                raise Malformed("a varint longer than needed, or over 64 bits")
            return value, pos + i + 1
    raise Malformed("a varint of more than 10 bytes")


def parse(
    data: bytes, pos: int, end: int, depth: int = 0, group: int | None = None
) -> tuple[list[Field], int]:
    """The fields from ``pos`` to ``end`` (or to the EGROUP of ``group``): (fields, next)."""
    fields: list[Field] = []
    while pos < end:
        tag, pos = read_varint(data, pos, end)
        number, wire = tag >> 3, tag & 7
        if not 0 < number <= MAX_FIELD or number in RESERVED:
            raise Malformed(f"field number {number}")
        if wire == EGROUP:
            if number != group:
                raise Malformed("an end of group that was never started")
            return fields, pos
        if wire == VARINT:
            value, pos = read_varint(data, pos, end)
            fields.append({"field": number, "wire": "varint", "value": value})
        elif wire in (I64, I32):
            width = 8 if wire == I64 else 4
            if pos + width > end:
                raise Malformed("a fixed-width value cut short")
            value = int.from_bytes(data[pos : pos + width], "little")
            fields.append({"field": number, "wire": WIRE_NAMES[wire], "value": value})
            pos += width
        elif wire == LEN:
            length, pos = read_varint(data, pos, end)
            if pos + length > end:
                raise Malformed("a length-delimited value cut short")
            field = {"field": number, "wire": "len", **_len_value(data[pos : pos + length], depth)}
            fields.append(field)
            pos += length
        elif wire == SGROUP:
            if depth >= MAX_DEPTH:
                raise Malformed("groups nested too deep")
            inner, pos = parse(data, pos, end, depth + 1, number)
            fields.append({"field": number, "wire": "group", "value": inner})
        else:
            raise Malformed(f"wire type {wire}")
    if group is not None:
        raise Malformed("a group without its end")
    return fields, pos


def _len_value(chunk: bytes, depth: int) -> dict[str, Any]:
    """A LEN value as text, a nested message or bytes (in that order of belief)."""
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\t\n\r" for c in text):
        return {"as": "string", "value": text}
    if depth < MAX_DEPTH:
        try:
            inner, _ = parse(chunk, 0, len(chunk), depth + 1)
        except Malformed:
            inner = []
        if inner and plausible(inner):
            return {"as": "message", "value": inner}
    return {"as": "bytes", "value": chunk}


def plausible(fields: list[Field]) -> bool:
    """Whether parsed fields look written by an encoder (see the module's docstring)."""
    last = 0
    wires: dict[int, str] = {}
    for f in fields:
        number = f["field"]
        if number < last or number > MAX_SNIFF_FIELD or f["wire"] == "group":
            return False
        if wires.setdefault(number, f["wire"]) != f["wire"]:
            return False
        last = number
    return bool(fields)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # a negative int32/int64 is written as its 64-bit two's complement
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def serialize(fields: list[Field]) -> bytes:
    """The wire bytes of ``fields`` (as ``parse`` gives them, edited or not)."""
    out = bytearray()
    for f in fields:
        number, wire, value = int(f["field"]), WIRE_TYPES[f["wire"]], f["value"]
        out += _varint(number << 3 | wire)
        if wire == VARINT:
            out += _varint(value)
        elif wire == I64:
            out += struct.pack("<Q", value & ((1 << 64) - 1))
        elif wire == I32:
            out += struct.pack("<I", value & ((1 << 32) - 1))
        elif wire == SGROUP:
            out += serialize(value) + _varint(number << 3 | EGROUP)
        else:
            chunk = (
                serialize(value)
                if f.get("as") == "message"
                else value.encode("utf-8")
                if isinstance(value, str)
                else bytes(value)
            )
            out += _varint(len(chunk)) + chunk
    return bytes(out)


def describe(fields: list[Field], width: int = WIDTH) -> str:
    """``1=150 2="hi" 3={1=1}``: field numbers and values, cut at ``width``."""
    parts: list[str] = []
    for f in fields:
        if sum(map(len, parts)) > width:
            parts.append("…")
            break
        value = f["value"]
        if f["wire"] == "group" or f.get("as") == "message":
            shown = "{" + describe(value, width // 2) + "}"
        elif isinstance(value, int):
            shown = str(value)
        else:
            shown = render(value, width // 2)
        parts.append(f"{f['field']}={shown}")
    return clip(" ".join(parts), width)


class ProtobufDecoder:
    """Protobuf over WebSocket holds no state across messages: each is a whole message."""

    protocol = "protobuf"

    def decode(self, payload: bytes, *, text: bool, from_client: bool) -> Decoded | None:
        try:
            fields, _ = parse(payload, 0, len(payload))
        except Malformed:
            return None
        return Decoded(
            "protobuf",
            "message",
            value=fields,
            summary=f"protobuf {describe(fields)} ({size(len(payload))})",
        )

    def encode(self, decoded: Decoded) -> bytes | None:
        try:
            return serialize(decoded.value)
        except (KeyError, TypeError, ValueError, AttributeError, struct.error, RecursionError):
            return None  # an edit this format cannot write


class ProtobufFactory:
    """Protobuf: chosen by a ``protobuf`` subprotocol, or sniffed conservatively (binary,
    whole, plausible)."""

    protocol = "protobuf"

    def claims(self, hints: Hints) -> bool:
        return (hints.subprotocol or "").lower() in ("protobuf", "proto", "application/x-protobuf")

    def sniff(self, payload: bytes, *, text: bool) -> bool:
        if text or len(payload) < 2:
            return False
        try:
            fields, _ = parse(payload, 0, len(payload))
        except Malformed:
            return False
        # Nested messages were held to ``plausible`` as they were read.
        return plausible(fields) and _records(fields) >= MIN_SNIFF_RECORDS

    def new(self, hints: Hints) -> Decoder:
        return ProtobufDecoder()


def _records(fields: list[Field]) -> int:
    return sum(1 + (_records(f["value"]) if f.get("as") == "message" else 0) for f in fields)


_check_factory: DecoderFactory = ProtobufFactory()
