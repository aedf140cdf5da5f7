"""What every protocol decoder gives and takes: the shared shapes, no protocol in here.

Decoders are sans-I/O like ``wsproxy.sansio`` (bytes in, a value out; no sockets, no clock),
but may use a codec library (msgpack, cbor2), which is why they live beside it. A payload that
is not the decoder's protocol decodes as ``None``: never an exception.

One ``Decoder`` instance serves one WebSocket connection, both directions, so protocols that
spread a message over several WebSocket messages (Socket.IO binary attachments) keep their
state in it. ``encode`` turns an edited ``Decoded`` back into the protocol's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Decoded", "Decoder", "DecoderFactory", "Hints"]


@dataclass(frozen=True)
class Hints:
    """What picks the decoders for a connection before any payload is seen."""

    subprotocol: str | None = None  # the one the server chose (Sec-WebSocket-Protocol)
    path: str = "/"  # the request target: path and query (``/socket.io/?EIO=4&transport=...``)


@dataclass
class Decoded:
    """One message as its protocol sees it.

    ``protocol`` names the protocol (``socketio``, ``engineio``, ``graphql``, ``stomp``,
    ``mqtt``, ``jsonrpc``, ``json``, ``msgpack``, ``cbor``, ``protobuf``) and ``kind`` the
    message type in the protocol's own words (``EVENT``, ``next``, ``PUBLISH``, ``SEND``,
    ``request``). ``value`` is the body as plain data (dict, list, str, int, float, bool,
    None, bytes). ``event``, ``operation``, ``topic`` and ``id`` are the fields filters and
    rules match (``~event``, ``~op``, ``~topic``), None when the message has none.
    ``fields`` holds the rest a summary or an encoder needs (namespace, qos, headers, ...).
    """

    protocol: str
    kind: str
    value: Any = None
    event: str | None = None
    operation: str | None = None
    topic: str | None = None
    id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    # The protocol layers under this one, outermost first (["engineio"] under socket.io).
    layers: tuple[str, ...] = ()
    # A one-line summary for ``-v`` (``socket.io EVENT "chat" ["hi", {…}]``); the decoder
    # fills it, so each protocol words its own.
    summary: str = ""


class Decoder(Protocol):
    """The decoder of one connection."""

    protocol: str

    def decode(self, payload: bytes, *, text: bool, from_client: bool) -> Decoded | None:
        """``payload`` as this protocol's message; None when it is not one (or only a part of
        one, kept until the rest arrives)."""
        ...

    def encode(self, decoded: Decoded) -> bytes | None:
        """The bytes of ``decoded`` after an edit; None when this protocol cannot re-encode
        it (the original bytes are then kept)."""
        ...


class DecoderFactory(Protocol):
    """Makes a connection's decoder, and says how likely its protocol is."""

    protocol: str

    def claims(self, hints: Hints) -> bool:
        """Whether the subprotocol or URL say this is the protocol (chosen without sniffing)."""
        ...

    def sniff(self, payload: bytes, *, text: bool) -> bool:
        """Whether a first payload looks like this protocol (when no hint chose one)."""
        ...

    def new(self, hints: Hints) -> Decoder:
        """A decoder for one connection."""
        ...
