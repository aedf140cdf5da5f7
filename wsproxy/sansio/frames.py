"""WebSocket frames on the wire: RFC 6455 section 5.

Everything here is a pure function of bytes: opcodes and close codes, the frame header
(serialize and check), masking (the XOR itself is in ``masking.py``), and the body of close
frames. Parsing a *stream* of frames, with its state (fragmentation, UTF-8, limits), lives in
``endpoint.py``.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from wsproxy.sansio import masking
from wsproxy.sansio.errors import ProtocolError
from wsproxy.sansio.fastpath import MASK_KEYS


class Opcode(enum.IntEnum):
    """RFC 6455 section 5.2; 0x3-0x7 and 0xB-0xF are reserved."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset({Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY})
CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})
KNOWN_OPCODES = frozenset(int(op) for op in Opcode)

# Bits of the first header byte (RFC 6455 section 5.2).
FIN = 0x80
RSV1 = 0x40
RSV2 = 0x20
RSV3 = 0x10
MASK = 0x80

MAX_CONTROL_PAYLOAD = 125


class CloseCode(enum.IntEnum):
    """RFC 6455 section 7.4.1 and the IANA registry."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never on the wire
    ABNORMAL = 1006  # never on the wire
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # never on the wire


# Codes a peer may send (RFC 6455 7.4.1, 7.4.2 and the IANA registry): 1004-1006 and 1015
# are reserved or internal, 1016-2999 unassigned, 3000-4999 registered or private use.
_WIRE_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame on the wire."""
    return code in _WIRE_CLOSE_CODES or 3000 <= code <= 4999


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame, unmasked. Mask and length are wire details, not fields."""

    opcode: Opcode
    payload: bytes = b""
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False

    @property
    def is_control(self) -> bool:
        return self.opcode >= 0x8


def new_mask_key() -> bytes:
    """A fresh unpredictable key per frame (RFC 6455 section 5.3 and 10.3): never ``random``;
    ``os.urandom`` drawn in blocks (``fastpath.MaskKeys``)."""
    return MASK_KEYS.take()


def apply_mask(data: bytes | bytearray | memoryview, key: bytes, offset: int = 0) -> bytes:
    """XOR ``data`` with ``key``; ``offset`` is the position of ``data`` within its frame.

    Masking is its own inverse, so this both masks and unmasks. A frame that arrives in several
    pieces is unmasked piece by piece with the running offset. The XOR is
    ``masking.mask_copy``: C when built (the copy and the XOR in one pass), else pure Python.
    """
    if not data:
        return b""
    return masking.mask_copy(data, key, offset)


_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack


def serialize_header(
    opcode: int, fin: bool, rsv: int, length: int, mask_key: bytes | None = None
) -> bytes:
    """The header of a frame, with the shortest length encoding (RFC 6455 section 5.2).

    ``rsv`` holds the RSV bits as they sit in the first byte (RSV1 = 0x40, ...).
    """
    first = (FIN if fin else 0) | rsv | opcode
    mask_bit = MASK if mask_key is not None else 0
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 65536:
        header = _PACK_16(first, mask_bit | 126, length)
    else:
        header = _PACK_64(first, mask_bit | 127, length)
    return header + mask_key if mask_key is not None else header


def serialize_frame(frame: Frame, mask: bool) -> bytes:
    """A whole frame; a client-to-server frame gets a fresh mask key."""
    rsv = (RSV1 if frame.rsv1 else 0) | (RSV2 if frame.rsv2 else 0) | (RSV3 if frame.rsv3 else 0)
    if mask:
        key = new_mask_key()
        return serialize_header(frame.opcode, frame.fin, rsv, len(frame.payload), key) + (
            apply_mask(frame.payload, key)
        )
    return serialize_header(frame.opcode, frame.fin, rsv, len(frame.payload)) + frame.payload


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """Check and split a close frame's body (RFC 6455 section 5.5.1).

    Empty means "no status" (reported as None). One byte, a code that may not be sent, or a
    reason that is not UTF-8 is an error: 1002, or 1007 for the reason's encoding.
    """
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise ProtocolError("close frame with a 1-byte body", CloseCode.PROTOCOL_ERROR)
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise ProtocolError(f"close code {code} may not be sent", CloseCode.PROTOCOL_ERROR)
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("close reason is not UTF-8", CloseCode.INVALID_PAYLOAD) from None
    return code, reason


def serialize_close(code: int | None, reason: str = "") -> bytes:
    """The body of a close frame; the reason is cut to fit 125 bytes without splitting UTF-8."""
    if code is None:
        return b""
    encoded = reason.encode("utf-8")
    if len(encoded) > MAX_CONTROL_PAYLOAD - 2:
        encoded = encoded[: MAX_CONTROL_PAYLOAD - 2].decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + encoded
