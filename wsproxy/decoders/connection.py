"""One connection's decoding: the decoder chosen at the first data message, and messages
joined from frames for the log.

Nothing is chosen or built until something asks for a decoded message, so a connection that
nobody decodes costs nothing. When no factory claims the connection, the first data messages
are sniffed until one fits; after ``SNIFF_TRIES`` messages that none recognised the
connection counts as undecodable and later messages cost one comparison each. The decoders
(and their codec libraries) are imported at the first choice, not with this module.
"""

from __future__ import annotations

from wsproxy.decoders.base import Decoded, Decoder, DecoderFactory, Hints

__all__ = ["DECODE_LIMIT", "SNIFF_TRIES", "ConnectionDecoding", "MessageJoiner", "StreamDecoding"]

SNIFF_TRIES = 8  # data messages sniffed before a connection counts as undecodable
# The largest message decoded (4 MiB): decoding holds the message and its value at once, and
# a summary of more than this is no summary. Larger messages show as they are.
DECODE_LIMIT = 4 * 1024 * 1024


class ConnectionDecoding:
    """The decoder of one connection, chosen lazily (see the module's docstring)."""

    __slots__ = ("_factories", "_tries", "decoder", "hints")

    def __init__(self, hints: Hints, factories: list[DecoderFactory] | None = None) -> None:
        self.hints = hints
        self._factories = factories  # None: the registry's, imported when first needed
        self.decoder: Decoder | None = None
        self._tries = 0

    @property
    def protocol(self) -> str | None:
        return None if self.decoder is None else self.decoder.protocol

    def decode(self, payload: bytes, *, text: bool, from_client: bool) -> Decoded | None:
        """The message as its protocol sees it; None when it is not decodable."""
        decoder = self.decoder
        if decoder is None:
            decoder = self._choose(payload, text)
            if decoder is None:
                return None
        if len(payload) > DECODE_LIMIT:
            return None
        return decoder.decode(payload, text=text, from_client=from_client)

    def encode(self, decoded: Decoded) -> bytes | None:
        """``decoded`` as bytes again, by the connection's decoder (None: it cannot)."""
        return None if self.decoder is None else self.decoder.encode(decoded)

    def _choose(self, payload: bytes, text: bool) -> Decoder | None:
        if self._tries >= SNIFF_TRIES:
            return None
        self._tries += 1
        from wsproxy.decoders.registry import FACTORIES, claimed

        factories = FACTORIES if self._factories is None else self._factories
        factory = claimed(self.hints, factories)
        if factory is None and len(payload) <= DECODE_LIMIT:
            factory = next((f for f in factories if f.sniff(payload, text=text)), None)
        if factory is not None:
            self.decoder = factory.new(self.hints)
        return self.decoder


class MessageJoiner:
    """A direction's frames (or frame pieces) joined into whole messages, for decoding.

    ``add`` takes each data frame's content in order and returns the message when its final
    frame's last piece came; a message past ``DECODE_LIMIT`` is not held (its end returns
    None) so the log's decoding keeps memory bounded whatever the traffic.
    """

    __slots__ = ("_parts", "_size", "_skip")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._skip = False

    def add(self, payload: bytes, *, last: bool) -> bytes | None:
        """``last``: this is the final frame's last piece; returns the message then."""
        if last and not self._parts and not self._skip:
            return payload  # the usual case: a message in one frame, one piece
        if not self._skip:
            self._size += len(payload)
            if self._size > DECODE_LIMIT:
                self._skip = True
                self._parts.clear()
            else:
                self._parts.append(payload)
        if not last:
            return None
        message = None if self._skip else b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        self._skip = False
        return message


class StreamDecoding:
    """A connection's decoding fed frame by frame, as the ``-v`` log and ``show --decode``
    see it: each direction's data frames (or pieces of them) joined into messages, each
    message decoded when its last piece came."""

    __slots__ = ("_joiners", "decoding")

    def __init__(self, hints: Hints, factories: list[DecoderFactory] | None = None) -> None:
        self.decoding = ConnectionDecoding(hints, factories)
        self._joiners = {True: MessageJoiner(), False: MessageJoiner()}

    def frame(
        self, payload: bytes, *, from_client: bool, text: bool, last: bool, whole: bool = False
    ) -> Decoded | None:
        """The decoded message this data frame (piece) ends, else None. ``last``: the final
        frame's last piece; ``whole``: a message of its own outside any other (an injected
        one, which may come between another message's frames)."""
        message = payload if whole else self._joiners[from_client].add(payload, last=last)
        if message is None:
            return None
        return self.decoding.decode(message, text=text, from_client=from_client)
