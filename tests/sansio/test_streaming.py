"""The shortcut for large binary frames streaming through a quiet relay
(``FrameReader.take_payload``, ``FrameWriter.payload_out``, ``Relay.receive_fast``): reads
inside such a frame's payload skip the reader's events, and what comes out is exactly what the
general path sends, however the bytes are split into reads."""

from __future__ import annotations

import os
import zlib

import pytest

from tests.sansio.conftest import BIG, Wire, client_bytes, reader, server_bytes
from wsproxy.sansio.commands import Command, Send
from wsproxy.sansio.commands import Wire as WireBytes
from wsproxy.sansio.deflate import DeflateParams
from wsproxy.sansio.endpoint import FrameReader
from wsproxy.sansio.events import ControlFrame, DataChunk, Violation
from wsproxy.sansio.fastpath import MaskKeys
from wsproxy.sansio.frames import RSV1, Opcode
from wsproxy.sansio.relay import STREAM_THRESHOLD, Relay, RelayConfig, Side

TEXT, BINARY, CONT, PING = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION, Opcode.PING
CLIENT, SERVER = Side.CLIENT, Side.SERVER

BIG_FRAME = 3 * STREAM_THRESHOLD + 5  # streamed: over the threshold, not a multiple of 4
FRAMES = [
    Wire(BINARY, os.urandom(BIG_FRAME)),
    Wire(TEXT, b"between"),
    Wire(BINARY, os.urandom(BIG_FRAME + 1), fin=False),  # a fragmented message, streamed
    Wire(PING, b"p"),
    Wire(CONT, os.urandom(STREAM_THRESHOLD + 3)),
    Wire(BINARY, os.urandom(BIG_FRAME + 2)),
]


def relay(**config: object) -> Relay:
    settings: dict[str, object] = {"max_frame_size": BIG, "max_message_size": BIG}
    settings.update(config)
    return Relay(RelayConfig(**settings))  # type: ignore[arg-type]


def sent_to(side: Side, result: WireBytes | list[Command]) -> bytes:
    """The bytes ``receive_fast`` sends ``side``'s peer (the only peer it may send to here)."""
    if not isinstance(result, list):
        return bytes(result)
    out = b""
    for command in result:
        assert isinstance(command, Send) and command.side is side, command
        out += b"".join(command.chunks)
    return out


def frames_read(masked: bool, data: bytes) -> list[Wire]:
    """The frames the receiving peer reads, each reassembled from its chunks."""
    peer = reader(masked)
    frames: list[Wire] = []
    pieces: list[bytes] = []
    for event in peer.receive_data(data):
        assert not isinstance(event, Violation), event
        if isinstance(event, ControlFrame):
            frames.append(Wire(event.opcode, event.payload))
            continue
        assert isinstance(event, DataChunk)
        pieces.append(bytes(event.data))
        if event.frame_end:
            frames.append(Wire(event.opcode, b"".join(pieces), event.fin, event.rsv))
            pieces = []
    return frames


@pytest.mark.parametrize("side", [CLIENT, SERVER])
@pytest.mark.parametrize("step", [1000, 65_537, 100_003, 256_000, 10**7])
def test_frames_come_out_the_same_however_the_reads_split(side: Side, step: int) -> None:
    quiet = relay()
    wire = client_bytes(*FRAMES) if side is CLIENT else server_bytes(*FRAMES)
    out = b""
    for start in range(0, len(wire), step):
        out += sent_to(side.other, quiet.receive_fast(side, wire[start : start + step]))
    assert frames_read(side is CLIENT, out) == FRAMES
    source, target = quiet.leg(side), quiet.leg(side.other)
    assert (source.frames, source.messages) == (len(FRAMES), 4)
    assert source.reader.bytes_received == len(wire)
    assert target.writer.bytes_sent == len(out)
    assert not (target.mid_frame_out or target.out_open)


@pytest.mark.parametrize("side", [CLIENT, SERVER])
def test_a_read_inside_a_payload_goes_on_with_no_events_and_no_copy(side: Side) -> None:
    quiet = relay()
    frames = [Wire(BINARY, os.urandom(BIG_FRAME)), Wire(TEXT, b"next")]
    wire = client_bytes(*frames) if side is CLIENT else server_bytes(*frames)
    first, middle, last = wire[:1000], wire[1000:5000], wire[5000:]
    out = sent_to(side.other, quiet.receive_fast(side, first))
    assert quiet.leg(side.other).mid_frame_out
    passed = quiet.receive_fast(side, middle)
    assert not isinstance(passed, list)  # bytes for the other peer, not commands
    if side is SERVER:
        assert passed is middle  # a server's payload goes on as it came
    out += bytes(passed)
    commands = quiet.receive_fast(side, last)
    assert isinstance(commands, list)
    if side is SERVER:
        # The end of the payload, then the next frame: the end goes on as a view of the read.
        assert isinstance(commands[0], Send) and isinstance(commands[0].chunks[0], memoryview)
    out += sent_to(side.other, commands)
    assert frames_read(side is CLIENT, out) == frames


