"""Frames recorded in pieces (JSONL version 2): written as short lines, read back joined."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from wsproxy.capture import jsonl, jsonlframes
from wsproxy.capture.messages import reassemble
from wsproxy.capture.reader import join_frames, read_capture
from wsproxy.capture.records import Frame
from wsproxy.capture.show import show
from wsproxy.sansio.relay import FrameRecord, Side

PIECE = jsonl.PIECE
TEXT, BINARY, CONT, PING = 0x1, 0x2, 0x0, 0x9
CLIENT, SERVER = Side.CLIENT, Side.SERVER


def record(
    side: Side,
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    message_opcode: int | None = None,
    verdict: str = "forwarded",
    original: bytes | None = None,
    offset: int = 0,
    more: bool = False,
    length: int | None = None,
) -> FrameRecord:
    return FrameRecord(
        side,
        opcode,
        fin,
        0,
        len(payload) if length is None else length,
        payload,
        False,
        opcode if message_opcode is None else message_opcode,
        verdict,
        "p" if verdict in ("modified", "dropped") else None,
        original,
        offset,
        more,
    )


def lines_of(items: list[tuple[str, FrameRecord]]) -> list[bytes]:
    data = b"".join(part for conn, r in items for part in jsonlframes.frame_line(conn, 1.0, r))
    return data.splitlines(keepends=True)


def capture(path: Path, lines: list[bytes]) -> Path:
    head = jsonl.dumps(jsonl.header("test", None, 1.0)).encode() + b"\n"
    path.write_bytes(head + b"".join(lines))
    return path


def frames(path: Path) -> list[Frame]:
    return [r for r in read_capture(path) if isinstance(r, Frame)]


def streamed(side: Side, opcode: int, content: bytes, size: int) -> list[FrameRecord]:
    """The relay's records of one frame streamed in pieces of ``size``."""
    cuts = list(range(0, len(content), size))
    return [
        record(
            side,
            opcode,
            content[start : start + size],
            offset=start,
            more=start != cuts[-1],
            length=len(content),
        )
        for start in cuts
    ]


