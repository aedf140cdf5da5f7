"""MQTT control packets on the wire (3.1, 3.1.1 and 5): reading one, checked as the
specifications require (reserved flags, shortest Variable Byte Integers, UTF-8 strings, the
properties each packet allows, no bytes left over), and writing one back byte for byte."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from wsproxy.decoders.base import Decoded
from wsproxy.decoders.preview import REDACTED, clip

SUBPROTOCOLS = frozenset({"mqtt", "mqttv3.1"})
TYPES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
    7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
    12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH",
}  # fmt: skip
CODES = {name: code for code, name in TYPES.items()}
# Fixed header flags that must be exactly these (3.1.1 section 2.2.2; PUBLISH's are its own).
REQUIRED_FLAGS = {"PUBREL": 2, "SUBSCRIBE": 2, "UNSUBSCRIBE": 2}
PROTOCOLS = {("MQTT", 4), ("MQTT", 5), ("MQIsdp", 3)}
MAX_REMAINING = 268_435_455  # four Variable Byte Integer bytes (3.1.1 section 2.2.3)
SECRET_KEY = "_mqtt_secrets"  # the Decoded attribute holding the redacted bytes

# MQTT 5.0 section 2.2.2.2: property identifier -> name and type.
BYTE, U16, U32, VARINT, STR, BIN, PAIR = "byte", "u16", "u32", "varint", "str", "bin", "pair"
PROPERTIES = {
    0x01: ("payload_format_indicator", BYTE), 0x02: ("message_expiry_interval", U32),
    0x03: ("content_type", STR), 0x08: ("response_topic", STR),
    0x09: ("correlation_data", BIN), 0x0B: ("subscription_identifier", VARINT),
    0x11: ("session_expiry_interval", U32), 0x12: ("assigned_client_identifier", STR),
    0x13: ("server_keep_alive", U16), 0x15: ("authentication_method", STR),
    0x16: ("authentication_data", BIN), 0x17: ("request_problem_information", BYTE),
    0x18: ("will_delay_interval", U32), 0x19: ("request_response_information", BYTE),
    0x1A: ("response_information", STR), 0x1C: ("server_reference", STR),
    0x1F: ("reason_string", STR), 0x21: ("receive_maximum", U16),
    0x22: ("topic_alias_maximum", U16), 0x23: ("topic_alias", U16),
    0x24: ("maximum_qos", BYTE), 0x25: ("retain_available", BYTE),
    0x26: ("user_property", PAIR), 0x27: ("maximum_packet_size", U32),
    0x28: ("wildcard_subscription_available", BYTE),
    0x29: ("subscription_identifier_available", BYTE),
    0x2A: ("shared_subscription_available", BYTE),
}  # fmt: skip
PROPERTY_IDS = {name: (ident, kind) for ident, (name, kind) in PROPERTIES.items()}
SECRET_PROPERTIES = frozenset({"authentication_data"})


class Malformed(Exception):
    """Inside this module only: not an MQTT packet (decode says None)."""


# -- reading -----------------------------------------------------------------------------------


class Reader:
    """The body of one packet, read front to back; every shortfall is ``Malformed``."""

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> bytes:
        if n > self.left():
            raise Malformed("a packet shorter than its fields")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def varint(self) -> int:
        value, pos = read_varint(self.data, self.pos, self.end)
        if value is None:
            raise Malformed("a Variable Byte Integer cut short")
        self.pos = pos
        return value

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        try:
            text = self.binary().decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed("a string that is not UTF-8") from None
        if "\0" in text:  # 3.1.1 section 1.5.3: U+0000 must not appear
            raise Malformed("a string holding U+0000")
        return text

    def rest(self) -> bytes:
        return self.take(self.left())

    def done(self) -> None:
        if self.left():
            raise Malformed(f"{self.left()} bytes after the packet's fields")

    def properties(self, secrets: dict[str, Any]) -> list[list[Any]]:
        length = self.varint()
        inner = Reader(self.data, self.pos, self.pos + length)
        self.take(length)  # checks the length fits the packet
        read: dict[str, Callable[[], Any]] = {
            BYTE: inner.u8, U16: inner.u16, U32: inner.u32, VARINT: inner.varint,
            STR: inner.string, BIN: inner.binary,
            PAIR: lambda: [inner.string(), inner.string()],
        }  # fmt: skip
        result: list[list[Any]] = []
        while inner.left():
            ident = inner.varint()
            if ident not in PROPERTIES:
                raise Malformed(f"unknown property 0x{ident:02x}")
            name, kind = PROPERTIES[ident]
            value = read[kind]()
            if name in SECRET_PROPERTIES:
                secrets[name] = value
                value = REDACTED
            result.append([name, value])
        return result


def read_varint(data: bytes, pos: int, end: int) -> tuple[int | None, int]:
    """A Variable Byte Integer at ``pos``: (value, next position), or (None, pos) when the
    bytes stop first. Longer than four bytes, or longer than needed, is ``Malformed``."""
    value = 0
    for i in range(4):
        if pos + i >= end:
            return None, pos
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i and not byte:
                raise Malformed("a Variable Byte Integer longer than needed")
            return value, pos + i + 1
    raise Malformed("a Variable Byte Integer of more than four bytes")


def _payload_value(payload: bytes) -> str | bytes:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload


# -- the packets -------------------------------------------------------------------------------

Parsed = tuple[dict[str, Any], Any]  # fields, value


def _connect(r: Reader, flags: int, level: int, secrets: dict[str, Any]) -> Parsed:
    name = r.string()
    level = r.u8()
    if (name, level) not in PROTOCOLS:
        raise Malformed(f"protocol {clip(name, 20)!r} level {level}")
    bits = r.u8()
    if bits & 0x01 or (not bits & 0x04 and bits & 0x38) or (bits >> 3) & 3 == 3:
        raise Malformed("CONNECT flags")
    if level < 5 and bits & 0x40 and not bits & 0x80:
        raise Malformed("a password without a user name")
    fields: dict[str, Any] = {"protocol_name": name, "level": level}
    fields["clean_start"] = bool(bits & 0x02)
    fields["keepalive"] = r.u16()
    fields["properties"] = r.properties(secrets) if level == 5 else None
    fields["client_id"] = r.string()
    will: dict[str, Any] | None = None
    if bits & 0x04:
        will = {"qos": (bits >> 3) & 3, "retain": bool(bits & 0x20)}
        will["properties"] = r.properties(secrets) if level == 5 else None
        will["topic"] = r.string()
        will["payload"] = _payload_value(r.binary())
    fields["will"] = will
    fields["username"] = r.string() if bits & 0x80 else None
    fields["password"] = None
    if bits & 0x40:
        secrets["password"] = r.binary()
        fields["password"] = REDACTED
    r.done()
    return fields, None


def _connack(r: Reader, flags: int, level: int, secrets: dict[str, Any]) -> Parsed:
    ack = r.u8()
    if ack & 0xFE:
        raise Malformed("CONNACK flags")
    fields: dict[str, Any] = {"session_present": bool(ack & 1), "reason_code": r.u8()}
    fields["properties"] = r.properties(secrets) if level == 5 else None
    r.done()
    return fields, None


def _publish(r: Reader, flags: int, level: int, secrets: dict[str, Any]) -> Parsed:
    qos = (flags >> 1) & 3
    if qos == 3:
        raise Malformed("PUBLISH with QoS 3")
    topic = r.string()
    if "+" in topic or "#" in topic:
        raise Malformed("a wildcard in a PUBLISH topic")
    fields: dict[str, Any] = {"qos": qos, "retain": bool(flags & 1), "dup": bool(flags & 8)}
    fields["wire_topic"] = topic
    fields["packet_id"] = _packet_id(r) if qos else None
    fields["properties"] = r.properties(secrets) if level == 5 else None
    return fields, _payload_value(r.rest())


def _packet_id(r: Reader) -> int:
    ident = r.u16()
    if not ident:
        raise Malformed("packet identifier 0")
    return ident


def _ack(r: Reader, flags: int, level: int, secrets: dict[str, Any]) -> Parsed:
    """PUBACK, PUBREC, PUBREL, PUBCOMP: the id; in MQTT 5 a reason code and properties,
    each left out when the rest is (5.0 section 3.4.2.1)."""
    fields: dict[str, Any] = {"packet_id": _packet_id(r), "reason_code": None, "properties": None}
    if level == 5 and r.left():
        fields["reason_code"] = r.u8()
        if r.left():
            fields["properties"] = r.properties(secrets)
    r.done()
    return fields, None


def _subscribe(r: Reader, flags: int, level: int, secrets: dict[str, Any]) -> Parsed:
    fields: dict[str, Any] = {"packet_id": _packet_id(r)}
    fields["properties"] = r.properties(secrets) if level == 5 else None
    subscriptions = []
    while r.left():
        topic_filter, options = r.string(), r.u8()
        if options & (0xC0 if level == 5 else 0xFC) or options & 3 == 3 or options >> 4 & 3 == 3:
            raise Malformed("subscription options")
        subscription: dict[str, Any] = {"filter": topic_filter, "qos": options & 3}
        if level == 5:
            subscription["no_local"] = bool(options & 4)
            subscription["retain_as_published"] = bool(options & 8)
            subscription["retain_handling"] = options >> 4 & 3
        subscriptions.append(subscription)
    if not subscriptions:
        raise Malformed("SUBSCRIBE without a topic filter")
    return fields, subscriptions


def _unsubscribe(r: Reader, flags: int, level: int, secrets: dict[str, Any]) -> Parsed:
    fields: dict[str, Any] = {"packet_id": _packet_id(r)}
    fields["properties"] = r.properties(secrets) if level == 5 else None
    filters = []
    while r.left():
        filters.append(r.string())
    if not filters:
        raise Malformed("UNSUBSCRIBE without a topic filter")
    return fields, filters


def _suback(r: Reader, flags: int, level: int, secrets: dict[str, Any]) -> Parsed:
    """SUBACK, and UNSUBACK: its reason codes are MQTT 5's (3.1.1 has only the id)."""
    fields: dict[str, Any] = {"packet_id": _packet_id(r)}
    fields["properties"] = r.properties(secrets) if level == 5 else None
    codes = list(r.rest())
    if not codes:
        raise Malformed("an acknowledgement without reason codes")
    return fields, codes


