"""Engine.IO packets on a WebSocket (protocol v3 and v4), the layer under Socket.IO.

https://github.com/socketio/engine.io-protocol: a text message is one packet, its type as a
digit and then its data (``4hello`` is a message, ``2probe`` a ping). A binary message is a
message packet with binary data: as it is in v4, behind a type byte (``\\x04``) in v3. v3's
``b4...`` base64 form exists only on HTTP long-polling, never on a WebSocket. In v3 the
client pings and the server pongs, in v4 the other way round: the packet says which it is,
the decoder does not judge. A ``message`` packet's data is handed to the layer above
(Socket.IO); the others decode here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TYPES", "Packet", "parse", "serialize"]

TYPES = ("open", "close", "ping", "pong", "message", "upgrade", "noop")
MESSAGE = 4


@dataclass(frozen=True, slots=True)
class Packet:
    type: int  # an index of TYPES
    data: str | bytes

    @property
    def name(self) -> str:
        return TYPES[self.type]


def parse(payload: bytes, *, text: bool, version: int = 4) -> Packet | None:
    """The packet of one WebSocket message, None when it is not an Engine.IO packet.
    ``payload`` may be any bytes-like object (the relay hands over bytearrays too)."""
    if not text:
        payload = bytes(payload)
        if version == 3:
            if payload[:1] != b"\x04":
                return None
            return Packet(MESSAGE, payload[1:])
        return Packet(MESSAGE, payload)
    if not payload or not 0x30 <= payload[0] <= 0x36:
        return None
    try:
        data = payload[1:].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return Packet(payload[0] - 0x30, data)


def serialize(packet: Packet, *, version: int = 4) -> bytes:
    """The WebSocket payload of ``packet`` (text or binary as its data is)."""
    if isinstance(packet.data, bytes):
        return (b"\x04" if version == 3 else b"") + packet.data
    return str(packet.type).encode() + packet.data.encode("utf-8")
