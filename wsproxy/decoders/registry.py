"""Which decoder a connection gets: the factories in priority order, and the choosing.

A factory that ``claims`` the connection's hints (its subprotocol, its URL) wins before any
payload is seen; otherwise the first message is offered to each ``sniff`` in this order. The
order puts the protocols with the most telling shapes first (a STOMP command line, an MQTT
CONNECT) and the weakest guesses last: msgpack and CBOR need a whole plausible value, and
protobuf's wire format parses out of the most byte strings, so it is tried after both.
"""

from __future__ import annotations

from wsproxy.decoders.base import DecoderFactory, Hints
from wsproxy.decoders.cbor import CborFactory
from wsproxy.decoders.mqtt import MqttFactory
from wsproxy.decoders.msgpack import MsgpackFactory
from wsproxy.decoders.protobuf import ProtobufFactory
from wsproxy.decoders.stomp import StompFactory

__all__ = ["FACTORIES", "choose"]

FACTORIES: list[DecoderFactory] = [
    StompFactory(),
    MqttFactory(),
    MsgpackFactory(),
    CborFactory(),
    ProtobufFactory(),
]


def choose(hints: Hints, payload: bytes, text: bool) -> DecoderFactory | None:
    """The factory for a connection with ``hints`` whose first message is ``payload``: the
    first that claims the hints, else the first whose sniff takes the payload, else None."""
    for factory in FACTORIES:
        if factory.claims(hints):
            return factory
    for factory in FACTORIES:
        if factory.sniff(payload, text=text):
            return factory
    return None
