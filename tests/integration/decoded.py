"""A capture's messages through the decoders, as the proxy would choose them: per connection,
the factory that claims its hints (subprotocol, path) or sniffs its first message, then one
decoder for both directions, in order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from wsproxy.capture.messages import TEXT, Message, reassemble
from wsproxy.capture.reader import join_frames, read_capture
from wsproxy.capture.records import Connection, Frame
from wsproxy.decoders.base import Decoded, Decoder, Hints
from wsproxy.decoders.registry import choose


@dataclass
class DecodedMessage:
    message: Message
    decoded: Decoded | None
    decoder: Decoder | None

    @property
    def from_client(self) -> bool:
        return self.message.direction == "client"

    def reencoded(self) -> bytes | None:
        assert self.decoder is not None and self.decoded is not None
        return self.decoder.encode(self.decoded)


def decode_capture(path: Path) -> dict[str, list[DecodedMessage]]:
    """Every connection's messages with their decoded views (None: no decoder took it)."""
    records = list(join_frames(read_capture(path)))
    hints = {
        r.conn: Hints(subprotocol=r.subprotocol, path=_target(r.url))
        for r in records
        if isinstance(r, Connection)
    }
    decoders: dict[str, Decoder | None] = {}
    result: dict[str, list[DecodedMessage]] = {}
    for message in reassemble(r for r in records if isinstance(r, Frame)):
        text = message.opcode == TEXT
        if message.conn not in decoders:
            connection_hints = hints.get(message.conn, Hints())
            factory = choose(connection_hints, message.content, text)
            decoders[message.conn] = factory.new(connection_hints) if factory else None
        decoder = decoders[message.conn]
        decoded = (
            decoder.decode(message.content, text=text, from_client=message.direction == "client")
            if decoder is not None
            else None
        )
        result.setdefault(message.conn, []).append(DecodedMessage(message, decoded, decoder))
    return result


def _target(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
