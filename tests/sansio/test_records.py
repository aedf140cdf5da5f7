"""records.py: frame records, the joiner that holds content once, and the pieces a streamed
frame is recorded in."""

from __future__ import annotations

import pytest

from wsproxy.sansio import records
from wsproxy.sansio.events import DataChunk
from wsproxy.sansio.frames import Opcode
from wsproxy.sansio.legs import Side
from wsproxy.sansio.records import PREVIEW, FrameRecord, Joiner, StreamRecorder, utf8_boundary

TEXT, BINARY = Opcode.TEXT, Opcode.BINARY
CLIENT = Side.CLIENT


def chunk(data: bytes, *, start: bool, end: bool, length: int, opcode: int = BINARY) -> DataChunk:
    """A piece of one frame that is a whole message, uncompressed and unmasked."""
    return DataChunk(opcode, opcode, True, 0, length, data, data, start, end, False)


def record(
    payload: bytes, length: int, offset: int = 0, more: bool = False, **kw: object
) -> FrameRecord:
    fields: dict[str, object] = {"opcode": BINARY, "message_opcode": BINARY}
    fields.update(kw)
    return FrameRecord(
        side=CLIENT,
        fin=True,
        rsv=0,
        length=length,
        payload=payload,
        compressed=False,
        offset=offset,
        more=more,
        **fields,  # type: ignore[arg-type]
    )


def test_preview_is_the_first_bytes() -> None:
    full = record(bytes(range(100)), 100)
    assert full.preview == bytes(range(PREVIEW))
    assert record(b"ab", 2).preview == b"ab"


def test_joiner_keeps_one_piece_as_it_is_and_joins_more() -> None:
    joiner = Joiner()
    assert (joiner.take(), joiner.size) == (b"", 0)
    piece = b"x" * 10
    joiner.write(piece)
    joiner.write(b"")  # nothing to add
    assert joiner.size == 10
    assert joiner.take() is piece
    for part in (b"ab", b"cd", b"ef"):
        joiner.write(part)
    assert joiner.size == 6
    assert joiner.take() == b"abcdef"
    assert joiner.size == 0
    joiner.write(b"again")
    assert joiner.take() == b"again"


def test_without_full_payloads_a_frame_is_recorded_with_its_preview() -> None:
    recorder = StreamRecorder()
    emitted: list[FrameRecord] = []
    first = bytes(range(100))
    recorder.chunk(
        CLIENT, chunk(first, start=True, end=False, length=150), "forwarded", False, emitted.append
    )
    last = chunk(b"z" * 50, start=False, end=True, length=150)
    recorder.chunk(CLIENT, last, "forwarded", False, emitted.append)
    assert emitted == []
    end = recorder.frame_end(CLIENT, last, "forwarded", None, False)
    assert end == record(first[:PREVIEW], 150)


def test_full_payloads_held_until_a_piece_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "RECORD_PIECE", 4)
    recorder = StreamRecorder()
    emitted: list[FrameRecord] = []

    def feed(data: bytes, start: bool = False, end: bool = False) -> DataChunk:
        piece = chunk(data, start=start, end=end, length=12)
        recorder.chunk(CLIENT, piece, "forwarded", True, emitted.append)
        return piece

    feed(b"", start=True)  # an empty piece holds nothing
    feed(b"ab")
    assert emitted == []
    # A chunk of a piece or more after smaller ones: those go as one piece, it as another.
    feed(b"cdefgh")
    assert emitted == [record(b"ab", 12, 0, True), record(b"cdefgh", 12, 2, True)]
    last = feed(b"ijkl", end=True)  # the frame's end is recorded by frame_end
    assert len(emitted) == 2
    assert recorder.frame_end(CLIENT, last, "forwarded", None, True) == record(b"ijkl", 12, 8)
    # The next frame starts at offset 0 again.
    again = chunk(b"xy", start=True, end=True, length=2)
    recorder.chunk(CLIENT, again, "dropped", True, emitted.append)
    assert recorder.frame_end(CLIENT, again, "dropped", "proxy", True) == record(
        b"xy", 2, verdict="dropped", by="proxy"
    )


def test_pieces_of_a_dropped_frame_name_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "RECORD_PIECE", 2)
    recorder = StreamRecorder()
    emitted: list[FrameRecord] = []
    piece = chunk(b"abc", start=True, end=False, length=5)
    recorder.chunk(CLIENT, piece, "dropped", True, emitted.append)
    assert emitted == [record(b"abc", 5, 0, True, verdict="dropped", by="proxy")]


def test_a_text_piece_ends_before_a_cut_character(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "RECORD_PIECE", 2)
    recorder = StreamRecorder()
    emitted: list[FrameRecord] = []
    check = "✓".encode()  # three bytes

    def feed(data: bytes, start: bool = False, end: bool = False) -> DataChunk:
        piece = chunk(data, start=start, end=end, length=10, opcode=TEXT)
        recorder.chunk(CLIENT, piece, "forwarded", True, emitted.append)
        return piece

    feed(check[:2], start=True)  # nothing but the start of a character: nothing to record
    assert emitted == []
    # The rest of the character comes in a chunk of a piece or more: the character is
    # recorded whole (it was cut in two pieces of invalid UTF-8, the start recorded alone).
    feed(check[2:] + b"a")
    assert emitted == [record(check + b"a", 10, 0, True, opcode=TEXT, message_opcode=TEXT)]
    # After a whole character, a chunk of a piece or more is recorded as it is.
    feed(b"b")
    feed(b"cdef")
    assert emitted[1:] == [
        record(b"b", 10, 4, True, opcode=TEXT, message_opcode=TEXT),
        record(b"cdef", 10, 5, True, opcode=TEXT, message_opcode=TEXT),
    ]
    last = feed(b"g", end=True)
    assert recorder.frame_end(CLIENT, last, "forwarded", None, True) == record(
        b"g", 10, 9, opcode=TEXT, message_opcode=TEXT
    )


@pytest.mark.parametrize(
    ("data", "end", "cut"),
    [
        (b"", 0, 0),
        (b"\x80", 1, 1),  # a lone continuation byte: no lead byte before it, cut where asked
        (b"a\x80\x80\x80", 4, 4),  # more continuation bytes than a character has
        ("é".encode(), 1, 0),
        ("é".encode(), 2, 2),
        ("✓".encode(), 2, 0),
        ("😀".encode(), 3, 0),
        ("😀".encode(), 4, 4),
        (b"\xf8\x80", 2, 2),  # not a lead byte of UTF-8
    ],
)
def test_utf8_boundary(data: bytes, end: int, cut: int) -> None:
    assert utf8_boundary(data, end) == cut
