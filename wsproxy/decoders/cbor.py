"""CBOR payloads (RFC 8949, through the ``cbor2`` library): the value, with bytes kept as bytes.

Chosen by a WAMP-style subprotocol (``wamp.2.cbor``, or any ending in ``cbor``), or by sniffing
a binary message: the whole payload must be one CBOR item that uses every byte (``cbor2.loads``
alone would ignore what follows), text must be UTF-8, and the value must pass
``plausible.looks_like_a_message``: tags, simple values and ``undefined`` stop a sniff. When
the subprotocol chose CBOR they are kept as cbor2 reads them (``CBORTag``, ``datetime``, ...).

Round trip: encode writes what cbor2 writes (definite lengths, the shortest integers, floats
as 64 bits, RFC 8949 section 4.2's preferred forms otherwise), so a payload written that way
comes back byte for byte; indefinite-length items and 16/32-bit floats come back in cbor2's
forms.
"""

from __future__ import annotations

import io
from typing import Any

import cbor2

from wsproxy.decoders.base import Decoded, Decoder, DecoderFactory, Hints
from wsproxy.decoders.plausible import kind, looks_like_a_message
from wsproxy.decoders.preview import render, size

__all__ = ["CborDecoder", "CborFactory"]


def load(payload: bytes) -> tuple[bool, Any]:
    """(True, the value) when ``payload`` is exactly one CBOR item, else (False, None)."""
    stream = io.BytesIO(payload)
    try:
        # cbor2 bounds nesting (max_depth) and reads a length's bytes as they come, so a
        # header claiming 4 GiB costs what the payload holds.
        value = cbor2.CBORDecoder(stream).decode()
    except Exception:  # CBORDecodeError (and EOF), ValueError, OverflowError, ...
        return False, None
    return stream.tell() == len(payload), value


def _plain(value: Any) -> bool:
    return False  # a tag, a simple value, undefined: not what a sniff believes


class CborDecoder:
    """CBOR holds no state across messages: each one is a whole item."""

    protocol = "cbor"

    def decode(self, payload: bytes, *, text: bool, from_client: bool) -> Decoded | None:
        ok, value = load(payload)
        if not ok:
            return None
        return Decoded(
            "cbor", kind(value), value=value, summary=f"cbor {render(value)} ({size(len(payload))})"
        )

    def encode(self, decoded: Decoded) -> bytes | None:
        try:
            return bytes(cbor2.dumps(decoded.value))
        except Exception:  # a value CBOR cannot write (a set of lists, an object)
            return None


class CborFactory:
    """CBOR: chosen by a ``*cbor`` subprotocol, or sniffed (binary, whole, plausible)."""

    protocol = "cbor"

    def claims(self, hints: Hints) -> bool:
        return (hints.subprotocol or "").lower().endswith("cbor")

    def sniff(self, payload: bytes, *, text: bool) -> bool:
        if text or len(payload) < 2:
            return False
        ok, value = load(payload)
        return ok and looks_like_a_message(value, _plain)

    def new(self, hints: Hints) -> Decoder:
        return CborDecoder()


_check_factory: DecoderFactory = CborFactory()
