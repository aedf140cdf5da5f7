"""The checks of RFC 6455 section 5 a reader makes as a frame arrives: the payload length in
its shortest form, the rules for control frames, and UTF-8 of text as it streams."""

from __future__ import annotations

import codecs

from wsproxy.sansio.commands import Wire
from wsproxy.sansio.errors import ProtocolError
from wsproxy.sansio.frames import MAX_CONTROL_PAYLOAD, CloseCode


def new_utf8_decoder() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")("strict")


def check_utf8(decoder: codecs.IncrementalDecoder, content: bytes, final: bool) -> None:
    """Fail on the first invalid byte, even when a code point is split across fragments.

    CPython's decoder already rejects most impossible prefixes at once (``F4 90``, ``E0 80``),
    but holds ``ED A0``-``ED BF`` (a UTF-16 surrogate, never valid) until a third byte comes;
    that one case is checked by hand so the connection fails as early as RFC 6455 8.1 wants.
    """
    try:
        decoder.decode(content, final)
    except UnicodeDecodeError:
        raise ProtocolError("invalid UTF-8 in a text message", CloseCode.INVALID_PAYLOAD) from None
    pending = decoder.getstate()[0]
    if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
        raise ProtocolError("invalid UTF-8 in a text message", CloseCode.INVALID_PAYLOAD)


def payload_length(buffer: Wire, position: int, available: int, short: int) -> tuple[int, int]:
    """(header size before any mask key, payload length) from the 7-bit length ``short``
    (RFC 6455 5.2); (-1, 0) while the extended length has not all arrived."""
    if short < 126:
        return 2, short
    size = 4 if short == 126 else 10
    if available < size:
        return -1, 0
    length = int.from_bytes(buffer[position + 2 : position + size], "big")
    if size == 10 and length >> 63:
        raise ProtocolError("64-bit length with its top bit set", CloseCode.PROTOCOL_ERROR)
    if length < (126 if size == 4 else 65536):
        raise ProtocolError("length not in its shortest form", CloseCode.PROTOCOL_ERROR)
    return size, length


def check_control_frame(fin: bool, rsv: int, length: int) -> None:
    """RFC 6455 5.5: control frames are never fragmented, carry at most 125 bytes and no RSV."""
    if not fin:
        raise ProtocolError("fragmented control frame", CloseCode.PROTOCOL_ERROR)
    if length > MAX_CONTROL_PAYLOAD:
        raise ProtocolError(f"control frame of {length} bytes (max 125)", CloseCode.PROTOCOL_ERROR)
    if rsv:
        raise ProtocolError("RSV1 set on a control frame", CloseCode.PROTOCOL_ERROR)
