"""MQTT 3.1, 3.1.1 and 5 over WebSocket (subprotocol ``mqtt``, or ``mqttv3.1``): control
packets with their topics, QoS, packet ids, MQTT 5 properties and payloads.

MQTT over WebSocket sends the packets as a byte stream in binary messages (MQTT 5.0 section 6,
3.1.1 section 6): one message may hold several packets, and a packet may go on in the next
message. Each direction therefore keeps the start of an unfinished packet (``MAX_PENDING`` at
most). The protocol level comes from the CONNECT (4 is 3.1.1, 5 is 5.0, 3 is 3.1); packets
seen before one are read as 3.1.1.

A packet's bytes are checked as the specifications require: the fixed header's reserved flags
(3.1.1 section 2.2.2), the Variable Byte Integer in its shortest form (5.0 section 1.5.5),
UTF-8 strings, a PUBLISH topic without wildcards, properties allowed by their identifier, no
bytes left over. Anything else is "not MQTT": decode says None.

Passwords are never shown: a CONNECT's password and the authentication data of CONNECT and
AUTH read ``<redacted>`` in ``fields``; the real bytes ride along on the ``Decoded`` object
(not in its fields), so re-encoding an edited packet writes them back, and a packet built from
scratch with the placeholder in it cannot be encoded.

Round trip: encode gives back the packets decoded, byte for byte, except a packet joined from
several WebSocket messages (encode says None: its start has already gone).
"""

from __future__ import annotations

import struct
from typing import Any

from wsproxy.decoders.base import Decoded, Decoder, DecoderFactory, Hints
from wsproxy.decoders.mqttwire import (
    PARSERS,
    SECRET_KEY,
    SUBPROTOCOLS,
    Malformed,
    Reader,
    fixed_header,
    payload_bytes,
    serialize,
)
from wsproxy.decoders.preview import clip, size

__all__ = ["MqttDecoder", "MqttFactory"]


# An unfinished packet is held until its end, up to this much (memory bounded): past it the
# direction's pending bytes are dropped and the messages pass undecoded.
MAX_PENDING = 1 << 20


def _summary(kind: str, fields: dict[str, Any], value: Any, topic: str | None) -> str:
    parts = ["mqtt", kind]
    if kind == "CONNECT":
        client = clip(fields["client_id"], 40) or '""'
        parts += [f"client={client}", f"level={fields['level']}"]
        parts.append(f"keepalive={fields['keepalive']}")
        if fields["username"] is not None:
            parts.append(f"user={clip(fields['username'], 40)}")  # never the password
    elif kind == "PUBLISH":
        parts += [clip(topic or "", 60), f"qos={fields['qos']}"]
        parts.append(size(len(payload_bytes(value))))
        parts += [flag for flag in ("retain", "dup") if fields[flag]]
        if fields["packet_id"] is not None:
            parts.append(f"id={fields['packet_id']}")
    elif kind == "SUBSCRIBE":
        parts += [f"{clip(s['filter'], 40)} qos={s['qos']}" for s in value[:4]]
        parts += [f"(+{len(value) - 4})"] if len(value) > 4 else []
    elif kind == "UNSUBSCRIBE":
        parts += [clip(t, 40) for t in value[:4]] + ([f"(+{len(value) - 4})"] * (len(value) > 4))
    if kind not in ("CONNECT", "PUBLISH") and fields.get("packet_id") is not None:
        parts.append(f"id={fields['packet_id']}")
    if kind in ("SUBACK", "UNSUBACK") and value:
        parts.append("rc=" + ",".join(f"{c:#04x}" for c in value[:8]))
    elif fields.get("reason_code") is not None:
        parts.append(f"rc={fields['reason_code']:#04x}")
    if kind == "CONNACK" and fields["session_present"]:
        parts.append("session-present")
    return " ".join(parts)


# -- the decoder -------------------------------------------------------------------------------