def _unsuback(r: Reader, flags: int, level: int, secrets: dict[str, Any]) -> Parsed:
    if level == 5:
        return _suback(r, flags, level, secrets)
    fields = {"packet_id": _packet_id(r), "properties": None}
    r.done()
    return fields, None


def _empty(r: Reader, flags: int, level: int, secrets: dict[str, Any]) -> Parsed:
    r.done()
    return {}, None


def _reasoned(r: Reader, flags: int, level: int, secrets: dict[str, Any]) -> Parsed:
    """DISCONNECT and AUTH: in MQTT 5 a reason code and properties, both optional."""
    fields: dict[str, Any] = {"reason_code": None, "properties": None}
    if level == 5 and r.left():
        fields["reason_code"] = r.u8()
        if r.left():
            fields["properties"] = r.properties(secrets)
    r.done()
    return fields, None


PARSERS: dict[str, Callable[[Reader, int, int, dict[str, Any]], Parsed]] = {
    "CONNECT": _connect, "CONNACK": _connack, "PUBLISH": _publish, "PUBACK": _ack,
    "PUBREC": _ack, "PUBREL": _ack, "PUBCOMP": _ack, "SUBSCRIBE": _subscribe,
    "SUBACK": _suback, "UNSUBSCRIBE": _unsubscribe, "UNSUBACK": _unsuback,
    "PINGREQ": _empty, "PINGRESP": _empty, "DISCONNECT": _reasoned, "AUTH": _reasoned,
}  # fmt: skip


