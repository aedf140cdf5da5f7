"""What the relay reports about each frame, for the log and captures, and how a frame that
streams through is reported in pieces so nothing holds it whole.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wsproxy.sansio.events import DataChunk, clear_preview
from wsproxy.sansio.frames import Opcode

if TYPE_CHECKING:
    from wsproxy.sansio.legs import Side

# With full payloads (captures) a frame's content is recorded in pieces of at most this many
# bytes as it streams, so a frame stalled half-way holds at most one piece for the capture
# instead of everything received so far. 256 KiB is one read of the shell's (peer.READ_SIZE):
# the record costs about what relaying it does.
RECORD_PIECE = 256 * 1024
PREVIEW = 64  # bytes of content a record keeps when only the log listens (RelayConfig changes it)


@dataclass(slots=True)
class FrameRecord:
    """A relayed (or dropped) frame, for the log and captures; built only when someone listens.

    ``payload`` is the frame's content, decompressed: its first 64 bytes, or all of it when
    the relay records full payloads (captures). ``length`` is the payload length on the wire.
    ``verdict`` is what happened to it: "forwarded", "modified" (``original`` then holds the
    message's or frame's content before the change), "dropped" (``by`` names who dropped it:
    a plugin, or "proxy" when the other side was already closing) or "injected".

    With full payloads, a frame that streams through comes as several records, one per piece
    of its content (at most ``RECORD_PIECE`` bytes, cut between two UTF-8 characters in a text
    message): ``offset`` is where the piece starts in the frame's content and ``more`` says
    that more pieces of the same frame follow. A frame recorded whole has offset 0 and ``more``
    False. Every piece carries the frame's fields; its verdict is the piece's own (a frame can
    start "forwarded" and end "dropped" when the other side starts closing).
    """

    side: Side
    opcode: int
    fin: bool
    rsv: int
    length: int
    payload: bytes
    compressed: bool
    message_opcode: int
    verdict: str = "forwarded"
    by: str | None = None
    original: bytes | None = None
    offset: int = 0
    more: bool = False

    @property
    def preview(self) -> bytes:
        return self.payload[:PREVIEW]


class Joiner:
    """Pieces of content joined as they come, held once.

    ``b"".join`` at the end would hold every piece and the result together, twice the
    content. A ``BytesIO`` grows its buffer in place (realloc; large blocks are remapped, not
    copied) and ``getvalue`` hands that buffer over as the bytes object without a copy when
    nothing else shares it, so a 64 MiB message costs 64 MiB plus one piece. A single piece
    is kept as it is.
    """

    __slots__ = ("_buffer", "_first", "size")

    def __init__(self) -> None:
        self._first = b""
        self._buffer: io.BytesIO | None = None
        self.size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self._buffer is not None:
            self._buffer.write(data)
        elif not self._first:
            self._first = data
        else:
            self._buffer = io.BytesIO()
            self._buffer.write(self._first)
            self._buffer.write(data)
            self._first = b""

    def take(self) -> bytes:
        """The content joined; the joiner is empty again."""
        out = self._first if self._buffer is None else self._buffer.getvalue()
        self._first, self._buffer, self.size = b"", None, 0
        return out


class StreamRecorder:
    """The records of the frames one peer sends through the pass-through path.

    Only a preview is kept when the log listens; with full payloads the content is kept until
    ``RECORD_PIECE`` bytes are there, then recorded as a piece (``more`` set), so a frame
    stalled half-way holds less than a piece.
    """

    __slots__ = ("_offset", "_parts", "_preview", "_size", "preview_size")

    def __init__(self, preview_size: int = PREVIEW) -> None:
        self.preview_size = preview_size  # bytes kept of each frame when only the log listens
        self._parts: list[bytes] = []
        self._size = 0
        self._offset = 0  # where the content not yet recorded starts in the frame
        self._preview = b""

    def chunk(
        self,
        side: Side,
        chunk: DataChunk,
        verdict: str,
        full: bool,
        emit: Callable[[FrameRecord], None],
    ) -> None:
        """Take one chunk's content; emits a piece when enough is held (``full`` only)."""
        if not full:
            if chunk.frame_start:
                self._preview = clear_preview(chunk, self.preview_size)
            return
        if not chunk.content:
            return
        self._parts.append(chunk.content)
        self._size += len(chunk.content)
        if self._size >= RECORD_PIECE and not chunk.frame_end:
            self._pieces(side, chunk, verdict, emit)

    def frame_end(
        self, side: Side, chunk: DataChunk, verdict: str, by: str | None, full: bool
    ) -> FrameRecord:
        """The record of a frame that just ended (its last piece, with full payloads)."""
        offset = 0
        if full:
            parts = self._parts
            payload = parts[0] if len(parts) == 1 else b"".join(parts)
            parts.clear()
            offset = self._offset
            self._size = self._offset = 0
        else:
            payload = self._preview
        return _chunk_record(side, chunk, payload, verdict, by, offset, False)

    def _pieces(
        self, side: Side, chunk: DataChunk, verdict: str, emit: Callable[[FrameRecord], None]
    ) -> None:
        """Record the content held of a frame still streaming.

        The chunks held are joined into one piece (each is at most one read, so a piece is
        about RECORD_PIECE bytes), except that a chunk already larger than a piece (content
        inflated far beyond its read) is recorded as it is rather than copied: the capture
        writer cuts long records into short lines without copying. In a text message the end
        of a character cut in two waits for the next piece, so every piece is valid text (a
        large chunk that brings the end of such a character is then joined to its start).
        """
        parts = self._parts
        text = chunk.message_opcode == Opcode.TEXT
        if len(parts) > 1 and len(parts[-1]) >= RECORD_PIECE:
            head = b"".join(parts[:-1])
            # Not when ``head`` ends inside a character (the carry of the last piece): it
            # would be recorded alone, and the large chunk start with the character's end.
            if not text or utf8_boundary(head, len(head)) == len(head):
                self._piece(side, chunk, head, verdict, emit)
                parts[:] = [parts[-1]]
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        carry = b""
        if text:
            cut = utf8_boundary(data, len(data))
            if cut < len(data):
                data, carry = data[:cut], data[cut:]
        self._piece(side, chunk, data, verdict, emit)
        if carry:
            parts.append(carry)
        self._size = len(carry)

    def _piece(
        self,
        side: Side,
        chunk: DataChunk,
        data: bytes,
        verdict: str,
        emit: Callable[[FrameRecord], None],
    ) -> None:
        if data:
            by = "proxy" if verdict == "dropped" else None
            emit(_chunk_record(side, chunk, data, verdict, by, self._offset, True))
        self._offset += len(data)


