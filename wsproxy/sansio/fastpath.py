"""The relay's fast path: runs of whole, simple frames relayed in one pass.

Most of what crosses a proxied WebSocket is whole, final, unextended text and binary frames.
When nobody records or inspects them, relaying one needs only the frame reader's checks and,
for a client's frame, a fresh mask key; no events, no objects per frame. ``relay_frames``
does that for the frames at the start of a read and stops at the first one that is anything
else (a control frame, a fragment, RSV bits, a frame not all there, one over a limit, invalid
UTF-8, a malformed header): the general reader (``endpoint.FrameReader``) takes over from
exactly there, with its state untouched, and is the one that reports any error. So the fast
path changes how fast frames go, never what happens to them.

Two implementations with one contract: ``_speedups.relay_frames`` in C and ``relay_frames_py``
below; ``relay_frames`` is the C one when it is built. The tests run both.

``relay_frames(data, masked, max_frame, max_message, keys, key_pos)`` returns
``(end, out, frames, key_pos)``: ``data[:end]`` held ``frames`` such frames; ``out`` is
``data[:end]`` re-masked (``masked``: the frames come from a client, every one with a new key
taken from ``keys`` at ``key_pos``), or None when unmasked (those bytes go on unchanged) or
when ``end`` is 0. The new ``key_pos`` says how many keys were taken; the run also stops when
``keys`` has none left, so the caller draws a new block and calls again.

``relay_frames_recorded(data, masked, max_frame, max_message, keys, key_pos, keep)`` is the
same walk for a relay whose frames are recorded (the ``-v`` log, a capture, ``-s log``'s
counts): it returns ``(end, out, key_pos, frames)``, ``frames`` one ``(opcode, length,
payload)`` per frame relayed, ``payload`` the first ``keep`` bytes of its content in the clear
(all of it when ``keep`` is negative). The records are built from that alone, with no reader
events in between.

``whole_frames(data, masked, max_frame, max_message, keys, key_pos, budget)`` is the same walk
for a relay whose plugins read every message: it returns ``(end, frames, key_pos)``, ``frames``
one ``(opcode, payload, out)`` per frame, ``payload`` its content in the clear and ``out`` the
frame as it goes to the other peer if the plugins leave it unchanged (re-masked with a fresh key
when ``masked``, else as it came); each frame becomes one message for the hooks, with no reader
events in between. It stops after the frame that brings what it took (each frame's content and
``EVENT_COST``) to ``budget`` bytes: the hooks' backlog is bounded by what it holds, and one read
of tiny frames would otherwise become a hundred thousand messages at once.

``relay_deflated(data, masked, max_frame, max_message, keys, key_pos, inflate, max_compressed)``
is ``relay_frames`` for a connection with permessage-deflate (RFC 7692): it also relays whole,
final, compressed (RSV1) text and binary frames of at most ``max_compressed`` bytes, whatever
they inflate to being within what the caller allows (``max_compressed`` is chosen so). Each
such payload, unmasked and with the four tail bytes of section 7.2.2 appended (``b""`` when
empty), goes to ``inflate``, which keeps the running context (context takeover) and returns the
message's content; a text message's content must be UTF-8. ``inflate`` is a callable, or, so
that no Python code runs per message, a tuple ``(decoder, window, after_final)``: the payload
goes to ``decoder.decompress``, its content is added to ``window`` (a bytearray kept to the
last 32 KiB of output and at most 64 KiB, for a restart after a BFINAL block), and when the
decoder reached a BFINAL block, ``after_final(content)`` gives the message's whole content
instead and the run stops after that frame (the decoder was replaced). The compressed bytes go
on as they came, client frames re-masked: nothing is recompressed. It returns ``(end, out,
frames, key_pos, error)``; ``error`` is None, or what stopped the run at ``data[end:]`` after
``inflate`` was fed that frame, so the connection must fail with it: the exception inflating
raised, ``(1007, reason)`` for a content that is not UTF-8, or ``(1009, reason)`` for one over
``max_message`` (which a right ``max_compressed`` rules out).

``whole_deflated(data, masked, max_frame, max_message, keys, key_pos, inflate, max_compressed,
budget)`` is ``whole_frames`` for a connection with permessage-deflate (the budget counting
inflated contents, where a 9-byte frame can stand for a kilobyte): the frames ``relay_deflated``
would take, inflated the same way, for plugins to read. It returns ``(end, frames, key_pos,
error)``, ``frames`` one ``(opcode, content, wire, out)`` per frame: ``content`` in the clear
(inflated), ``wire`` the compressed payload in the clear without the tail (None for a frame
that was not compressed), ``out`` the frame as it came, re-masked when ``masked``; ``error`` as
``relay_deflated``'s, the frames before it taken.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable

from wsproxy.sansio import masking

Buffer = bytes | bytearray | memoryview
RelayFrames = Callable[[Buffer, bool, int, int, bytes, int], tuple[int, bytes | None, int, int]]
RelayFramesRecorded = Callable[
    [Buffer, bool, int, int, bytes, int, int],
    tuple[int, bytes | None, int, list[tuple[int, int, bytes]]],
]
WholeFrames = Callable[
    [Buffer, bool, int, int, bytes, int, int], tuple[int, list[tuple[int, bytes, bytes]], int]
]

# inflate: a callable (payload and tail -> content), or for context takeover the decoder, its
# window and what finishes a message after a BFINAL block (deflate.Inflater.fast_inflate).
Inflate = Callable[[bytes], bytes] | tuple["zlib._Decompress", bytearray, Callable[[bytes], bytes]]
RelayDeflated = Callable[
    [Buffer, bool, int, int, bytes, int, Inflate, int],
    tuple[int, bytes | None, int, int, tuple[int, str] | BaseException | None],
]
# One message of whole_deflated: (opcode, content, compressed payload or None, out).
WholeDeflatedFrame = tuple[int, bytes, bytes | None, bytes]
WholeDeflated = Callable[
    [Buffer, bool, int, int, bytes, int, Inflate, int, int],
    tuple[int, list[WholeDeflatedFrame], int, tuple[int, str] | BaseException | None],
]

_SIMPLE_FIRST_BYTES = (0x81, 0x82)  # FIN, no RSV bits, text or binary
_COMPRESSED_FIRST_BYTES = (0xC1, 0xC2)  # the same with RSV1: permessage-deflate
_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.2
UTF8_ERROR = (1007, "invalid UTF-8 in a text message")
# What one event or frame counts against a bound besides its content: the objects that hold
# it, and what it becomes when its turn comes (a compressed 9-byte frame can inflate to a
# kilobyte message). The whole walks' budget (FRAME_COST in _speedups.c), the reader's
# READ_BUDGET and the hooks' backlog (HOOK_BACKLOG) all count it.
EVENT_COST = 256


def relay_frames_py(
    data: Buffer, masked: bool, max_frame: int, max_message: int, keys: bytes, key_pos: int
) -> tuple[int, bytes | None, int, int]:
    """The pure-Python twin of ``_speedups.relay_frames`` (see the module doc)."""
    if key_pos < 0:
        raise ValueError("relay_frames() key_pos must not be negative")
    data = bytes(data)
    limit = min(max_frame, max_message)
    position = 0
    frames = 0
    out: list[bytes] = []
    while (bounds := _simple_frame(data, position, masked, limit)) is not None:
        start, end = bounds
        text = data[position] == 0x81
        if masked:
            if key_pos + 4 > len(keys):
                break
            body = bytearray(data[start:end])
            masking.mask(body, data[start - 4 : start], 0)
            if text and not _valid_utf8(body):
                break
            key = keys[key_pos : key_pos + 4]
            masking.mask(body, key, 0)
            key_pos += 4
            out += (data[position : start - 4], key, bytes(body))
        elif text and not _valid_utf8(data[start:end]):
            break
        position = end
        frames += 1
    if not masked or position == 0:
        return position, None, frames, key_pos
    return position, b"".join(out), frames, key_pos


def relay_frames_recorded_py(
    data: Buffer,
    masked: bool,
    max_frame: int,
    max_message: int,
    keys: bytes,
    key_pos: int,
    keep: int,
) -> tuple[int, bytes | None, int, list[tuple[int, int, bytes]]]:
    """The pure-Python twin of ``_speedups.relay_frames_recorded`` (see the module doc)."""
    if key_pos < 0:
        raise ValueError("relay_frames_recorded() key_pos must not be negative")
    data = bytes(data)
    limit = min(max_frame, max_message)
    position = 0
    out: list[bytes] = []
    records: list[tuple[int, int, bytes]] = []
    while (bounds := _simple_frame(data, position, masked, limit)) is not None:
        start, end = bounds
        opcode = data[position] & 0x0F
        if masked:
            if key_pos + 4 > len(keys):
                break
            body = bytearray(data[start:end])
            masking.mask(body, data[start - 4 : start], 0)
            clear = bytes(body)
        else:
            clear = data[start:end]
        if opcode == 0x1 and not _valid_utf8(clear):
            break
        records.append((opcode, end - start, clear if keep < 0 else clear[:keep]))
        if masked:
            key = keys[key_pos : key_pos + 4]
            masking.mask(body, key, 0)
            key_pos += 4
            out += (data[position : start - 4], key, bytes(body))
        position = end
    if not masked or position == 0:
        return position, None, key_pos, records
    return position, b"".join(out), key_pos, records


def whole_frames_py(
    data: Buffer,
    masked: bool,
    max_frame: int,
    max_message: int,
    keys: bytes,
    key_pos: int,
    budget: int,
) -> tuple[int, list[tuple[int, bytes, bytes]], int]:
    """The pure-Python twin of ``_speedups.whole_frames`` (see the module doc)."""
    if key_pos < 0:
        raise ValueError("whole_frames() key_pos must not be negative")
    data = bytes(data)
    limit = min(max_frame, max_message)
    position = 0
    frames: list[tuple[int, bytes, bytes]] = []
    while (bounds := _simple_frame(data, position, masked, limit)) is not None:
        start, end = bounds
        opcode = data[position] & 0x0F
        if masked:
            if key_pos + 4 > len(keys):
                break
            body = bytearray(data[start:end])
            masking.mask(body, data[start - 4 : start], 0)
            clear = bytes(body)
        else:
            clear = data[start:end]
        if opcode == 0x1 and not _valid_utf8(clear):
            break
        if masked:
            key = keys[key_pos : key_pos + 4]
            masking.mask(body, key, 0)
            key_pos += 4
            out = data[position : start - 4] + key + bytes(body)
        else:
            out = data[position:end]
        frames.append((opcode, clear, out))
        position = end
        budget -= len(clear) + EVENT_COST
        if budget <= 0:
            break
    return position, frames, key_pos


def relay_deflated_py(
    data: Buffer,
    masked: bool,
    max_frame: int,
    max_message: int,
    keys: bytes,
    key_pos: int,
    inflate: Inflate,
    max_compressed: int,
) -> tuple[int, bytes | None, int, int, tuple[int, str] | BaseException | None]:
    """The pure-Python twin of ``_speedups.relay_deflated`` (see the module doc)."""
    if key_pos < 0:
        raise ValueError("relay_deflated() key_pos must not be negative")
    data = bytes(data)
    limits = min(max_frame, max_message), min(max_frame, max_compressed)
    position = 0
    frames = 0
    out: list[bytes] = []
    error: tuple[int, str] | BaseException | None = None
    while position < len(data):
        compressed = data[position] in _COMPRESSED_FIRST_BYTES
        frame = _deflated_frame(
            data, position, masked, limits[compressed], compressed, keys, key_pos
        )
        if frame is None:
            break
        start, end, body = frame
        text = data[position] & 0x0F == 0x1
        ended = False
        if compressed:
            _, ended, error = _inflate_checked(inflate, bytes(body), text, max_message)
            if error is not None:
                break
        elif text and not _valid_utf8(body):
            break
        if masked:
            key = keys[key_pos : key_pos + 4]
            masking.mask(body, key, 0)
            key_pos += 4
            out += (data[position : start - 4], key, bytes(body))
        position = end
        frames += 1
        if ended:
            break  # the decoder was replaced: the caller asks for the new one
    if not masked or position == 0:
        return position, None, frames, key_pos, error
    return position, b"".join(out), frames, key_pos, error


def whole_deflated_py(
    data: Buffer,
    masked: bool,
    max_frame: int,
    max_message: int,
    keys: bytes,
    key_pos: int,
    inflate: Inflate,
    max_compressed: int,
    budget: int,
) -> tuple[int, list[WholeDeflatedFrame], int, tuple[int, str] | BaseException | None]:
    """The pure-Python twin of ``_speedups.whole_deflated`` (see the module doc)."""
    if key_pos < 0:
        raise ValueError("whole_deflated() key_pos must not be negative")
    data = bytes(data)
    limits = min(max_frame, max_message), min(max_frame, max_compressed)
    position = 0
    frames: list[WholeDeflatedFrame] = []
    error: tuple[int, str] | BaseException | None = None
    while position < len(data):
        compressed = data[position] in _COMPRESSED_FIRST_BYTES
        frame = _deflated_frame(
            data, position, masked, limits[compressed], compressed, keys, key_pos
        )
        if frame is None:
            break
        start, end, body = frame
        opcode = data[position] & 0x0F
        clear = bytes(body)
        ended = False
        wire: bytes | None = None
        if compressed:
            content, ended, error = _inflate_checked(inflate, clear, opcode == 0x1, max_message)
            if error is not None:
                break
            wire = clear
        else:
            if opcode == 0x1 and not _valid_utf8(clear):
                break
            content = clear
        if masked:
            key = keys[key_pos : key_pos + 4]
            masking.mask(body, key, 0)
            key_pos += 4
            out = data[position : start - 4] + key + bytes(body)
        else:
            out = data[position:end]
        frames.append((opcode, content, wire, out))
        position = end
        budget -= len(content) + EVENT_COST
        if ended or budget <= 0:
            break  # ended: the decoder was replaced, the caller asks for the new one
    return position, frames, key_pos, error


def _deflated_frame(
    data: bytes,
    position: int,
    masked: bool,
    limit: int,
    compressed: bool,
    keys: bytes,
    key_pos: int,
) -> tuple[int, int, bytearray] | None:
    """The next frame of a walk over compressed frames: where its payload starts and ends,
    and the payload in the clear; None where the walk stops (not a whole simple frame, or out
    of fresh keys before anything is inflated)."""
    bounds = _simple_frame(data, position, masked, limit, compressed)
    if bounds is None:
        return None
    start, end = bounds
    if masked and key_pos + 4 > len(keys):
        return None
    body = bytearray(data[start:end])
    if masked:
        masking.mask(body, data[start - 4 : start], 0)
    return start, end, body


def _inflate_checked(
    inflate: Inflate, clear: bytes, text: bool, max_message: int
) -> tuple[bytes, bool, tuple[int, str] | BaseException | None]:
    """One compressed payload (in the clear, without the RFC 7692 tail) inflated and checked:
    its content, whether a BFINAL block ended it, and what fails the connection, if anything
    (the exception inflating raised, or a close code and reason)."""
    try:
        content, ended = _inflate(inflate, clear + _TAIL if clear else b"")
    except Exception as exc:  # the caller fails the connection with it
        return b"", False, exc
    if len(content) > max_message:  # ruled out by max_compressed; the limit holds
        return b"", False, (1009, f"message inflates beyond {max_message} bytes")
    if text and not _valid_utf8(content):
        return b"", False, UTF8_ERROR
    return content, ended, None


def _inflate(inflate: Inflate, data: bytes) -> tuple[bytes, bool]:
    """A message's content through ``inflate``, and whether a BFINAL block ended it."""
    if not isinstance(inflate, tuple):
        return inflate(data), False
    decoder, window, after_final = inflate
    content = decoder.decompress(data)
    if decoder.eof:
        return after_final(content), True
    if len(content) >= 32768:
        window[:] = content[-32768:]
    else:
        window += content
        if len(window) > 65536:
            del window[:-32768]
    return content, False


