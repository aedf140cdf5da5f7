"""What a leg's ``FrameReader`` reports: pieces of data frames as they arrive, whole control
frames, and a violation of the protocol (with the close code it calls for)."""

from __future__ import annotations

from dataclasses import dataclass

from wsproxy.sansio.frames import apply_mask


@dataclass(slots=True)
class DataChunk:
    """A piece of a data frame's payload, as it arrived.

    ``data`` is the unmasked payload as on the wire (still compressed if the message is);
    ``content`` is the same piece decompressed (the same object when not compressed).
    A frame that arrived whole is a single chunk with ``frame_start`` and ``frame_end`` set.
    """

    opcode: int
    message_opcode: int
    fin: bool
    rsv: int
    frame_length: int
    data: bytes
    content: bytes
    frame_start: bool
    frame_end: bool
    compressed: bool
    # Set when ``data`` is still masked (``FrameReader.keep_binary_masked``): the key and the
    # position of ``data`` in its frame. ``content`` is then masked too; see ``preview``.
    mask_key: bytes = b""
    mask_offset: int = 0

    @property
    def message_end(self) -> bool:
        return self.fin and self.frame_end


@dataclass(slots=True)
class ControlFrame:
    """A whole close, ping or pong frame; a close carries its parsed code and reason."""

    opcode: int
    payload: bytes
    close_code: int | None = None
    close_reason: str = ""


@dataclass(slots=True)
class Violation:
    """The peer broke the protocol; it must be closed with ``code``."""

    code: int
    reason: str


Event = DataChunk | ControlFrame | Violation


def clear_preview(chunk: DataChunk, size: int = 64) -> bytes:
    """The first bytes of a chunk's content, unmasked if it is still masked."""
    if chunk.mask_key:
        return apply_mask(chunk.data[:size], chunk.mask_key, chunk.mask_offset)
    return chunk.content[:size]