class MqttDecoder:
    """The MQTT decoder of one connection: its protocol level, and per direction the start
    of an unfinished packet and the topic aliases (5.0 section 3.3.2.3.4) the sender set."""

    protocol = "mqtt"

    def __init__(self) -> None:
        self.level: int | None = None
        self._pending: dict[bool, bytes] = {True: b"", False: b""}
        self._aliases: dict[bool, dict[int, str]] = {True: {}, False: {}}

    def decode(self, payload: bytes, *, text: bool, from_client: bool) -> Decoded | None:
        pending = self._pending[from_client]
        self._pending[from_client] = b""
        packets = self._packets(pending + payload, from_client, len(pending))
        if packets is None and pending:  # the pending bytes were no packet's start after all
            packets = self._packets(payload, from_client, 0)
        if not packets:
            return None
        first = packets[0]
        if len(packets) > 1:
            first.fields["more"] = packets[1:]
            first.summary += "; " + "; ".join(p.summary.removeprefix("mqtt ") for p in packets[1:])
        if first.topic is None:
            first.topic = next((p.topic for p in packets if p.topic is not None), None)
        return first

    def _packets(self, data: bytes, from_client: bool, joined: int) -> list[Decoded] | None:
        """The whole packets in ``data`` (an unfinished one kept pending); None if it is not
        MQTT. A packet starting before ``joined`` began in an earlier message."""
        packets: list[Decoded] = []
        pos = 0
        try:
            while pos < len(data):
                header = fixed_header(data, pos)
                if header is None or header[3] > len(data):
                    if len(data) - pos <= MAX_PENDING:
                        self._pending[from_client] = data[pos:]
                    break
                kind, flags, start, end = header
                packet = self._packet(kind, flags, Reader(data, start, end), from_client)
                packet.fields["joined"] = pos < joined
                packets.append(packet)
                pos = end
        except Malformed:
            self._pending[from_client] = b""
            return None
        return packets

    def _packet(self, kind: str, flags: int, body: Reader, from_client: bool) -> Decoded:
        level = self.level or 4
        if kind == "AUTH" and level != 5:
            raise Malformed("AUTH before MQTT 5")
        secrets: dict[str, Any] = {}
        fields, value = PARSERS[kind](body, flags, level, secrets)
        topic: str | None = None
        if kind == "CONNECT":
            self.level = fields["level"]
            self._aliases = {True: {}, False: {}}
        elif kind == "PUBLISH":
            topic = self._topic(fields, from_client)
        elif kind in ("SUBSCRIBE", "UNSUBSCRIBE"):
            topic = value[0]["filter"] if kind == "SUBSCRIBE" else value[0]
        packet_id = fields.get("packet_id")
        decoded = Decoded(
            "mqtt",
            kind,
            value=value,
            topic=topic,
            id=None if packet_id is None else str(packet_id),
            fields=fields,
            summary=_summary(kind, fields, value, topic),
        )
        setattr(decoded, SECRET_KEY, secrets)
        return decoded

    def _topic(self, fields: dict[str, Any], from_client: bool) -> str:
        """A PUBLISH's topic, through the sender's topic alias (set by a topic with an alias,
        used by an empty topic with one)."""
        topic: str = fields["wire_topic"]
        alias = next((v for k, v in fields["properties"] or () if k == "topic_alias"), None)
        if alias is None:
            if not topic:
                raise Malformed("PUBLISH without a topic")
            return topic
        if not alias:  # 5.0 section 3.3.2.3.4: "A Topic Alias of 0 is not permitted"
            raise Malformed("topic alias 0")
        aliases = self._aliases[from_client]
        if topic:
            aliases[alias] = topic
            return topic
        if alias not in aliases:
            raise Malformed(f"topic alias {alias} never set")
        fields["alias_topic"] = aliases[alias]
        return aliases[alias]

    def encode(self, decoded: Decoded) -> bytes | None:
        packets = [decoded, *decoded.fields.get("more", [])]
        if any(p.fields.get("joined") for p in packets):
            return None
        try:
            return b"".join(serialize(p) for p in packets)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, struct.error):
            return None  # an edit this protocol cannot write


class MqttFactory:
    """MQTT: chosen by its subprotocol, or a first binary message that starts with a
    CONNECT and holds whole packets."""

    protocol = "mqtt"

    def claims(self, hints: Hints) -> bool:
        return (hints.subprotocol or "").lower() in SUBPROTOCOLS

    def sniff(self, payload: bytes, *, text: bool) -> bool:
        if text or not payload or payload[0] != 0x10:
            return False
        decoder = MqttDecoder()
        decoded = decoder.decode(payload, text=False, from_client=True)
        return decoded is not None and not decoder._pending[True]

    def new(self, hints: Hints) -> Decoder:
        return MqttDecoder()


_check_factory: DecoderFactory = MqttFactory()