def test_a_read_across_two_streamed_frames_goes_on_as_views_of_that_read() -> None:
    # The end of one frame, the next one's header and the start of its payload: a server's
    # payload bytes go on as views of the read itself, never of a copy of its rest.
    quiet = relay()
    frames = [Wire(BINARY, os.urandom(BIG_FRAME)), Wire(BINARY, os.urandom(BIG_FRAME))]
    wire = server_bytes(*frames)
    split = 1000
    out = sent_to(CLIENT, quiet.receive_fast(SERVER, wire[:split]))
    across = wire[split : len(wire) - 1000]
    commands = quiet.receive_fast(SERVER, across)
    assert isinstance(commands, list) and len(commands) == 1 and isinstance(commands[0], Send)
    payloads = [chunk for chunk in commands[0].chunks if len(chunk) > 14]  # not the header
    assert len(payloads) == 2
    assert all(isinstance(chunk, memoryview) and chunk.obj is across for chunk in payloads)
    out += sent_to(CLIENT, commands)
    out += sent_to(CLIENT, quiet.receive_fast(SERVER, wire[len(wire) - 1000 :]))
    assert frames_read(False, out) == frames


def test_what_is_injected_while_a_payload_streams_follows_its_frame() -> None:
    quiet = relay()
    frames = [Wire(BINARY, os.urandom(BIG_FRAME))]
    wire = server_bytes(*frames)
    out = sent_to(CLIENT, quiet.receive_fast(SERVER, wire[:1000]))
    out += sent_to(CLIENT, quiet.inject(CLIENT, TEXT, b"news"))
    out += sent_to(CLIENT, quiet.receive_fast(SERVER, wire[1000:]))  # ends the frame exactly
    assert frames_read(False, out) == [*frames, Wire(TEXT, b"news")]


@pytest.mark.parametrize("side", [CLIENT, SERVER])
def test_a_recorded_relay_streams_the_same_bytes_the_general_way(side: Side) -> None:
    """With records the shortcut is off (the recorder reads every chunk): same frames out."""
    recorded = relay(records=True)
    wire = client_bytes(*FRAMES) if side is CLIENT else server_bytes(*FRAMES)
    out = b""
    for start in range(0, len(wire), 100_003):
        for command in recorded.receive(side, wire[start : start + 100_003]):
            if isinstance(command, Send):
                out += b"".join(command.chunks)
    assert frames_read(side is CLIENT, out) == FRAMES


def in_payload(masked: bool, frame: Wire, *, keep_masked: bool = True) -> tuple[FrameReader, bytes]:
    """A reader that has read a frame's header and first bytes, and the rest of the frame."""
    wire = client_bytes(frame) if masked else server_bytes(frame)
    frames = reader(masked)
    frames.keep_binary_masked = keep_masked
    frames.receive_data(wire[:20])
    return frames, wire[20:]


def test_take_payload_returns_the_piece_its_key_and_offset() -> None:
    frame = Wire(BINARY, os.urandom(1000))
    frames, rest = in_payload(True, frame)
    taken = frames.take_payload(rest[:100])
    assert taken is not None
    piece, key, offset, frame_end, fin = taken
    assert (bytes(piece), len(key), offset, frame_end, fin) == (rest[:100], 4, 12, False, True)
    taken = frames.take_payload(rest[100:] + b"more")
    assert taken is not None
    piece, _, offset, frame_end, _ = taken
    assert isinstance(piece, memoryview) and bytes(piece) == rest[100:]
    assert (offset, frame_end) == (112, True)
    assert not frames.in_message


@pytest.mark.parametrize(
    ("masked", "frame", "keep_masked"),
    [
        (False, Wire(TEXT, b"t" * 1000), True),  # text is checked as UTF-8 on the way
        (True, Wire(BINARY, b"b" * 1000), False),  # unmasked for someone who reads it
    ],
)
def test_take_payload_leaves_to_receive_data_what_is_read(
    masked: bool, frame: Wire, keep_masked: bool
) -> None:
    frames, rest = in_payload(masked, frame, keep_masked=keep_masked)
    assert frames.take_payload(rest) is None


def test_take_payload_only_inside_a_payload() -> None:
    at_rest = reader(False)
    assert at_rest.take_payload(server_bytes(Wire(BINARY, b"x" * 1000))) is None
    frames, _ = in_payload(False, Wire(BINARY, b"x" * 1000))
    assert frames.take_payload(b"") is None