def test_a_large_record_is_written_in_short_lines(tmp_path: Path) -> None:
    """A changed 600 KiB message (a plugin's message hook: recorded whole) goes into the file
    as lines of at most PIECE bytes of content; its original is cut the same way."""
    payload = bytes(range(256)) * (600 * 1024 // 256)
    original = bytes(range(255, -1, -1)) * (300 * 1024 // 256)
    r = record(CLIENT, BINARY, payload, verdict="modified", original=original)
    lines = lines_of([("c1", r)])
    assert len(lines) == 3
    objs = [json.loads(line) for line in lines]
    assert [(o["offset"], o["more"]) for o in objs] == [
        (0, True),
        (PIECE, True),
        (2 * PIECE, False),
    ]
    assert all(o["length"] == len(payload) and o["verdict"] == "modified" for o in objs)
    assert ["original_b64" in o for o in objs] == [True, True, False]
    assert all(len(line) < PIECE * 4 // 3 * 2 + 1000 for line in lines)
    path = capture(tmp_path / "big.jsonl", lines)
    pieces = frames(path)
    assert all(len(f.payload) <= PIECE for f in pieces)
    (message,) = reassemble(pieces)
    assert (message.content, message.original, message.verdict) == (payload, original, "modified")
    (whole,) = [r for r in join_frames(read_capture(path)) if isinstance(r, Frame)]
    assert (whole.payload, whole.original, whole.more, whole.offset) == (
        payload,
        original,
        False,
        0,
    )
    assert whole.length == len(payload)


def test_a_small_payload_with_a_large_original(tmp_path: Path) -> None:
    """Lines that carry only original content (the payload ended) still join."""
    original = b"o" * (2 * PIECE + 10)
    r = record(SERVER, TEXT, b"", verdict="modified", original=original)
    lines = lines_of([("c1", r)])
    assert len(lines) == 3
    (message,) = reassemble(frames(capture(tmp_path / "o.jsonl", lines)))
    assert (message.content, message.original) == (b"", original)


def test_text_lines_are_cut_between_characters(tmp_path: Path) -> None:
    text = ("aé✓😀" * (PIECE // 5)).encode()
    lines = lines_of([("c1", record(CLIENT, TEXT, text))])
    assert len(lines) == 2
    assert all("text" in json.loads(line) for line in lines)
    (message,) = reassemble(frames(capture(tmp_path / "t.jsonl", lines)))
    assert message.content == text


def test_pieces_join_around_other_records(tmp_path: Path) -> None:
    """A client frame streamed in pieces, with between its pieces: a ping from the client,
    a large message injected towards the server (recorded as from the client, in pieces of
    its own), and another connection's frames; then the message's last fragment."""
    first = bytes(range(256)) * 1000  # 256,000 bytes in pieces of 100,000
    pieces = streamed(CLIENT, BINARY, first, 100_000)
    for r in pieces:
        r.fin = False
    injected = b"i" * (PIECE + 5)
    last = record(CLIENT, CONT, b"end", message_opcode=BINARY)
    items = [
        ("c1", pieces[0]),
        ("c1", record(CLIENT, PING, b"ping")),
        ("c2", record(CLIENT, TEXT, b"other")),
        ("c1", pieces[1]),
        ("c1", record(CLIENT, TEXT, injected, verdict="injected")),
        ("c1", record(SERVER, TEXT, b"answer")),
        ("c1", pieces[2]),
        ("c1", last),
    ]
    path = capture(tmp_path / "p.jsonl", lines_of(items))
    got = [(m.conn, m.direction, m.verdict, m.content) for m in reassemble(frames(path))]
    assert got == [
        ("c2", "client", "forwarded", b"other"),
        ("c1", "client", "injected", injected),
        ("c1", "server", "forwarded", b"answer"),
        ("c1", "client", "forwarded", first + b"end"),
    ]
    joined = [r for r in join_frames(read_capture(path)) if isinstance(r, Frame)]
    assert [(f.conn, f.opcode, f.payload) for f in joined if f.direction == "client"] == [
        ("c1", PING, b"ping"),
        ("c2", TEXT, b"other"),
        ("c1", TEXT, injected),
        ("c1", BINARY, first),
        ("c1", CONT, b"end"),
    ]


def test_a_lost_piece_loses_its_frame_only(tmp_path: Path) -> None:
    """A piece missing (the writer could not keep up): that message is not rebuilt, nothing
    wrong is made of it, and the next message is whole."""
    content = bytes(range(256)) * 1000
    pieces = streamed(SERVER, BINARY, content, 100_000)
    items = [("c1", r) for r in pieces] + [("c1", record(SERVER, TEXT, b"next"))]
    lines = lines_of(items)
    del lines[1]
    path = capture(tmp_path / "lost.jsonl", lines)
    assert [m.content for m in reassemble(frames(path))] == [b"next"]
    joined = [r for r in join_frames(read_capture(path)) if isinstance(r, Frame)]
    assert [f.payload for f in joined] == [b"next"]
    # The file cut short after a frame's first piece: nothing of it either.
    path = capture(tmp_path / "cut.jsonl", lines_of([("c1", pieces[0])]))
    assert list(reassemble(frames(path))) == []
    assert [r for r in join_frames(read_capture(path)) if isinstance(r, Frame)] == []


def test_version_1_frames_read_as_one_piece() -> None:
    line = (
        '{"type":"frame","conn":"1","ts":1.0,"direction":"client","opcode":"TEXT",'
        '"message_opcode":"TEXT","fin":true,"length":2,"text":"hi","verdict":"forwarded"}'
    )
    frame = jsonl.decode_line(line)
    assert isinstance(frame, Frame) and (frame.payload, frame.offset, frame.more) == (
        b"hi",
        0,
        False,
    )


def run_show(*argv: str) -> list[str]:
    out = io.StringIO()
    assert show(list(argv), out) == 0
    return out.getvalue().splitlines()


@pytest.mark.parametrize("full", [False, True])
def test_show_streams_a_frame_in_pieces(tmp_path: Path, full: bool) -> None:
    text = b"abcdefghij" * 30_000  # 300,000 bytes in pieces of 100,000
    items: list[tuple[str, FrameRecord]] = [
        ("c1", r) for r in streamed(CLIENT, TEXT, text, 100_000)
    ]
    items.insert(2, ("c1", record(CLIENT, PING, b"between")))
    path = capture(tmp_path / "s.jsonl", lines_of(items))
    lines = run_show(str(path), *(["--full"] if full else []))
    data = [line for line in lines if " TEXT " in line]
    assert f" len={len(text)} " in data[0] and data[0].endswith("[from byte 0, more follows]")
    assert any(" PING " in line for line in lines)
    if full:
        assert len(data) == 3
        assert data[1].endswith("[from byte 100000, more follows]")
        assert data[2].endswith("[from byte 200000]")
        assert all("'" + "abcdefghij" * 100 in line for line in data)
    else:
        assert len(data) == 1  # the frame is shown once, by its first piece
        assert "'abcdefghijabcdefghijabcdefghijabcdefghij…'" in data[0]
    grep = run_show(str(path), "--grep", "abc")
    assert len(grep) == 3  # each piece matches on its own
