"""fastpath.py and _speedups.relay_frames: the relay's fast path, both implementations.

The contract: the run of whole, final, unextended text/binary frames at the start of the data,
checked as the frame reader checks them, client frames re-masked with keys from the block;
a stop at the first frame that is anything else, with the reader's state untouched. Every
test runs the C function and the pure twin; a property test holds them to each other and to
the general reader on arbitrary bytes. The same for ``relay_frames_recorded``, and the records a
relay makes through it are those the general path makes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sansio.conftest import (
    BIG,
    IN_CI,
    Wire,
    both_builds,
    client_bytes,
    frame_sequences,
    parse,
    require_extension,
    server_bytes,
    split,
)
from tests.sansio.driver import Driven
from wsproxy.sansio import endpoint, fastpath, takes
from wsproxy.sansio.endpoint import FrameReader
from wsproxy.sansio.events import Violation
from wsproxy.sansio.frames import Opcode, apply_mask
from wsproxy.sansio.items import Message
from wsproxy.sansio.legs import Side
from wsproxy.sansio.relay import RelayConfig

RelayFrames = fastpath.RelayFrames
RelayFramesRecorded = fastpath.RelayFramesRecorded
TEXT, BINARY, PING, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.CONTINUATION


IMPLEMENTATIONS = both_builds(fastpath.relay_frames_c, fastpath.relay_frames_py)
RECORDED_IMPLEMENTATIONS = both_builds(
    fastpath.relay_frames_recorded_c, fastpath.relay_frames_recorded_py
)

KEYS = bytes(range(1, 65))  # 16 distinct keys, so a test sees which were taken


def unmasked_frames(data: bytes) -> list[Wire | Violation]:
    return parse(data, masked=True)


@pytest.mark.parametrize("relay_frames", IMPLEMENTATIONS)
def test_server_frames_are_checked_and_left_as_they_are(relay_frames: RelayFrames) -> None:
    data = server_bytes(Wire(TEXT, b"hello"), Wire(BINARY, bytes(300)), Wire(TEXT, "é€😀".encode()))
    assert relay_frames(data, False, BIG, BIG, KEYS, 0) == (len(data), None, 3, 0)


@pytest.mark.parametrize("relay_frames", IMPLEMENTATIONS)
def test_client_frames_get_fresh_keys_in_order(relay_frames: RelayFrames) -> None:
    frames = [Wire(TEXT, b"hi"), Wire(BINARY, bytes(70_000)), Wire(BINARY, b"")]
    data = client_bytes(*frames)
    end, out, count, key_pos = relay_frames(data, True, BIG, BIG, KEYS, 8)
    assert (end, count, key_pos) == (len(data), 3, 20)
    assert out is not None and len(out) == len(data)
    assert unmasked_frames(out) == frames
    # The keys on the wire are the block's, from position 8 on.
    assert out[2:6] == KEYS[8:12]
    second = 2 + 4 + 2
    assert out[second + 10 : second + 14] == KEYS[12:16]  # after a 64-bit length


@pytest.mark.parametrize("relay_frames", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "stop",
    [
        Wire(PING, b"p"),  # control frames are the reader's
        Wire(TEXT, b"part", fin=False),  # fragments
        Wire(BINARY, b"x", rsv=0x40),  # RSV1 (compressed)
        Wire(TEXT, b"\xff"),  # invalid UTF-8: the reader reports it
        Wire(TEXT, b"\xed\xa0\x80"),  # a surrogate
        Wire(TEXT, b"\xc0\xaf"),  # an overlong form
        Wire(TEXT, b"\xf4\x90\x80\x80"),  # past U+10FFFF
        Wire(TEXT, b"ab\xe2\x82"),  # cut short
    ],
)
def test_the_run_stops_before_anything_else(relay_frames: RelayFrames, stop: Wire) -> None:
    for masked, make in ((True, client_bytes), (False, server_bytes)):
        head = make(Wire(TEXT, b"ok"))
        data = head + make(stop, Wire(TEXT, b"after"))
        end, out, count, _ = relay_frames(data, masked, BIG, BIG, KEYS, 0)
        assert (end, count) == (len(head), 1)
        if masked:
            assert out is not None and unmasked_frames(out) == [Wire(TEXT, b"ok")]


@pytest.mark.parametrize("relay_frames", IMPLEMENTATIONS)
def test_limits_stop_the_run(relay_frames: RelayFrames) -> None:
    data = server_bytes(Wire(BINARY, bytes(100)), Wire(BINARY, bytes(101)))
    assert relay_frames(data, False, 100, BIG, KEYS, 0)[:3] == (102, None, 1)
    assert relay_frames(data, False, BIG, 100, KEYS, 0)[:3] == (102, None, 1)
    assert relay_frames(data, False, 99, BIG, KEYS, 0)[:3] == (0, None, 0)


@pytest.mark.parametrize("relay_frames", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x81",  # a header cut short
        b"\x81\x05abc",  # a payload cut short
        b"\x82\x7e\x00",  # an extended length cut short
        b"\x82\x7e\x00\x10" + bytes(16),  # 16 in the 16-bit form: not the shortest
        b"\x82\x7f" + (100).to_bytes(8, "big") + bytes(100),  # 100 in the 64-bit form
        b"\x82\x7f" + (1 << 63).to_bytes(8, "big"),  # the top bit of a 64-bit length
        b"\x83\x00",  # a reserved opcode
        b"\x01\x00",  # no FIN
        b"\x80\x00",  # a continuation
    ],
)
def test_nothing_taken_from_what_is_not_a_whole_simple_frame(
    relay_frames: RelayFrames, data: bytes
) -> None:
    assert relay_frames(data, False, BIG, BIG, KEYS, 0) == (0, None, 0, 0)


@pytest.mark.parametrize("relay_frames", IMPLEMENTATIONS)
def test_masking_must_match_the_direction(relay_frames: RelayFrames) -> None:
    assert relay_frames(server_bytes(Wire(TEXT, b"x")), True, BIG, BIG, KEYS, 0)[:3] == (0, None, 0)
    assert relay_frames(client_bytes(Wire(TEXT, b"x")), False, BIG, BIG, KEYS, 0)[:3] == (
        0,
        None,
        0,
    )
    # A client frame whose header is all there but not its key.
    assert relay_frames(b"\x82\x80ab", True, BIG, BIG, KEYS, 0)[:3] == (0, None, 0)


@pytest.mark.parametrize("relay_frames", IMPLEMENTATIONS)
def test_the_run_stops_when_the_keys_run_out(relay_frames: RelayFrames) -> None:
    data = client_bytes(*[Wire(BINARY, bytes([n])) for n in range(5)])
    end, out, count, key_pos = relay_frames(data, True, BIG, BIG, KEYS[:12], 4)
    assert (count, key_pos) == (2, 12)
    assert out is not None and unmasked_frames(out) == [
        Wire(BINARY, b"\x00"),
        Wire(BINARY, b"\x01"),
    ]
    assert end == len(out)
    with pytest.raises(ValueError):
        relay_frames(data, True, BIG, BIG, KEYS, -4)


@pytest.mark.parametrize("relay_frames", IMPLEMENTATIONS)
@settings(max_examples=400, deadline=None)
@given(payload=st.binary(max_size=40) | st.text(max_size=20).map(str.encode))
def test_utf8_check_agrees_with_python(relay_frames: RelayFrames, payload: bytes) -> None:
    try:
        payload.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    for masked, make in ((True, client_bytes), (False, server_bytes)):
        data = make(Wire(TEXT, payload))
        assert relay_frames(data, masked, BIG, BIG, KEYS, 0)[2] == int(valid)


@settings(max_examples=400, deadline=None)
@given(
    data=st.binary(max_size=80)
    | frame_sequences(max_size=40).map(lambda frames: client_bytes(*frames))
    | frame_sequences(max_size=40).map(lambda frames: server_bytes(*frames)),
    masked=st.booleans(),
    key_pos=st.sampled_from([0, 4, 56, 64]),
)
def test_c_and_python_agree_on_any_bytes(data: bytes, masked: bool, key_pos: int) -> None:
    relay_frames_c = require_extension(fastpath.relay_frames_c)
    got_c = relay_frames_c(data, masked, 300, 200, KEYS, key_pos)
    assert got_c == fastpath.relay_frames_py(data, masked, 300, 200, KEYS, key_pos)
    # What the fast path took, the general reader reads as the same frames, without error.
    end, out, count, _ = got_c
    taken = parse(data[:end], masked=masked)
    assert len(taken) == count and not any(isinstance(t, Violation) for t in taken)
    if out is not None:
        assert parse(out, masked=True) == taken


def test_the_reader_hands_over_with_its_state_untouched() -> None:
    reader = FrameReader(masked=True, max_frame_size=BIG, max_message_size=BIG)
    data = client_bytes(Wire(TEXT, b"a"), Wire(TEXT, b"frag", fin=False), Wire(CONT, b"ment"))
    end, out, frames = reader.take_simple(data)
    assert frames == 1 and out is not None and reader.bytes_received == end
    events = reader.receive_data(data[end:])
    assert [e.content for e in events if isinstance(e, endpoint.DataChunk)] == [b"frag", b"ment"]
    # Inside a message (or with bytes held), the fast path stands aside.
    reader.receive_data(client_bytes(Wire(BINARY, b"x", fin=False)))
    assert reader.take_simple(client_bytes(Wire(BINARY, b"y"))) == (0, None, 0)
    held = FrameReader(masked=False, max_frame_size=BIG, max_message_size=BIG)
    held.receive_data(b"\x81")
    assert held.take_simple(server_bytes(Wire(TEXT, b"y"))) == (0, None, 0)


def test_the_reader_draws_a_new_key_block_in_the_middle_of_a_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = fastpath.MaskKeys()
    keys.position = len(keys.block) - 8  # two keys left
    monkeypatch.setattr(takes, "MASK_KEYS", keys)
    frames = [Wire(BINARY, bytes([n]) * n) for n in range(7)]
    data = client_bytes(*frames)
    reader = FrameReader(masked=True, max_frame_size=BIG, max_message_size=BIG)
    end, out, count = reader.take_simple(data)
    assert (end, count) == (len(data), 7)
    assert out is not None and unmasked_frames(out) == frames
    assert keys.position == 5 * 4


def test_mask_keys_come_in_blocks_and_are_never_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks: list[bytes] = []
    real = os.urandom

    def urandom(size: int) -> bytes:
        blocks.append(real(size))
        return blocks[-1]

    monkeypatch.setattr(os, "urandom", urandom)
    keys = fastpath.MaskKeys()
    per_block = fastpath.MaskKeys.BLOCK // 4
    taken = [keys.take() for _ in range(per_block + 1)]
    assert [len(block) for block in blocks] == [fastpath.MaskKeys.BLOCK] * 2
    assert b"".join(taken[:per_block]) == blocks[0]
    assert taken[per_block] == blocks[1][:4]


# -- the relay with the fast path, against the relay without it --------------------------------


def _takes_nothing(
    data: object, masked: bool, max_frame: int, max_message: int, keys: bytes, key_pos: int, *_: int
) -> tuple[int, None, int, list[tuple[int, int, bytes]]]:
    """A fast path that stands aside every time: the relay then takes the general path."""
    return 0, None, key_pos, []


def _relayed(
    pieces: list[tuple[Side, bytes]],
    records: bool,
    monkeypatch: pytest.MonkeyPatch,
    impl: RelayFrames,
    recorded: RelayFramesRecorded = _takes_nothing,
    **config: Any,
) -> tuple[bytes, bytes, Driven]:
    monkeypatch.setattr(takes, "relay_frames", impl)
    monkeypatch.setattr(takes, "relay_frames_recorded", recorded)
    relay = Driven(RelayConfig(max_frame_size=BIG, max_message_size=BIG, records=records, **config))
    to_server, to_client = b"", b""
    for side, piece in pieces:
        relay.receive(side, piece)
        to_server += relay.data_to_send(Side.SERVER)
        to_client += relay.data_to_send(Side.CLIENT)
    return to_server, to_client, relay


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@settings(max_examples=150, deadline=None)
@given(
    client_frames=frame_sequences(close=False),
    server_frames=frame_sequences(close=False),
    data=st.data(),
)
def test_the_relay_does_the_same_with_and_without_it(
    impl: RelayFrames,
    client_frames: list[Wire],
    server_frames: list[Wire],
    data: st.DataObject,
) -> None:
    c_wire, s_wire = client_bytes(*client_frames), server_bytes(*server_frames)
    c_pieces = split(c_wire, data.draw(st.lists(st.integers(0, len(c_wire)), max_size=6)))
    s_pieces = split(s_wire, data.draw(st.lists(st.integers(0, len(s_wire)), max_size=6)))
    order = data.draw(
        st.permutations([Side.CLIENT] * len(c_pieces) + [Side.SERVER] * len(s_pieces))
    )
    feeds = {Side.CLIENT: iter(c_pieces), Side.SERVER: iter(s_pieces)}
    pieces = [(side, next(feeds[side])) for side in order]
    with pytest.MonkeyPatch.context() as patch:
        fast_server, fast_client, fast = _relayed(pieces, False, patch, impl)
    with pytest.MonkeyPatch.context() as patch:
        slow_server, slow_client, slow = _relayed(pieces, True, patch, impl)
    assert parse(fast_server, masked=True) == parse(slow_server, masked=True) == client_frames
    assert fast_client == slow_client == s_wire
    for side in (Side.CLIENT, Side.SERVER):
        assert fast.leg(side).messages == slow.leg(side).messages
        assert fast.leg(side).frames == slow.leg(side).frames
        assert fast.leg(side).reader.bytes_received == slow.leg(side).reader.bytes_received


def test_bad_input_after_a_run_is_still_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    data = client_bytes(Wire(TEXT, b"fine"), Wire(TEXT, b"\xff"))
    to_server, _, relay = _relayed([(Side.CLIENT, data)], False, monkeypatch, fastpath.relay_frames)
    assert parse(to_server, masked=True)[0] == Wire(TEXT, b"fine")
    assert relay.client.violation is not None and relay.client.violation.code == 1007


def test_the_pure_twin_serves_without_the_extension() -> None:
    check: Callable[..., object] = fastpath.relay_frames
    assert ("c" if fastpath.relay_frames_c is not None else "python") == fastpath.IMPLEMENTATION
    assert check is (fastpath.relay_frames_c or fastpath.relay_frames_py)
    if IN_CI:
        assert fastpath.IMPLEMENTATION == "c"
    masked = apply_mask(b"x", b"abcd")
    assert fastpath.relay_frames_py(b"\x81\x81abcd" + masked, True, BIG, BIG, KEYS, 0)[2] == 1


# -- the fast path for recorded frames -----------------------------------------------------------


@pytest.mark.parametrize("recorded", RECORDED_IMPLEMENTATIONS)
def test_recorded_frames_come_with_their_content_in_the_clear(
    recorded: RelayFramesRecorded,
) -> None:
    frames = [Wire(TEXT, b"hello"), Wire(BINARY, bytes(range(200))), Wire(TEXT, b"")]
    for masked, make in ((True, client_bytes), (False, server_bytes)):
        data = make(*frames, Wire(PING, b"stop"))
        end, out, key_pos, got = recorded(data, masked, BIG, BIG, KEYS, 0, -1)
        assert got == [(f.opcode, len(f.payload), f.payload) for f in frames]
        assert end == len(make(*frames)) and key_pos == (12 if masked else 0)
        assert (out is not None) == masked
        # A preview: the first bytes only, the length still the frame's.
        _, _, _, previews = recorded(data, masked, BIG, BIG, KEYS, 0, 3)
        assert previews == [(f.opcode, len(f.payload), f.payload[:3]) for f in frames]


@pytest.mark.parametrize("recorded", RECORDED_IMPLEMENTATIONS)
def test_recorded_runs_stop_where_the_plain_ones_do(recorded: RelayFramesRecorded) -> None:
    with pytest.raises(ValueError):
        recorded(b"", True, BIG, BIG, KEYS, -4, -1)
    data = client_bytes(Wire(TEXT, b"ok"), Wire(TEXT, b"\xff"))
    assert recorded(data, True, BIG, BIG, KEYS, 0, -1)[3] == [(TEXT, 2, b"ok")]
    # Out of keys: the run stops, nothing of the next frame is taken.
    data = client_bytes(Wire(TEXT, b"a"), Wire(TEXT, b"b"))
    end, out, key_pos, got = recorded(data, True, BIG, BIG, KEYS, len(KEYS) - 4, -1)
    assert (got, key_pos) == ([(TEXT, 1, b"a")], len(KEYS))
    assert out is not None and len(out) == end
    assert recorded(data, True, BIG, BIG, KEYS, len(KEYS), -1) == (0, None, len(KEYS), [])


@settings(max_examples=400, deadline=None)
@given(
    data=st.binary(max_size=80)
    | frame_sequences(max_size=40).map(lambda frames: client_bytes(*frames))
    | frame_sequences(max_size=40).map(lambda frames: server_bytes(*frames)),
    masked=st.booleans(),
    key_pos=st.sampled_from([0, 4, 56, 64]),
    keep=st.sampled_from([-1, 0, 5, 64]),
)
def test_recorded_is_the_plain_walk_plus_records(
    data: bytes, masked: bool, key_pos: int, keep: int
) -> None:
    recorded_c = require_extension(fastpath.relay_frames_recorded_c)
    got = recorded_c(data, masked, 300, 200, KEYS, key_pos, keep)
    assert got == fastpath.relay_frames_recorded_py(data, masked, 300, 200, KEYS, key_pos, keep)
    end, out, new_pos, frames = got
    assert (end, out, len(frames), new_pos) == fastpath.relay_frames_py(
        data, masked, 300, 200, KEYS, key_pos
    )
    taken = parse(data[:end], masked=masked)
    cut = None if keep < 0 else keep
    assert frames == [
        (t.opcode, len(t.payload), t.payload[:cut]) for t in taken if isinstance(t, Wire)
    ]


@pytest.mark.parametrize("recorded", RECORDED_IMPLEMENTATIONS)
@settings(max_examples=150, deadline=None)
@given(
    client_frames=frame_sequences(close=False),
    server_frames=frame_sequences(close=False),
    full=st.booleans(),
    preview=st.sampled_from([0, 3, 64]),
    data=st.data(),
)
def test_records_are_the_same_with_and_without_it(
    recorded: RelayFramesRecorded,
    client_frames: list[Wire],
    server_frames: list[Wire],
    full: bool,
    preview: int,
    data: st.DataObject,
) -> None:
    c_wire, s_wire = client_bytes(*client_frames), server_bytes(*server_frames)
    c_pieces = split(c_wire, data.draw(st.lists(st.integers(0, len(c_wire)), max_size=6)))
    s_pieces = split(s_wire, data.draw(st.lists(st.integers(0, len(s_wire)), max_size=6)))
    order = data.draw(
        st.permutations([Side.CLIENT] * len(c_pieces) + [Side.SERVER] * len(s_pieces))
    )
    feeds = {Side.CLIENT: iter(c_pieces), Side.SERVER: iter(s_pieces)}
    pieces = [(side, next(feeds[side])) for side in order]
    config = {"full_payloads": full, "preview_size": preview}
    with pytest.MonkeyPatch.context() as patch:
        fast_server, fast_client, fast = _relayed(
            pieces, True, patch, fastpath.relay_frames, recorded, **config
        )
    with pytest.MonkeyPatch.context() as patch:
        slow_server, slow_client, slow = _relayed(
            pieces, True, patch, fastpath.relay_frames, **config
        )
    assert parse(fast_server, masked=True) == parse(slow_server, masked=True) == client_frames
    assert fast_client == slow_client == s_wire
    assert fast.records == slow.records
    for side in (Side.CLIENT, Side.SERVER):
        assert fast.leg(side).messages == slow.leg(side).messages
        assert fast.leg(side).frames == slow.leg(side).frames
        assert fast.leg(side).reader.bytes_received == slow.leg(side).reader.bytes_received


def test_the_relay_records_through_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counting(*args: Any) -> tuple[int, bytes | None, int, list[tuple[int, int, bytes]]]:
        calls.append(args[6])
        return fastpath.relay_frames_recorded(*args)

    data = client_bytes(Wire(TEXT, b"one"), Wire(BINARY, b"two"))
    _, _, relay = _relayed(
        [(Side.CLIENT, data)], True, monkeypatch, fastpath.relay_frames, counting, preview_size=2
    )
    assert calls == [2]
    assert [(r.opcode, r.length, r.payload, r.verdict) for r in relay.records] == [
        (TEXT, 3, b"on", "forwarded"),
        (BINARY, 3, b"tw", "forwarded"),
    ]


def test_the_recording_reader_draws_a_new_key_block_in_the_middle_of_a_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = fastpath.MaskKeys()
    keys.position = len(keys.block) - 8  # two keys left
    monkeypatch.setattr(takes, "MASK_KEYS", keys)
    frames = [Wire(BINARY, bytes([n]) * n) for n in range(7)]
    data = client_bytes(*frames)
    reader = FrameReader(masked=True, max_frame_size=BIG, max_message_size=BIG)
    end, out, records = reader.take_simple_recorded(data, 2)
    assert end == len(data) == reader.bytes_received
    assert records == [(BINARY, len(f.payload), f.payload[:2]) for f in frames]
    assert out is not None and unmasked_frames(out) == frames
    assert keys.position == 5 * 4


def test_the_recording_reader_stands_aside_inside_a_message() -> None:
    reader = FrameReader(masked=True, max_frame_size=BIG, max_message_size=BIG)
    reader.receive_data(client_bytes(Wire(BINARY, b"x", fin=False)))
    assert reader.take_simple_recorded(client_bytes(Wire(BINARY, b"y")), -1) == (0, None, [])


# -- the fast path for message hooks (whole_frames) ----------------------------------------------

WHOLE_IMPLEMENTATIONS = both_builds(fastpath.whole_frames_c, fastpath.whole_frames_py)


@pytest.mark.parametrize("whole", WHOLE_IMPLEMENTATIONS)
@pytest.mark.parametrize("masked", [True, False])
def test_whole_frames_stop_once_their_budget_is_spent(
    whole: fastpath.WholeFrames, masked: bool
) -> None:
    """Each frame counts its content and EVENT_COST: a budget of two empty frames and a bit
    takes three (the walk stops after the frame that spends it), and at least one always."""
    data = (client_bytes if masked else server_bytes)(*[Wire(BINARY, b"")] * 8)
    cost = fastpath.EVENT_COST
    end, got, key_pos = whole(data, masked, BIG, BIG, KEYS, 0, 2 * cost + 1)
    assert (len(got), end, key_pos) == (3, 3 * len(data) // 8, 12 * masked)
    assert len(whole(data, masked, BIG, BIG, KEYS, 0, 1)[1]) == 1
    content = [Wire(TEXT, b"a" * 100)] * 4
    data = (client_bytes if masked else server_bytes)(*content)
    assert len(whole(data, masked, BIG, BIG, KEYS, 0, 2 * (100 + cost))[1]) == 2


@pytest.mark.parametrize("whole", WHOLE_IMPLEMENTATIONS)
def test_whole_frames_come_in_the_clear_with_the_frame_that_forwards_them(
    whole: fastpath.WholeFrames,
) -> None:
    frames = [Wire(TEXT, b"hello"), Wire(BINARY, bytes(range(200))), Wire(TEXT, b"")]
    for masked, make in ((True, client_bytes), (False, server_bytes)):
        data = make(*frames, Wire(PING, b"stop"))
        end, got, key_pos = whole(data, masked, BIG, BIG, KEYS, 0, BIG)
        assert [(opcode, content) for opcode, content, _ in got] == [
            (f.opcode, f.payload) for f in frames
        ]
        assert end == len(make(*frames)) and key_pos == (12 if masked else 0)
        out = b"".join(frame for _, _, frame in got)
        if masked:  # re-masked with the keys taken, in order
            assert parse(out, masked=True) == frames
            keys = [frame[-len(content) - 4 :][:4] for _, content, frame in got]
            assert keys == [KEYS[0:4], KEYS[4:8], KEYS[8:12]]
        else:  # as they came
            assert out == data[:end]


@pytest.mark.parametrize("whole", WHOLE_IMPLEMENTATIONS)
def test_whole_frames_stop_where_the_plain_ones_do(whole: fastpath.WholeFrames) -> None:
    with pytest.raises(ValueError):
        whole(b"", True, BIG, BIG, KEYS, -4, BIG)
    data = client_bytes(Wire(TEXT, b"ok"), Wire(TEXT, b"\xff"))
    assert [content for _, content, _ in whole(data, True, BIG, BIG, KEYS, 0, BIG)[1]] == [b"ok"]
    assert whole(server_bytes(Wire(TEXT, b"\xff")), False, BIG, BIG, KEYS, 0, BIG) == (0, [], 0)
    # Out of keys: the run stops, nothing of the next frame is taken.
    data = client_bytes(Wire(TEXT, b"a"), Wire(TEXT, b"b"))
    end, got, key_pos = whole(data, True, BIG, BIG, KEYS, len(KEYS) - 4, BIG)
    assert ([content for _, content, _ in got], key_pos) == ([b"a"], len(KEYS))
    assert end == len(client_bytes(Wire(TEXT, b"a")))
    assert whole(data, True, BIG, BIG, KEYS, len(KEYS), BIG) == (0, [], len(KEYS))


@pytest.mark.parametrize("whole", WHOLE_IMPLEMENTATIONS)
def test_whole_frames_never_write_into_shared_objects(whole: fastpath.WholeFrames) -> None:
    """CPython shares its one-byte bytes objects: unmasking into one would change b"x" for
    the whole process."""
    data = b"\x81\x81" + b"\x07\x07\x07\x07" + bytes([ord("x") ^ 7])
    _, got, _ = whole(data, True, BIG, BIG, KEYS, 0, BIG)
    assert got[0][1] == b"x" and bytes([120]) == b"x"
    assert [content for _, content, _ in whole(data, True, BIG, BIG, KEYS, 0, BIG)[1]] == [b"x"]


@settings(max_examples=400, deadline=None)
@given(
    data=st.binary(max_size=80)
    | frame_sequences(max_size=40).map(lambda frames: client_bytes(*frames))
    | frame_sequences(max_size=40).map(lambda frames: server_bytes(*frames)),
    masked=st.booleans(),
    key_pos=st.sampled_from([0, 4, 56, 64]),
)
def test_whole_frames_is_the_plain_walk_with_contents(
    data: bytes, masked: bool, key_pos: int
) -> None:
    whole_frames_c = require_extension(fastpath.whole_frames_c)
    got = whole_frames_c(data, masked, 300, 200, KEYS, key_pos, BIG)
    assert got == fastpath.whole_frames_py(data, masked, 300, 200, KEYS, key_pos, BIG)
    end, frames, new_pos = got
    plain_end, plain_out, count, plain_pos = fastpath.relay_frames_py(
        data, masked, 300, 200, KEYS, key_pos
    )
    assert (end, len(frames), new_pos) == (plain_end, count, plain_pos)
    out = b"".join(frame for _, _, frame in frames)
    assert out == (plain_out if masked and end else data[:end])
    taken = parse(data[:end], masked=masked)
    assert [(opcode, content) for opcode, content, _ in frames] == [
        (t.opcode, t.payload) for t in taken if isinstance(t, Wire)
    ]


def test_the_reader_takes_whole_frames_only_between_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = fastpath.MaskKeys()
    keys.position = len(keys.block) - 8  # two keys left: a new block in the middle of the run
    monkeypatch.setattr(takes, "MASK_KEYS", keys)
    frames = [Wire(BINARY, bytes([n]) * n) for n in range(7)]
    data = client_bytes(*frames)
    reader = FrameReader(masked=True, max_frame_size=BIG, max_message_size=BIG)
    end, got = reader.take_whole(data, 1 << 30)
    assert end == len(data) == reader.bytes_received
    assert [(opcode, content) for opcode, content, _ in got] == [
        (BINARY, f.payload) for f in frames
    ]
    assert unmasked_frames(b"".join(frame for _, _, frame in got)) == frames
    assert keys.position == 5 * 4
    held = FrameReader(masked=False, max_frame_size=BIG, max_message_size=BIG)
    held.receive_data(server_bytes(Wire(TEXT, b"a", fin=False)))
    assert held.take_whole(server_bytes(Wire(CONT, b"b")), 1 << 30) == (0, [])


class _Hooks(Driven):
    """A shell that runs plain hooks at once: ``verdict`` on each item, then the next."""

    def __init__(self, config: RelayConfig, verdict: Callable[[Message], None]) -> None:
        super().__init__(config)
        self.verdict = verdict
        self.seen: list[tuple[Side, bytes]] = []

    def run(self, commands: list[Any]) -> None:
        super().run(commands)
        while self.hooks:
            side, item = self.hooks.pop(0)
            assert isinstance(item, Message)
            while item is not None:
                self.seen.append((side, item.content))
                self.verdict(item)
                nxt = self.relay.hooks_done_next(side)
                assert nxt is None or isinstance(nxt, Message)
                item = nxt
            super().run(self.relay.take())


def _change_odd(message: Message) -> None:
    if len(message.content) % 2:
        message.content = message.content + b"!"
    elif len(message.content) % 3 == 0:
        message.drop()


@pytest.mark.parametrize("records", [False, True])
@settings(max_examples=120, deadline=None)
@given(
    client_frames=frame_sequences(close=False),
    server_frames=frame_sequences(close=False),
    data=st.data(),
)
def test_message_hooks_see_the_same_with_and_without_it(
    records: bool,
    client_frames: list[Wire],
    server_frames: list[Wire],
    data: st.DataObject,
) -> None:
    """Messages built from whole frames, and verdicts carried out item after item
    (``hooks_done_next``), are what the general reader and one ``hooks_done`` each give."""
    c_wire, s_wire = client_bytes(*client_frames), server_bytes(*server_frames)
    c_pieces = split(c_wire, data.draw(st.lists(st.integers(0, len(c_wire)), max_size=6)))
    s_pieces = split(s_wire, data.draw(st.lists(st.integers(0, len(s_wire)), max_size=6)))
    order = data.draw(
        st.permutations([Side.CLIENT] * len(c_pieces) + [Side.SERVER] * len(s_pieces))
    )
    feeds = {Side.CLIENT: iter(c_pieces), Side.SERVER: iter(s_pieces)}
    pieces = [(side, next(feeds[side])) for side in order]
    config = RelayConfig(
        max_frame_size=BIG, max_message_size=BIG, records=records, want_messages=True
    )
    runs = []
    for whole in (fastpath.whole_frames, None):
        with pytest.MonkeyPatch.context() as patch:
            if whole is None:
                patch.setattr(takes, "whole_frames", lambda d, m, f, x, k, p, b: (0, [], p))
            relay = _Hooks(config, _change_odd)
            for side, piece in pieces:
                relay.receive(side, piece)
            runs.append(relay)
    fast, slow = runs
    assert fast.seen == slow.seen
    assert parse(bytes(fast.sent[Side.SERVER]), masked=True) == parse(
        bytes(slow.sent[Side.SERVER]), masked=True
    )
    assert fast.sent[Side.CLIENT] == slow.sent[Side.CLIENT]
    assert [(r.side, r.opcode, r.payload, r.verdict, r.by) for r in fast.records] == [
        (r.side, r.opcode, r.payload, r.verdict, r.by) for r in slow.records
    ]
    assert fast.notes == slow.notes
    for side in (Side.CLIENT, Side.SERVER):
        assert fast.leg(side).messages == slow.leg(side).messages
        assert fast.leg(side).frames == slow.leg(side).frames
        assert fast.leg(side).dropped == slow.leg(side).dropped
        assert fast.leg(side).reader.bytes_received == slow.leg(side).reader.bytes_received