def test_take_payload_leaves_compressed_frames_to_the_inflater() -> None:
    compressed = relay(deflate=DeflateParams())
    source = compressed.leg(SERVER).reader
    deflater = zlib.compressobj(wbits=-15)
    body = deflater.compress(os.urandom(1000)) + deflater.flush(zlib.Z_SYNC_FLUSH)
    wire = server_bytes(Wire(BINARY, body[:-4], rsv=RSV1))
    source.receive_data(wire[:20])
    assert source.in_message and source.failed is None
    assert source.take_payload(wire[20:]) is None


def test_a_large_text_frame_streams_the_general_way() -> None:
    """Text is checked as UTF-8 as it streams: its reads go through the reader's events."""
    quiet = relay()
    frames = [Wire(TEXT, "é".encode() * BIG_FRAME)]
    wire = server_bytes(*frames)
    out = b""
    for start in range(0, len(wire), 100_003):
        out += sent_to(CLIENT, quiet.receive_fast(SERVER, wire[start : start + 100_003]))
    assert frames_read(False, out) == frames


def test_small_frames_past_the_end_of_a_key_block_get_fresh_keys() -> None:
    """More client frames in one read than a block of mask keys holds: a new block, on."""
    quiet = relay()
    frames = [Wire(BINARY, i.to_bytes(4, "big")) for i in range(MaskKeys.BLOCK // 4 + 10)]
    out = sent_to(SERVER, quiet.receive_fast(CLIENT, client_bytes(*frames)))
    assert frames_read(True, out) == frames
    keys = [out[i + 2 : i + 6] for i in range(0, len(out), 10)]  # 2-byte header, key, payload
    assert len(set(keys)) == len(keys)


def header_of(frame: Wire, masked: bool) -> bytes:
    wire = client_bytes(frame) if masked else server_bytes(frame)
    return wire[: 14 if masked else 10]


@pytest.mark.parametrize("masked", [True, False])
def test_start_streamed_reads_the_header_of_a_large_binary_frame(masked: bool) -> None:
    frames = reader(masked)
    frames.keep_binary_masked = True  # as a quiet relay's
    header = header_of(Wire(BINARY, bytes(BIG_FRAME), fin=False), masked)
    assert frames.start_streamed(header + b"xy", STREAM_THRESHOLD) == (
        len(header),
        False,
        BIG_FRAME,
    )
    assert frames.in_message and frames.bytes_received == len(header)
    taken = frames.take_payload(b"xy")
    assert taken is not None and bytes(taken[0]) == b"xy"


@pytest.mark.parametrize(
    ("frame", "masked", "cut"),
    [
        (Wire(TEXT, bytes(BIG_FRAME)), False, None),  # text: checked as UTF-8 on the way
        (Wire(BINARY, bytes(BIG_FRAME), rsv=RSV1), False, None),  # an extension's frame
        (Wire(BINARY, bytes(STREAM_THRESHOLD)), False, None),  # held until whole
        (Wire(BINARY, bytes(BIG_FRAME)), True, 12),  # its mask key not all there
        (Wire(BINARY, bytes(BIG_FRAME)), False, 9),  # its length not all there
    ],
)
def test_start_streamed_leaves_other_frames_to_the_general_reader(
    frame: Wire, masked: bool, cut: int | None
) -> None:
    frames = reader(masked)
    wire = client_bytes(frame) if masked else server_bytes(frame)
    assert frames.start_streamed(wire[:cut] if cut else wire, STREAM_THRESHOLD) is None
    assert not frames.in_message and frames.bytes_received == 0


def test_start_streamed_leaves_a_frame_of_the_wrong_masking_to_the_general_reader() -> None:
    server_side = reader(True)  # reads a client, which must mask
    assert server_side.start_streamed(server_bytes(Wire(BINARY, bytes(BIG_FRAME))), 0) is None


def test_start_streamed_only_between_messages() -> None:
    frames = reader(False)
    frames.receive_data(server_bytes(Wire(BINARY, b"first", fin=False)))
    assert frames.start_streamed(server_bytes(Wire(BINARY, bytes(BIG_FRAME))), 0) is None


@pytest.mark.parametrize(
    ("limits", "code"),
    [({"max_frame_size": BIG_FRAME - 1}, 1009), ({"max_message_size": 100}, 1009)],
)
def test_a_large_frame_over_a_limit_is_refused_by_the_general_reader(
    limits: dict[str, int], code: int
) -> None:
    limited = relay(**limits)
    commands = limited.receive_fast(SERVER, server_bytes(Wire(BINARY, bytes(BIG_FRAME))))
    assert isinstance(commands, list)
    failed = limited.leg(SERVER).reader.failed
    assert failed is not None and failed.code == code