def whole_record(
    side: Side,
    opcode: int,
    payload: bytes,
    verdict: str,
    *,
    compressed: bool = False,
    by: str | None = None,
) -> FrameRecord:
    """The record of a whole frame or message as one: a control frame, an injected message,
    a message a plugin dropped."""
    return FrameRecord(
        side=side,
        opcode=opcode,
        fin=True,
        rsv=0,
        length=len(payload),
        payload=payload,
        compressed=compressed,
        message_opcode=opcode,
        verdict=verdict,
        by=by,
    )


def _chunk_record(
    side: Side,
    chunk: DataChunk,
    payload: bytes,
    verdict: str,
    by: str | None,
    offset: int,
    more: bool,
) -> FrameRecord:
    return FrameRecord(
        side=side,
        opcode=chunk.opcode,
        fin=chunk.fin,
        rsv=chunk.rsv,
        length=chunk.frame_length,
        payload=payload,
        compressed=chunk.compressed,
        message_opcode=chunk.message_opcode,
        verdict=verdict,
        by=by,
        offset=offset,
        more=more,
    )


def utf8_boundary(data: bytes | memoryview, end: int) -> int:
    """``end``, moved back to the start of the UTF-8 character that ``data[end - 1]`` (or
    ``data[end]``) belongs to when that character is cut by ``end``; else ``end`` itself.

    RFC 3629 section 3: a lead byte 110xxxxx, 1110xxxx or 11110xxx starts a character of 2,
    3 or 4 bytes; continuation bytes are 10xxxxxx. Only the last three bytes before ``end``
    are looked at, so invalid data is cut anywhere (it is recorded as base64 anyway).
    """
    for back in range(1, 4):
        index = end - back
        if index < 0:
            break
        byte = data[index]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII): does its character fit before end?
            size = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4
            if byte < 0x80 or byte & 0xF8 == 0xF8 or back >= size:
                return end
            return index
    return end