def _simple_frame(
    data: bytes, position: int, masked: bool, limit: int, compressed: bool = False
) -> tuple[int, int] | None:
    """Where the payload of the frame at ``position`` starts and ends, when it is a whole,
    final, unextended (``compressed``: RSV1 alone) text or binary frame within ``limit`` in
    its shortest form; else None."""
    available = len(data) - position
    if available < 2:
        return None
    first = _COMPRESSED_FIRST_BYTES if compressed else _SIMPLE_FIRST_BYTES
    if data[position] not in first or bool(data[position + 1] & 0x80) != masked:
        return None
    length = data[position + 1] & 0x7F
    header = 2
    if length == 126:
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if available < 4 or length < 126:
            return None
        header = 4
    elif length == 127:
        length = int.from_bytes(data[position + 2 : position + 10], "big")
        if available < 10 or length < 65536 or length >> 63:
            return None
        header = 10
    if masked:
        header += 4
    if length > limit or header + length > available:
        return None
    return position + header, position + header + length


def _valid_utf8(payload: bytes | bytearray) -> bool:
    try:
        payload.decode("utf-8")  # strict: overlong forms and surrogates are errors too
    except UnicodeDecodeError:
        return False
    return True


relay_frames_c: RelayFrames | None
try:
    from wsproxy.sansio._speedups import relay_frames as relay_frames_c
