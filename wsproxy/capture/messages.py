"""Frames back into messages: what replay sends and compares, and what a HAR file lists.

Reassembly follows RFC 6455 5.4: a message is a TEXT or BINARY frame and the CONT frames after
it in the same direction, up to the one with FIN. Control frames are not messages. An injected
message is recorded whole, as one frame, possibly between two fragments of a message travelling
the same way (the relay queues the injection, the capture records it when it was asked for), so
it never joins or interrupts a message being reassembled.

A message's verdict is "modified" if any of its frames was changed, "dropped" if it was dropped,
"injected" if the proxy made it, else "forwarded"; ``original`` is its content as the peer sent
it (kept on the first frame of a modified message).

A frame recorded in pieces (``Frame.more``, ``Frame.offset``) is joined on the way: its pieces
follow one another among the frames of their direction (an injected message may come between:
it is assembled on its own). A piece that does not start where the previous one ended means
records were lost: the message is abandoned, like one whose final frame is missing.
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
    __slots__ = (
        "by",
        "compressed",
        "conn",
        "more",
        "offset",
        "opcode",
        "original",
        "parts",
        "started",
        "verdict",
    )

    def __init__(self, frame: Frame) -> None:
        self.conn = frame.conn
        self.opcode = frame.opcode
        self.parts: list[bytes] = []
        self.verdict = "forwarded"
        self.by: str | None = None
        self.original: list[bytes] | None = None
        self.compressed = frame.compressed
        self.started = frame.time
        # The current frame is in pieces and more of them follow; where the next one starts.
        self.more = False
        self.offset = 0


class Reassembler:
    """Feed frames in file order; get messages as their last frame arrives."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str, bool], _Partial] = {}

    def feed(self, frame: Frame) -> Message | None:
        if frame.opcode >= 0x8:
            return None
        key = (frame.conn, frame.direction, frame.verdict == "injected")
        partial = self._open.get(key)
        if partial is not None and partial.more:
            if frame.offset != partial.offset:
                # A piece is missing (lost records): this message cannot be rebuilt.
                del self._open[key]
                partial = None
                if frame.offset:
                    return None
        elif frame.offset:
            return None  # a piece of a frame whose start is missing
        if partial is None or (not partial.more and (key[2] or frame.opcode != CONT)):
            # A new message; an unfinished one before it (cut off by a crash or a lost record)
            # is abandoned, as a receiver would fail the connection.
            partial = self._open[key] = _Partial(
                frame if frame.opcode != CONT else _as_start(frame)
            )
        partial.parts.append(frame.payload)
        if frame.original is not None:
            if partial.original is None:
                partial.original = []
            partial.original.append(frame.original)
        partial.more = frame.more
        partial.offset = frame.offset + len(frame.payload) if frame.more else 0
        if frame.verdict != "forwarded" and partial.verdict != "dropped":
            partial.verdict = frame.verdict
            partial.by = frame.by or partial.by
        if frame.more or not frame.fin:
            return None
        del self._open[key]
        original = None
        if partial.verdict == "modified" and partial.original is not None:
            original = _join(partial.original)
        return Message(
            partial.conn,
            frame.time,
            frame.direction,
            partial.opcode,
            _join(partial.parts),
            partial.verdict,
            partial.by,
            original,
            partial.compressed,
            partial.started,
        )


def _join(parts: list[bytes]) -> bytes:
    return parts[0] if len(parts) == 1 else b"".join(parts)


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
