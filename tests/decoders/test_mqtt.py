"""MQTT 3.1.1 and 5 packets, built by hand from the specifications' layouts (MQTT 5
properties by paho-mqtt's own ``Properties.pack``), fed whole, several to a message, split
over messages and byte at a time; garbage is "not MQTT"."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from wsproxy.decoders.base import Decoded, Hints
from wsproxy.decoders.mqtt import MAX_PENDING, MqttDecoder, MqttFactory
from wsproxy.decoders.preview import REDACTED

FACTORY = MqttFactory()


def s(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack(">H", len(data)) + data


def packet(first: int, body: bytes) -> bytes:
    length, n = bytearray(), len(body)
    while True:
        n, byte = n >> 7, n & 0x7F
        length.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes([first]) + bytes(length) + body


def props(kind: int, **values: object) -> bytes:
    p = Properties(kind)
    for name, value in values.items():
        setattr(p, name, value)
    return bytes(p.pack())


CONNECT4 = packet(0x10, s("MQTT") + b"\x04\xc2\x00\x3c" + s("client-1") + s("bob") + s("hunter2"))
CONNECT5 = packet(
    0x10,
    s("MQTT") + b"\x05\xee\x00\x1e"  # user, password, will retain, will qos 1, will, clean
    + props(PacketTypes.CONNECT, SessionExpiryInterval=60, ReceiveMaximum=10)
    + s("c5")
    + props(PacketTypes.WILLMESSAGE, WillDelayInterval=5) + s("will/t") + s(b"bye")
    + s("alice") + s(b"\x00secret\xff"),
)  # fmt: skip
CONNECT31 = packet(0x10, s("MQIsdp") + b"\x03\x02\x00\x0a" + s("old"))
CONNACK4 = packet(0x20, b"\x01\x00")
CONNACK5 = packet(0x20, b"\x00\x00" + props(PacketTypes.CONNACK, TopicAliasMaximum=5))
PUBLISH4 = packet(0x32, s("a/b") + b"\x00\x07" + b"hello world!")
PUBLISH5 = packet(
    0x3B,  # dup, qos 1, retain
    s("a/b") + b"\x00\x08"
    + props(PacketTypes.PUBLISH, ContentType="text/plain", UserProperty=[("k", "v")],
            MessageExpiryInterval=30, CorrelationData=b"\x01\x02", SubscriptionIdentifier=[7])
    + b"\xff\x00payload",
)  # fmt: skip
SUBSCRIBE4 = packet(0x82, b"\x00\x01" + s("a/#") + b"\x01" + s("c/+/d") + b"\x02")
SUBSCRIBE5 = packet(0x82, b"\x00\x02" + b"\x00" + s("a/#") + b"\x2d")  # nl, rap, rh=2, qos 1
SUBACK = packet(0x90, b"\x00\x01\x01\x80")
SUBACK5 = packet(0x90, b"\x00\x01\x00\x01\x80")
UNSUBSCRIBE = packet(0xA2, b"\x00\x03" + s("a/#"))
UNSUBACK4 = packet(0xB0, b"\x00\x03")
UNSUBACK5 = packet(0xB0, b"\x00\x03\x00\x00\x11")
PUBACK4 = packet(0x40, b"\x00\x07")
PUBREL = packet(0x62, b"\x00\x07")
PUBREC5 = packet(0x50, b"\x00\x07\x10" + props(PacketTypes.PUBREC, ReasonString="no subs"))
PUBCOMP5 = packet(0x70, b"\x00\x07\x00")
PINGREQ, PINGRESP = b"\xc0\x00", b"\xd0\x00"
DISCONNECT4 = b"\xe0\x00"
DISCONNECT5 = packet(0xE0, b"\x04" + props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))
AUTH = packet(
    0xF0,
    b"\x18" + props(PacketTypes.AUTH, AuthenticationMethod="SCRAM", AuthenticationData=b"pw!"),
)


def decoder_at(level: int) -> MqttDecoder:
    decoder = MqttDecoder()
    connect = {3: CONNECT31, 4: CONNECT4, 5: CONNECT5}[level]
    assert decoder.decode(connect, text=False, from_client=True) is not None
    return decoder


def one(decoder: MqttDecoder, payload: bytes, from_client: bool = True) -> Decoded:
    d = decoder.decode(payload, text=False, from_client=from_client)
    assert d is not None, payload
    assert decoder.encode(d) == payload
    return d


def test_claims_the_subprotocol() -> None:
    assert FACTORY.claims(Hints(subprotocol="mqtt"))
    assert FACTORY.claims(Hints(subprotocol="mqttv3.1"))
    assert not FACTORY.claims(Hints(subprotocol="v12.stomp"))
    assert not FACTORY.claims(Hints(path="/mqtt"))


@pytest.mark.parametrize("connect", [CONNECT4, CONNECT5, CONNECT31, CONNECT4 + PUBLISH4])
def test_sniffs_a_first_connect(connect: bytes) -> None:
    assert FACTORY.sniff(connect, text=False)


@pytest.mark.parametrize(
    "payload", [PUBLISH4, CONNECT4[:-1], b"\x10", b"", b"\x10\x00", CONNECT4 + b"\x00"]
)
def test_sniffs_nothing_but_a_whole_connect(payload: bytes) -> None:
    assert not FACTORY.sniff(payload, text=False)
    assert not FACTORY.sniff(CONNECT4, text=True)  # MQTT over WebSocket is binary


def test_connect_311_never_shows_the_password() -> None:
    d = one(MqttDecoder(), CONNECT4)
    assert d.summary == "mqtt CONNECT client=client-1 level=4 keepalive=60 user=bob"
    assert d.fields["password"] == REDACTED
    assert d.fields["client_id"] == "client-1" and d.fields["clean_start"]
    assert "hunter2" not in repr(d) and "hunter2" not in repr(d.fields)


def test_connect_5_with_will_and_properties() -> None:
    decoder = MqttDecoder()
    d = one(decoder, CONNECT5)
    assert decoder.level == 5
    assert d.fields["properties"] == [["session_expiry_interval", 60], ["receive_maximum", 10]]
    assert d.fields["will"] == {
        "qos": 1, "retain": True, "properties": [["will_delay_interval", 5]],
        "topic": "will/t", "payload": "bye",
    }  # fmt: skip
    assert "secret" not in repr(d)
    d.fields["username"] = "carol"  # an edit keeps the real password
    assert decoder.encode(d) == CONNECT5.replace(b"\x05alice", b"\x05carol")


def test_a_redacted_password_that_is_not_known_cannot_be_encoded() -> None:
    decoder = MqttDecoder()
    d = one(decoder, CONNECT4)
    copy = Decoded(d.protocol, d.kind, fields=dict(d.fields))  # built anew: no secrets
    assert decoder.encode(copy) is None
    copy.fields["password"] = b"new"
    reencoded = decoder.encode(copy)
    assert reencoded is not None and reencoded.endswith(s(b"new"))


def test_connect_31() -> None:
    d = one(MqttDecoder(), CONNECT31)
    assert (d.fields["protocol_name"], d.fields["level"]) == ("MQIsdp", 3)


def test_publish_311() -> None:
    d = one(decoder_at(4), PUBLISH4)
    assert d.summary == "mqtt PUBLISH a/b qos=1 12 B id=7"
    assert (d.kind, d.topic, d.id, d.value) == ("PUBLISH", "a/b", "7", "hello world!")


def test_publish_5_properties_and_binary_payload() -> None:
    d = one(decoder_at(5), PUBLISH5)
    assert d.summary == "mqtt PUBLISH a/b qos=1 9 B retain dup id=8"
    assert d.value == b"\xff\x00payload"
    assert dict((k, v) for k, v in d.fields["properties"] if k != "user_property") == {
        "message_expiry_interval": 30,
        "content_type": "text/plain",
        "correlation_data": b"\x01\x02",
        "subscription_identifier": 7,
    }
    assert ["user_property", ["k", "v"]] in d.fields["properties"]


def test_publish_5_topic_alias_per_direction() -> None:
    decoder = decoder_at(5)
    alias = props(PacketTypes.PUBLISH, TopicAlias=3)
    first = packet(0x30, s("sensors/1") + alias + b"x")
    then = packet(0x30, s("") + alias + b"y")
    assert one(decoder, first).topic == "sensors/1"
    d = one(decoder, then)
    assert d.topic == "sensors/1" and d.fields["wire_topic"] == ""
    d.topic = "sensors/2"  # edited: written out in full
    assert decoder.encode(d) == packet(0x30, s("sensors/2") + alias + b"y")
    # The server's aliases are its own: the client's alias 3 means nothing there.
    assert decoder.decode(then, text=False, from_client=False) is None


@pytest.mark.parametrize(
    ("level", "payload", "summary"),
    [
        (4, CONNACK4, "mqtt CONNACK rc=0x00 session-present"),
        (5, CONNACK5, "mqtt CONNACK rc=0x00"),
        (4, SUBSCRIBE4, "mqtt SUBSCRIBE a/# qos=1 c/+/d qos=2 id=1"),
        (5, SUBSCRIBE5, "mqtt SUBSCRIBE a/# qos=1 id=2"),
        (4, SUBACK, "mqtt SUBACK id=1 rc=0x01,0x80"),
        (4, UNSUBSCRIBE, "mqtt UNSUBSCRIBE a/# id=3"),
        (4, UNSUBACK4, "mqtt UNSUBACK id=3"),
        (5, UNSUBACK5, "mqtt UNSUBACK id=3 rc=0x00,0x11"),
        (4, PUBACK4, "mqtt PUBACK id=7"),
        (4, PUBREL, "mqtt PUBREL id=7"),
        (5, PUBREC5, "mqtt PUBREC id=7 rc=0x10"),
        (5, PUBCOMP5, "mqtt PUBCOMP id=7 rc=0x00"),
        (4, PINGREQ, "mqtt PINGREQ"),
        (4, PINGRESP, "mqtt PINGRESP"),
        (4, DISCONNECT4, "mqtt DISCONNECT"),
        (5, DISCONNECT5, "mqtt DISCONNECT rc=0x04"),
        (5, AUTH, "mqtt AUTH rc=0x18"),
    ],
)
def test_every_packet_type(level: int, payload: bytes, summary: str) -> None:
    d = one(decoder_at(level), payload)
    assert d.summary == summary


def test_subscription_options_of_5() -> None:
    d = one(decoder_at(5), SUBSCRIBE5)
    assert d.value == [
        {"filter": "a/#", "qos": 1, "no_local": True, "retain_as_published": True,
         "retain_handling": 2},
    ]  # fmt: skip
    assert d.topic == "a/#"


def test_auth_data_is_redacted_and_written_back() -> None:
    decoder = decoder_at(5)
    d = one(decoder, AUTH)
    assert ["authentication_data", REDACTED] in d.fields["properties"]
    assert "pw!" not in repr(d)


def test_several_packets_in_one_message() -> None:
    decoder = decoder_at(4)
    d = one(decoder, PUBACK4 + PUBLISH4 + PINGREQ)
    assert d.kind == "PUBACK" and d.topic == "a/b"
    assert [p.kind for p in d.fields["more"]] == ["PUBLISH", "PINGREQ"]
    assert d.summary == "mqtt PUBACK id=7; PUBLISH a/b qos=1 12 B id=7; PINGREQ"


def test_a_packet_over_several_messages() -> None:
    decoder = decoder_at(4)
    big = packet(0x30, s("t") + b"z" * 300)  # a two-byte remaining length
    assert decoder.decode(big[:1], text=False, from_client=True) is None
    assert decoder.decode(big[1:2], text=False, from_client=True) is None
    assert one(decoder, PINGRESP, from_client=False).kind == "PINGRESP"
    d = decoder.decode(big[2:200], text=False, from_client=True)
    assert d is None
    d = decoder.decode(big[200:] + PINGREQ, text=False, from_client=True)
    assert d is not None and d.value == "z" * 300 and d.fields["joined"]
    assert d.fields["more"][0].kind == "PINGREQ"
    assert decoder.encode(d) is None  # its start went in an earlier message


def test_byte_at_a_time() -> None:
    decoder = MqttDecoder()
    stream = CONNECT5 + PUBLISH5 + SUBSCRIBE5 + DISCONNECT5
    kinds = []
    for i in range(len(stream)):
        d = decoder.decode(stream[i : i + 1], text=False, from_client=True)
        if d is not None:
            kinds.append(d.kind)
    assert kinds == ["CONNECT", "PUBLISH", "SUBSCRIBE", "DISCONNECT"]


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00\x00",  # type 0 is reserved
        b"\x61\x02\x00\x07",  # PUBREL flags must be 0010
        b"\x80\x05\x00\x01\x00\x01a",  # SUBSCRIBE flags must be 0010
        b"\x36\x05\x00\x01a\x00\x01",  # QoS 3
        packet(0x30, s("a/+") + b"x"),  # a wildcard in a PUBLISH topic
        packet(0x32, s("a") + b"\x00\x00"),  # packet id 0
        b"\xc0\x80\x00",  # a remaining length longer than needed
        b"\xc0\x01\x00",  # PINGREQ with a body
        packet(0x30, s(b"\xff\xfe")),  # a topic that is not UTF-8
        packet(0x82, b"\x00\x01"),  # SUBSCRIBE without a filter
        packet(0x82, b"\x00\x01" + s("a") + b"\x04"),  # 3.1.1 reserved option bits
        packet(0x40, b"\x00\x07\x00"),  # 3.1.1 PUBACK has no reason code
        packet(0xF0, b"\x00"),  # AUTH is MQTT 5's
        packet(0x30, s("a\0b")),  # U+0000 in a string
    ],
)
def test_malformed_packets_are_not_mqtt(payload: bytes) -> None:
    assert decoder_at(4).decode(payload, text=False, from_client=True) is None


@pytest.mark.parametrize(
    "body",
    [
        s("MQTT") + b"\x06\x02\x00\x0a" + s("x"),  # level 6
        s("MQTX") + b"\x04\x02\x00\x0a" + s("x"),  # another protocol
        s("MQTT") + b"\x04\x03\x00\x0a" + s("x"),  # the reserved flag
        s("MQTT") + b"\x04\x42\x00\x0a" + s("x") + s("pw"),  # password without user (3.1.1)
        s("MQTT") + b"\x04\x1a\x00\x0a" + s("x"),  # will QoS 3
        s("MQTT") + b"\x04\x12\x00\x0a" + s("x"),  # will QoS without a will
        s("MQTT") + b"\x05\x02\x00\x0a\x02\x7f\x00" + s("x"),  # unknown property 0x7f
    ],
)
def test_malformed_connects(body: bytes) -> None:
    assert MqttDecoder().decode(packet(0x10, body), text=False, from_client=True) is None


def test_garbage_after_a_pending_start_does_not_stick() -> None:
    decoder = decoder_at(4)
    assert decoder.decode(b"\x30\x05\x00", text=False, from_client=True) is None
    # As the rest of that PUBLISH its topic would be 0x20 bytes long in a 5-byte packet:
    # the pending start was no packet's, and the message is read alone.
    assert one(decoder, CONNACK4, from_client=True).kind == "CONNACK"


def test_pending_is_bounded() -> None:
    decoder = decoder_at(4)
    huge = packet(0x30, s("t") + b"z" * (MAX_PENDING + 10))
    assert decoder.decode(huge[:-5], text=False, from_client=True) is None
    assert decoder._pending[True] == b""


def test_edits_are_encoded() -> None:
    decoder = decoder_at(4)
    d = one(decoder, PUBLISH4)
    d.topic, d.value = "c/d", b"other"
    assert decoder.encode(d) == packet(0x32, s("c/d") + b"\x00\x07" + b"other")
    d.fields["qos"] = "high"
    assert decoder.encode(d) is None


topics = st.text(st.characters(blacklist_characters="+#\0", blacklist_categories=["Cs"]),
                 min_size=1, max_size=20)  # fmt: skip


@given(topics, st.binary(max_size=300), st.integers(0, 2), st.booleans(), st.booleans())
def test_publish_round_trip(topic: str, payload: bytes, qos: int, retain: bool, v5: bool) -> None:
    decoder = decoder_at(5 if v5 else 4)
    body = s(topic) + (b"\x00\x09" if qos else b"")
    body += props(PacketTypes.PUBLISH, ContentType=topic) if v5 else b""
    data = packet(0x30 | qos << 1 | int(retain), body + payload)
    d = one(decoder, data)
    assert (d.topic, d.fields["qos"], d.fields["retain"]) == (topic, qos, retain)


@given(st.lists(st.binary(max_size=40), max_size=8), st.sampled_from([None, 4, 5]))
def test_no_input_crashes(chunks: list[bytes], level: int | None) -> None:
    decoder = MqttDecoder() if level is None else decoder_at(level)
    FACTORY.sniff(b"".join(chunks), text=False)
    for chunk in chunks:
        d = decoder.decode(chunk, text=False, from_client=bool(len(chunk) % 2))
        if d is not None:
            decoder.encode(d)


PACKETS = [CONNECT5, PUBLISH5, SUBSCRIBE5, SUBACK5, UNSUBACK5, PUBREC5, AUTH, DISCONNECT5]


@given(st.lists(st.sampled_from(PACKETS), min_size=1, max_size=6), st.data())
def test_any_split_of_a_stream_gives_its_packets(packets: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(packets)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=6)))
    decoder = MqttDecoder()
    decoder.level = 5
    kinds: list[str] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        d = decoder.decode(stream[start:end], text=False, from_client=True)
        if d is not None:
            kinds += [d.kind] + [p.kind for p in d.fields.get("more", [])]
    assert len(kinds) == len(packets)


# -- edge of the specifications, and edits -----------------------------------------------------


@pytest.mark.parametrize(
    ("level", "payload"),
    [
        (4, packet(0x20, b"\x02\x00")),  # CONNACK: bits 7-1 of its flags are reserved
        (4, packet(0xA2, b"\x00\x01")),  # UNSUBSCRIBE without a topic filter
        (4, packet(0x90, b"\x00\x01")),  # SUBACK without a return code
        (5, packet(0xB0, b"\x00\x01\x00")),  # MQTT 5 UNSUBACK without a reason code
        (4, packet(0x30, s("") + b"x")),  # a PUBLISH topic is at least one character
        (5, packet(0x30, s("") + b"\x00x")),  # nor empty in 5 without a topic alias
        (5, CONNACK4),  # MQTT 5's CONNACK must hold a property length
        (5, packet(0x20, b"\x00\x00\x80")),  # a property length cut short
        (4, b"\xc0\xff\xff\xff\xff\x01"),  # a remaining length of five bytes
        (5, packet(0x30, s("a") + b"\x03\x23\x00\x00" + b"x")),  # topic alias 0 (paho refuses it)
    ],
)
def test_more_malformed_packets_are_not_mqtt(level: int, payload: bytes) -> None:
    decoder = decoder_at(level)
    assert decoder.decode(payload, text=False, from_client=False) is None
    assert decoder._pending[False] == b""  # nothing of it waits for more


def test_disconnect_5_with_a_reason_code_and_no_properties() -> None:
    d = one(decoder_at(5), packet(0xE0, b"\x8e"))  # 0x8E: Session taken over
    assert (d.fields["reason_code"], d.fields["properties"]) == (0x8E, None)
    assert d.summary == "mqtt DISCONNECT rc=0x8e"


def test_a_byte_property_and_a_long_packet_in_one_message_round_trip() -> None:
    # Properties of type Byte, and a remaining length over 127 (two Variable Byte Integer
    # bytes) that encode must write back the same.
    payload = packet(0x30, s("t") + props(PacketTypes.PUBLISH, PayloadFormatIndicator=1)
                     + b"z" * 300)  # fmt: skip
    assert payload[1:3] == b"\xb2\x02"  # 306
    d = one(decoder_at(5), payload)
    assert d.fields["properties"] == [["payload_format_indicator", 1]]
    assert d.value == "z" * 300


def test_an_emptied_password_keeps_its_flag() -> None:
    # An empty password is still a password: the flag goes with its (empty) bytes, else the
    # packet written would not be MQTT.
    decoder = decoder_at(4)
    d = one(MqttDecoder(), CONNECT4)
    d.fields["password"] = b""
    encoded = decoder.encode(d)
    assert encoded is not None and encoded.endswith(s("bob") + s(b""))
    again = MqttDecoder().decode(encoded, text=False, from_client=True)
    assert again is not None and again.fields["password"] == REDACTED
    assert again.fields["username"] == "bob"


def test_an_edited_payload_of_none_is_empty() -> None:
    decoder = decoder_at(4)
    d = one(decoder, PUBLISH4)
    d.value = None
    assert decoder.encode(d) == packet(0x32, s("a/b") + b"\x00\x07")


@pytest.mark.parametrize("identifier", [-1, 268_435_456])
def test_a_varint_edit_out_of_range_is_not_encoded(identifier: int) -> None:
    # A Variable Byte Integer holds 0 to 268 435 455 (5.0 section 1.5.5).
    decoder = decoder_at(5)
    d = one(decoder, PUBLISH5)
    for prop in d.fields["properties"]:
        if prop[0] == "subscription_identifier":
            prop[1] = identifier
    assert decoder.encode(d) is None
