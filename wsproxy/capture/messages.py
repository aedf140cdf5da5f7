"""Frames back into messages: what replay sends and compares, and what a HAR file lists.

Reassembly follows RFC 6455 5.4: a message is a TEXT or BINARY frame and the CONT frames after
it in the same direction, up to the one with FIN. Control frames are not messages. An injected
message is recorded whole, as one frame, possibly between two fragments of a message travelling
the same way (the relay queues the injection, the capture records it when it was asked for), so
it never joins or interrupts a message being reassembled.

A message's verdict is "modified" if any of its frames was changed, "dropped" if it was dropped,
"injected" if the proxy made it, else "forwarded"; ``original`` is its content as the peer sent
it (kept on the first frame of a modified message).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from wsproxy.capture.records import Frame

TEXT, BINARY, CONT = 0x1, 0x2, 0x0


@dataclass(slots=True)
class Message:
    conn: str
    time: float  # when its last frame passed
    direction: str
    opcode: int  # TEXT or BINARY
    content: bytes  # as forwarded (for "dropped": as the peer sent it)
    verdict: str = "forwarded"
    by: str | None = None
    original: bytes | None = None  # "modified": the content before the change
    compressed: bool = False
    started: float = 0.0  # when its first frame passed

    @property
    def sent(self) -> bytes | None:
        """What the peer actually sent; None for a message the proxy injected."""
        if self.verdict == "injected":
            return None
        if self.verdict == "modified" and self.original is not None:
            return self.original
        return self.content

    @property
    def delivered(self) -> bytes | None:
        """What the other peer got; None for a dropped message."""
        return None if self.verdict == "dropped" else self.content


class _Partial:
    __slots__ = ("by", "compressed", "conn", "opcode", "original", "parts", "started", "verdict")

    def __init__(self, frame: Frame) -> None:
        self.conn = frame.conn
        self.opcode = frame.opcode
        self.parts: list[bytes] = []
        self.verdict = "forwarded"
        self.by: str | None = None
        self.original = frame.original
        self.compressed = frame.compressed
        self.started = frame.time


class Reassembler:
    """Feed frames in file order; get messages as their last frame arrives."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], _Partial] = {}

    def feed(self, frame: Frame) -> Message | None:
        if frame.opcode >= 0x8:
            return None
        if frame.verdict == "injected" and frame.opcode != CONT:
            return Message(
                frame.conn,
                frame.time,
                frame.direction,
                frame.opcode,
                frame.payload,
                "injected",
                started=frame.time,
            )
        key = (frame.conn, frame.direction)
        partial = self._open.get(key)
        if frame.opcode != CONT or partial is None:
            # A new message; an unfinished one before it (cut off by a crash or a lost
            # record) is abandoned, as a receiver would fail the connection.
            partial = self._open[key] = _Partial(
                frame if frame.opcode != CONT else _as_start(frame)
            )
        partial.parts.append(frame.payload)
        if frame.verdict != "forwarded" and partial.verdict != "dropped":
            partial.verdict = frame.verdict
            partial.by = frame.by or partial.by
        if not frame.fin:
            return None
        del self._open[key]
        content = partial.parts[0] if len(partial.parts) == 1 else b"".join(partial.parts)
        return Message(
            partial.conn,
            frame.time,
            frame.direction,
            partial.opcode,
            content,
            partial.verdict,
            partial.by,
            partial.original if partial.verdict == "modified" else None,
            partial.compressed,
            partial.started,
        )


def _as_start(frame: Frame) -> Frame:
    """A CONT frame with no message open (its start was lost): start one with its opcode."""
    opcode = frame.message_opcode if frame.message_opcode in (TEXT, BINARY) else BINARY
    return Frame(frame.conn, frame.time, frame.direction, opcode, b"", original=frame.original)


def reassemble(frames: Iterable[Frame]) -> Iterator[Message]:
    assembler = Reassembler()
    for frame in frames:
        message = assembler.feed(frame)
        if message is not None:
            yield message