except ImportError:  # built without a compiler: the pure twin serves
    relay_frames_c = None

relay_frames: RelayFrames = relay_frames_c if relay_frames_c is not None else relay_frames_py

relay_frames_recorded_c: RelayFramesRecorded | None
try:
    from wsproxy.sansio._speedups import relay_frames_recorded as relay_frames_recorded_c
except ImportError:  # pragma: no cover - built without a compiler (as the one above)
    relay_frames_recorded_c = None

relay_frames_recorded: RelayFramesRecorded = (
    relay_frames_recorded_c if relay_frames_recorded_c is not None else relay_frames_recorded_py
)
relay_deflated_c: RelayDeflated | None
try:
    from wsproxy.sansio._speedups import relay_deflated as relay_deflated_c
except ImportError:  # pragma: no cover - built without a compiler (as the one above)
    relay_deflated_c = None

relay_deflated: RelayDeflated = (
    relay_deflated_c if relay_deflated_c is not None else relay_deflated_py
)
whole_frames_c: WholeFrames | None
try:
    from wsproxy.sansio._speedups import whole_frames as whole_frames_c
except ImportError:  # pragma: no cover - built without a compiler (as the one above)
    whole_frames_c = None

whole_frames: WholeFrames = whole_frames_c if whole_frames_c is not None else whole_frames_py
whole_deflated_c: WholeDeflated | None
try:
    from wsproxy.sansio._speedups import whole_deflated as whole_deflated_c
except ImportError:  # pragma: no cover - built without a compiler (as the one above)
    whole_deflated_c = None

whole_deflated: WholeDeflated = (
    whole_deflated_c if whole_deflated_c is not None else whole_deflated_py
)
IMPLEMENTATION = "c" if relay_frames_c is not None else "python"


class MaskKeys:
    """Fresh masking keys (RFC 6455 5.3: unpredictable, so from ``os.urandom``), drawn in
    blocks: one system call per ``BLOCK // 4`` keys instead of one per frame."""

    BLOCK = 4096

    __slots__ = ("block", "position")

    def __init__(self) -> None:
        self.block = os.urandom(self.BLOCK)
        self.position = 0

    def take(self) -> bytes:
        """One key."""
        if self.position + 4 > len(self.block):
            self.refill()
        start = self.position
        self.position = start + 4
        return self.block[start : start + 4]

    def refill(self) -> None:
        """A new block: every key of the old one is used or thrown away, never used twice."""
        self.block = os.urandom(self.BLOCK)
        self.position = 0


# One source for the whole process: a per-connection block would cost 4 KiB per WebSocket.
MASK_KEYS = MaskKeys()
