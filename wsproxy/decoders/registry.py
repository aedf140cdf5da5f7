"""Which decoder a connection gets: every protocol's factory, in the order they are tried.

``choose`` asks the factories twice: first whether the subprotocol or the URL claims the
connection (``graphql-transport-ws``, ``/socket.io/?EIO=4``), and when none does, whether the
first data message looks like one of theirs. The order matters for sniffing only: protocols
carried in JSON (Socket.IO's text, GraphQL, JSON-RPC) come first, then the protocols with the
most telling shapes (a STOMP command line, an MQTT CONNECT), then plain JSON, which takes any
text message that parses as an object or an array; the binary formats that would read almost
any bytes come last: msgpack and CBOR need a whole plausible value, and protobuf's wire format
parses out of the most byte strings, so it is tried after both.
"""

from __future__ import annotations

from wsproxy.decoders.base import DecoderFactory, Hints
from wsproxy.decoders.cbor import CborFactory
from wsproxy.decoders.graphqlws import GraphqlWsFactory
from wsproxy.decoders.jsonrpc import JsonRpcFactory
from wsproxy.decoders.jsontext import JsonFactory
from wsproxy.decoders.mqtt import MqttFactory
from wsproxy.decoders.msgpack import MsgpackFactory
from wsproxy.decoders.protobuf import ProtobufFactory
from wsproxy.decoders.socketio import SocketIoFactory
from wsproxy.decoders.stomp import StompFactory

__all__ = ["FACTORIES", "choose", "claimed"]

FACTORIES: list[DecoderFactory] = [
    SocketIoFactory(),
    GraphqlWsFactory(),
    JsonRpcFactory(),
    StompFactory(),
    MqttFactory(),
    JsonFactory(),
    MsgpackFactory(),
    CborFactory(),
    ProtobufFactory(),
]


def claimed(hints: Hints, factories: list[DecoderFactory] | None = None) -> DecoderFactory | None:
    """The factory the subprotocol or URL names, before any payload."""
    for factory in FACTORIES if factories is None else factories:
        if factory.claims(hints):
            return factory
    return None


def choose(
    hints: Hints,
    payload: bytes,
    text: bool,
    factories: list[DecoderFactory] | None = None,
) -> DecoderFactory | None:
    """The factory for a connection with these hints whose first data message is
    ``payload``: a claim wins, else the first that sniffs it; None when none fits."""
    factories = FACTORIES if factories is None else factories
    found = claimed(hints, factories)
    if found is not None:
        return found
    for factory in factories:
        if factory.sniff(payload, text=text):
            return factory
    return None
