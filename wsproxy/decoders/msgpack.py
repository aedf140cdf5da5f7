"""MessagePack payloads (through the ``msgpack`` library): the value, with bytes kept as bytes.

Chosen by a WAMP-style subprotocol (``wamp.2.msgpack``, or any ending in ``msgpack``), or by
sniffing a binary message: the whole payload must be one msgpack value that uses every byte,
text must be UTF-8, and the value must pass ``plausible.looks_like_a_message`` (so a random
binary payload is not taken for msgpack). Extension types other than the timestamp (-1) stop
a sniff, and are kept as ``msgpack.ExtType`` when the subprotocol chose msgpack; timestamps
are ``msgpack.Timestamp``.

Round trip: encode writes the value in msgpack's shortest forms (what every msgpack library
writes by default), so a payload written that way comes back byte for byte; one that used a
longer form than needed (an int in 4 bytes that fits in 1, a float32) comes back shorter.
"""

from __future__ import annotations

from typing import Any

import msgpack

from wsproxy.decoders.base import Decoded, Decoder, DecoderFactory, Hints
from wsproxy.decoders.plausible import kind, looks_like_a_message
from wsproxy.decoders.preview import render, size

__all__ = ["MsgpackDecoder", "MsgpackFactory"]


def unpack(payload: bytes) -> tuple[bool, Any]:
    """(True, the value) when ``payload`` is exactly one msgpack value, else (False, None)."""
    try:
        # strict_map_key=False: integer keys are common (Socket.IO's msgpack parser, SignalR).
        # The library bounds every length by the payload's size, so no header can make it
        # allocate more than the payload holds.
        return True, msgpack.unpackb(payload, raw=False, strict_map_key=False, timestamp=0)
    except Exception:  # ExtraData, OutOfData, FormatError, StackError, UnicodeDecodeError, ...
        return False, None


def _plain(value: Any) -> bool:
    return isinstance(value, msgpack.Timestamp)


class MsgpackDecoder:
    """msgpack holds no state across messages: each one is a whole value."""

    protocol = "msgpack"

    def decode(self, payload: bytes, *, text: bool, from_client: bool) -> Decoded | None:
        ok, value = unpack(payload)
        if not ok:
            return None
        return Decoded(
            "msgpack",
            kind(value),
            value=value,
            summary=f"msgpack {render(value)} ({size(len(payload))})",
        )

    def encode(self, decoded: Decoded) -> bytes | None:
        try:
            return bytes(msgpack.packb(decoded.value, use_bin_type=True))
        except Exception:  # a value msgpack cannot write (a set, an object)
            return None


class MsgpackFactory:
    """msgpack: chosen by a ``*msgpack`` subprotocol, or sniffed (binary, whole, plausible)."""

    protocol = "msgpack"

    def claims(self, hints: Hints) -> bool:
        return (hints.subprotocol or "").lower().endswith("msgpack")

    def sniff(self, payload: bytes, *, text: bool) -> bool:
        if text or len(payload) < 2:
            return False
        ok, value = unpack(payload)
        return ok and looks_like_a_message(value, _plain)

    def new(self, hints: Hints) -> Decoder:
        return MsgpackDecoder()


_check_factory: DecoderFactory = MsgpackFactory()