def fixed_header(data: bytes, pos: int) -> tuple[str, int, int, int] | None:
    """(packet type, flags, body start, body end) of the packet at ``pos`` (a byte of
    ``data``); None when its remaining length is not all there yet."""
    first = data[pos]
    kind = TYPES.get(first >> 4)
    flags = first & 0x0F
    if kind is None:
        raise Malformed("packet type 0")
    if kind != "PUBLISH" and flags != REQUIRED_FLAGS.get(kind, 0):
        raise Malformed(f"{kind} with flags {flags:#x}")
    length, start = read_varint(data, pos + 1, len(data))
    if length is None:
        return None
    return kind, flags, start, start + length


# -- writing -----------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    if not 0 <= value <= MAX_REMAINING:
        raise ValueError("out of a Variable Byte Integer's range")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(text: str) -> bytes:
    return _binary(text.encode("utf-8"))


def _binary(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def payload_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if value is None:
        return b""
    return bytes(value)


def _secret(secrets: dict[str, Any], name: str, value: Any) -> Any:
    if value == REDACTED:
        if name not in secrets:
            raise ValueError(f"the {name} was redacted and is not known")
        return secrets[name]
    return value


def _properties(props: list[list[Any]] | None, secrets: dict[str, Any]) -> bytes:
    if props is None:
        return b""
    out = bytearray()
    for name, value in props:
        ident, kind = PROPERTY_IDS[name]
        out += varint(ident)
        value = _secret(secrets, name, value) if name in SECRET_PROPERTIES else value
        if kind == BYTE:
            out.append(value)
        elif kind == U16:
            out += struct.pack(">H", value)
        elif kind == U32:
            out += struct.pack(">I", value)
        elif kind == VARINT:
            out += varint(value)
        elif kind == STR:
            out += _string(value)
        elif kind == BIN:
            out += _binary(payload_bytes(value))
        else:
            out += _string(value[0]) + _string(value[1])
    return varint(len(out)) + bytes(out)


def _write_connect(d: Decoded, secrets: dict[str, Any]) -> tuple[int, bytes]:
    f = d.fields
    will, level = f["will"], f["level"]
    bits = 0x02 if f["clean_start"] else 0
    if will is not None:
        bits |= 0x04 | will["qos"] << 3 | (0x20 if will["retain"] else 0)
    bits |= (0x80 if f["username"] is not None else 0) | (0x40 if f["password"] is not None else 0)
    out = _string(f["protocol_name"]) + bytes([level, bits]) + struct.pack(">H", f["keepalive"])
    out += _properties(f["properties"], secrets) + _string(f["client_id"])
    if will is not None:
        out += _properties(will["properties"], secrets) + _string(will["topic"])
        out += _binary(payload_bytes(will["payload"]))
    if f["username"] is not None:
        out += _string(f["username"])
    if f["password"] is not None:
        out += _binary(payload_bytes(_secret(secrets, "password", f["password"])))
    return 0, out


def _write_body(d: Decoded, secrets: dict[str, Any]) -> tuple[int, bytes]:
    """Every packet but CONNECT: (fixed header flags, body)."""
    f, kind = d.fields, d.kind
    props = _properties(f.get("properties"), secrets)
    packet_id = struct.pack(">H", f["packet_id"]) if f.get("packet_id") is not None else b""
    if kind == "CONNACK":
        return 0, bytes([int(f["session_present"]), f["reason_code"]]) + props
    if kind == "PUBLISH":
        topic = f["wire_topic"] if d.topic == f.get("alias_topic") else d.topic
        flags = f["qos"] << 1 | int(f["retain"]) | int(f["dup"]) << 3
        return flags, _string(topic or "") + packet_id + props + payload_bytes(d.value)
    if kind == "SUBSCRIBE":
        out = packet_id + props
        for s in d.value:
            options = s["qos"]
            if "retain_handling" in s:
                options |= s["no_local"] << 2 | s["retain_as_published"] << 3
                options |= s["retain_handling"] << 4
            out += _string(s["filter"]) + bytes([options])
        return 2, out
    if kind == "UNSUBSCRIBE":
        return 2, packet_id + props + b"".join(_string(t) for t in d.value)
    if kind in ("SUBACK", "UNSUBACK"):
        return 0, packet_id + props + bytes(d.value or [])
    rc = bytes([f["reason_code"]]) if f.get("reason_code") is not None else b""
    return REQUIRED_FLAGS.get(kind, 0), packet_id + rc + props


def serialize(decoded: Decoded) -> bytes:
    """The packet's bytes (fixed header, then body); ValueError and the like when the
    edited fields are not a packet."""
    secrets = getattr(decoded, SECRET_KEY, {})
    write = _write_connect if decoded.kind == "CONNECT" else _write_body
    flags, body = write(decoded, secrets)
    return bytes([CODES[decoded.kind] << 4 | flags]) + varint(len(body)) + body


# -- summaries ---------------------------------------------------------------------------------
