"""Message hooks on a connection with permessage-deflate: ``whole_deflated`` (C and pure twin),
``FrameReader.take_whole_deflated`` and the one-frame verdicts of ``HookSeam._after_message``.

The contract: the frames ``relay_deflated`` would take come out as messages, inflated once with
the running context, each with its compressed payload and the frame that forwards it unchanged;
the relay then does with them exactly what the general reader's events and the general verdict
path do (a property test holds the two to each other, compressed bytes included).
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sansio.conftest import (
    BIG,
    Wire,
    both_builds,
    client_bytes,
    require_extension,
    server_bytes,
    split,
)
from tests.sansio.test_deflate_fastpath import (
    DEFAULTS,
    KEYS,
    MESSAGES,
    TAIL,
    _stream,
    compressed,
    parse,
    spy,
)
from tests.sansio.test_fastpath import _Hooks
from wsproxy.exceptions import ProtocolError
from wsproxy.sansio import fastpath, takes
from wsproxy.sansio.deflate import DeflateParams, Inflater
from wsproxy.sansio.endpoint import FrameReader
from wsproxy.sansio.frames import RSV1, Opcode
from wsproxy.sansio.items import Message
from wsproxy.sansio.legs import Side
from wsproxy.sansio.relay import RelayConfig

TEXT, BINARY, PING = Opcode.TEXT, Opcode.BINARY, Opcode.PING
WholeDeflated = fastpath.WholeDeflated
IMPLEMENTATIONS = both_builds(fastpath.whole_deflated_c, fastpath.whole_deflated_py)


# --- whole_deflated ------------------------------------------------------------------------------


@pytest.mark.parametrize("whole", IMPLEMENTATIONS)
@pytest.mark.parametrize("masked", [True, False])
def test_messages_come_inflated_with_their_wire_and_frame(
    whole: WholeDeflated, masked: bool
) -> None:
    payloads = compressed(MESSAGES)
    frames = [Wire(TEXT, p, rsv=RSV1) for p in payloads] + [Wire(BINARY, b"plain")]
    data = (client_bytes if masked else server_bytes)(*frames)
    inflate = spy(from_client=masked)
    end, got, key_pos, error = whole(data, masked, BIG, BIG, KEYS, 8, inflate, 1000, BIG)
    assert (end, key_pos, error) == (len(data), 8 + 20 * masked, None)
    assert [(o, c, w) for o, c, w, _ in got] == [
        *((TEXT, m, p) for m, p in zip(MESSAGES, payloads, strict=True)),
        (BINARY, b"plain", None),
    ]
    outs = b"".join(out for *_, out in got)
    assert parse(outs, masked=masked) == frames
    if masked:
        assert outs[2:6] == KEYS[8:12]  # fresh keys, in order
    else:
        assert outs == data  # a server's frames go on as they came
    assert inflate.inputs == [p + TAIL if p else b"" for p in payloads]


@pytest.mark.parametrize("whole", IMPLEMENTATIONS)
@settings(max_examples=100, deadline=None)
@given(data=st.data(), masked=st.booleans(), key_pos=st.sampled_from([0, 40, 60]))
def test_it_takes_what_relay_deflated_takes(
    whole: WholeDeflated, data: st.DataObject, masked: bool, key_pos: int
) -> None:
    wire, _ = _stream(data.draw, masked)
    limit = data.draw(st.sampled_from([BIG, 200]))
    inflater = Inflater(DEFAULTS, masked, limit)
    relayed = Inflater(DEFAULTS, masked, limit)
    most = inflater.most_compressed()
    end, frames, keys_at, error = whole(
        wire, masked, BIG, limit, KEYS, key_pos, inflater.fast_inflate(), most, BIG
    )
    r_end, r_out, r_count, r_keys_at, r_error = fastpath.relay_deflated(
        wire, masked, BIG, limit, KEYS, key_pos, relayed.fast_inflate(), most
    )
    assert (end, len(frames), keys_at) == (r_end, r_count, r_keys_at)
    assert type(error) is type(r_error)
    if not isinstance(error, BaseException):
        assert error == r_error
    outs = b"".join(out for *_, out in frames)
    assert outs == (r_out if masked else wire[:r_end]) or (not frames and r_out is None)
    assert bytes(inflater._window) == bytes(relayed._window)


@pytest.mark.parametrize("masked", [True, False])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_the_two_builds_agree(masked: bool, data: st.DataObject) -> None:
    c = require_extension(fastpath.whole_deflated_c)
    wire, _ = _stream(data.draw, masked)
    got = [
        impl(
            wire,
            masked,
            BIG,
            200,
            KEYS,
            0,
            Inflater(DEFAULTS, masked, 200).fast_inflate(),
            100,
            BIG,
        )
        for impl in (c, fastpath.whole_deflated_py)
    ]
    (c_end, c_frames, c_keys, c_error), (p_end, p_frames, p_keys, p_error) = got
    assert (c_end, c_frames, c_keys) == (p_end, p_frames, p_keys)
    assert type(c_error) is type(p_error)
    assert isinstance(c_error, BaseException) or c_error == p_error


@pytest.mark.parametrize("whole", IMPLEMENTATIONS)
def test_the_budget_counts_what_frames_inflate_to(whole: WholeDeflated) -> None:
    """Ten 4 KiB messages of some 10 bytes each under context takeover: a budget of 8 KiB
    stops after the second, by what they inflate to, not by their bytes on the wire."""
    contents = [b"%d" % n + b"q" * 4095 for n in range(10)]
    data = server_bytes(*(Wire(TEXT, p, rsv=RSV1) for p in compressed(contents)))
    assert len(data) < 4096
    inflater = Inflater(DEFAULTS, False, BIG)
    end, frames, _, error = whole(
        data, False, BIG, BIG, KEYS, 0, inflater.fast_inflate(), BIG, 8192
    )
    assert ([f[1] for f in frames], error) == (contents[:2], None)
    rest = whole(data[end:], False, BIG, BIG, KEYS, 0, inflater.fast_inflate(), BIG, BIG)
    assert [f[1] for f in rest[1]] == contents[2:]


@pytest.mark.parametrize("whole", IMPLEMENTATIONS)
def test_failures_stop_the_run_at_their_frame(whole: WholeDeflated) -> None:
    good = server_bytes(Wire(TEXT, compressed([b"fine"])[0], rsv=RSV1))
    bad_deflate = server_bytes(Wire(TEXT, b"\xff\xff\xff", rsv=RSV1))
    end, frames, _, error = whole(
        good + bad_deflate, False, BIG, BIG, KEYS, 0, spy(False), BIG, BIG
    )
    assert (end, [f[1] for f in frames]) == (len(good), [b"fine"])
    assert isinstance(error, ProtocolError) and error.code == 1007
    bad_text = compressed([b"ok", b"\xed\xa0\x80"])
    data = server_bytes(*(Wire(TEXT, p, rsv=RSV1) for p in bad_text))
    end, frames, _, error = whole(data, False, BIG, BIG, KEYS, 0, spy(False), BIG, BIG)
    assert (len(frames), error) == (1, (1007, "invalid UTF-8 in a text message"))
    packed = compressed([b"a" * 50])[0]
    big = server_bytes(Wire(BINARY, packed, rsv=RSV1))
    assert whole(big, False, BIG, 49, KEYS, 0, spy(False), BIG, BIG)[1:] == (
        [],
        0,
        (1009, "message inflates beyond 49 bytes"),
    )
    # Plain frames stop as whole_frames stops (the general reader reports them), no error.
    assert whole(server_bytes(Wire(TEXT, b"\xff")), False, BIG, BIG, KEYS, 0, spy(), BIG, BIG) == (
        0,
        [],
        0,
        None,
    )
    with pytest.raises(ValueError, match="key_pos"):
        whole(good, False, BIG, BIG, KEYS, -1, spy(False), BIG, BIG)


@pytest.mark.parametrize("whole", IMPLEMENTATIONS)
def test_the_run_stops_out_of_keys_and_before_anything_else(whole: WholeDeflated) -> None:
    data = client_bytes(*(Wire(TEXT, p, rsv=RSV1) for p in compressed([b"one", b"two"])))
    end, frames, key_pos, _ = whole(data, True, BIG, BIG, KEYS, 60, spy(), BIG, BIG)
    assert (len(frames), key_pos) == (1, 64) and end < len(data)
    fragment = client_bytes(Wire(TEXT, b"\xf2\x48\xcd", fin=False, rsv=RSV1), Wire(PING, b"p"))
    assert whole(fragment, True, BIG, BIG, KEYS, 0, spy(), BIG, BIG) == (0, [], 0, None)


@pytest.mark.parametrize("whole", IMPLEMENTATIONS)
def test_the_direct_form_stops_after_a_final_block(whole: WholeDeflated) -> None:
    first = zlib.compressobj(wbits=-15)
    ended = first.compress(b"shared window text") + first.flush(zlib.Z_FINISH) + b"\x00"
    nxt = zlib.compressobj(wbits=-15, zdict=b"shared window text")
    second = (nxt.compress(b"shared window text!") + nxt.flush(zlib.Z_SYNC_FLUSH))[:-4]
    head = server_bytes(Wire(TEXT, ended, rsv=RSV1))
    data = head + server_bytes(Wire(TEXT, second, rsv=RSV1))
    inflater = Inflater(DEFAULTS, False, BIG)
    end, frames, _, error = whole(data, False, BIG, BIG, KEYS, 0, inflater.fast_inflate(), BIG, BIG)
    assert (end, [f[1] for f in frames], error) == (len(head), [b"shared window text"], None)
    rest = data[len(head) :]
    _, frames, _, _ = whole(rest, False, BIG, BIG, KEYS, 0, inflater.fast_inflate(), BIG, BIG)
    assert [f[1] for f in frames] == [b"shared window text!"]


def test_the_c_one_checks_its_arguments() -> None:
    c = require_extension(fastpath.whole_deflated_c)
    decoder = zlib.decompressobj(wbits=-15)
    with pytest.raises(TypeError, match="callable or"):
        c(b"", False, BIG, BIG, KEYS, 0, (decoder, b"not a bytearray", bytes), BIG, BIG)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="9 arguments"):
        c(b"", False, BIG, BIG, KEYS, 0, bytes)  # type: ignore[call-arg]
    data = server_bytes(Wire(TEXT, compressed([b"x"])[0], rsv=RSV1))

    def not_bytes(payload: bytes) -> Any:
        return bytearray(payload)

    with pytest.raises(TypeError, match="must return bytes"):
        c(data, False, BIG, BIG, KEYS, 0, not_bytes, BIG, BIG)


# --- in the reader and the relay -----------------------------------------------------------------


def test_the_reader_takes_them_only_between_messages_and_reports_a_failure_once() -> None:
    reader = FrameReader(masked=False, max_frame_size=BIG, max_message_size=BIG)
    assert reader.take_whole_deflated(b"\xc1\x00", 1 << 30) == (0, [])  # no inflater: nothing
    reader.inflater = Inflater(DEFAULTS, False, BIG)
    good = server_bytes(Wire(TEXT, compressed([b"fine"])[0], rsv=RSV1))
    bad = server_bytes(Wire(TEXT, b"\xff\xff", rsv=RSV1))
    end, frames = reader.take_whole_deflated(good + bad, 1 << 30)
    assert (end, [f[1] for f in frames]) == (len(good), [b"fine"])
    events = reader.receive_data(bad)
    assert len(events) == 1 and getattr(events[0], "code", None) == 1007
    assert reader.receive_data(b"more") == []
    assert reader.take_whole_deflated(good, 1 << 30) == (0, [])  # failed: no more fast path


def _rewrite(message: Message) -> None:
    """Changes some messages, drops some, leaves the rest: every verdict in a stream."""
    size = len(message.content)
    if size % 2:
        message.content = message.content.replace(b"l", b"L") + b"!"
    elif size % 3 == 0 and size:
        message.drop()


@pytest.mark.parametrize("takeover", [True, False])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_hooks_see_and_send_what_the_general_path_does(takeover: bool, data: st.DataObject) -> None:
    """The whole-message fast path and the one-frame verdicts (quiet relay) against the
    general reader and the general verdict path (a recording relay, whole_deflated off): the
    same messages to the hooks, the same bytes out (the proxy's own compressed bytes too), the
    same notes and counts."""
    params = DeflateParams(
        client_no_context_takeover=not takeover, server_no_context_takeover=not takeover
    )
    c_wire, _ = _stream(data.draw, True)
    s_wire, _ = _stream(data.draw, False)
    c_pieces = split(c_wire, data.draw(st.lists(st.integers(0, len(c_wire)), max_size=5)))
    s_pieces = split(s_wire, data.draw(st.lists(st.integers(0, len(s_wire)), max_size=5)))
    order = data.draw(
        st.permutations([Side.CLIENT] * len(c_pieces) + [Side.SERVER] * len(s_pieces))
    )
    feeds = {Side.CLIENT: iter(c_pieces), Side.SERVER: iter(s_pieces)}
    pieces = [(side, next(feeds[side])) for side in order]
    runs = []
    for fast in (True, False):
        config = RelayConfig(
            max_frame_size=BIG,
            max_message_size=BIG,
            deflate=params,
            records=not fast,
            want_messages=True,
        )
        with pytest.MonkeyPatch.context() as patch:
            if not fast:
                patch.setattr(
                    takes, "whole_deflated", lambda d, m, f, x, k, p, i, c, b: (0, [], p, None)
                )
            relay = _Hooks(config, _rewrite)
            for side, piece in pieces:
                relay.receive(side, piece)
            runs.append(relay)
    quick, general = runs
    assert quick.seen == general.seen
    assert parse(bytes(quick.sent[Side.SERVER]), masked=True) == parse(
        bytes(general.sent[Side.SERVER]), masked=True
    )
    assert quick.sent[Side.CLIENT] == general.sent[Side.CLIENT]
    assert quick.notes == general.notes
    assert quick.transports == general.transports
    for side in (Side.CLIENT, Side.SERVER):
        q, g = quick.leg(side), general.leg(side)
        assert (q.messages, q.frames, q.dropped, q.recompress) == (
            g.messages,
            g.frames,
            g.dropped,
            g.recompress,
        )
        assert q.violation == g.violation
        assert q.reader.bytes_received == g.reader.bytes_received


def test_a_rewritten_stream_reads_back_with_the_receivers_context() -> None:
    """Under context takeover, every message after the first change is recompressed by the
    proxy: the receiver, inflating with one running context, reads exactly the changes."""
    texts = [b"hello one", b"hello two!", b"hello three", b"hello four"]
    wire = client_bytes(*(Wire(TEXT, p, rsv=RSV1) for p in compressed(texts)))
    relay = _Hooks(
        RelayConfig(max_frame_size=BIG, max_message_size=BIG, deflate=DEFAULTS, want_messages=True),
        _rewrite,
    )
    relay.receive(Side.CLIENT, wire)
    reader = FrameReader(masked=True, max_frame_size=BIG, max_message_size=BIG)
    reader.inflater = Inflater(DEFAULTS, True, BIG)
    contents = [getattr(e, "content", None) for e in reader.receive_data(relay.sent[Side.SERVER])]
    assert contents == [b"heLLo one!", b"hello two!", b"heLLo three!", b"hello four"]
    assert relay.leg(Side.CLIENT).recompress
    assert relay.notes == [(Side.CLIENT, "a message was changed: recompressing from now on")]


@pytest.mark.parametrize("take", ["take_deflated", "take_whole_deflated"])
def test_a_failure_ends_the_run_with_the_key_for_its_frame_unused(
    take: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bad frame was to take the block's last key: the run ends there, with no new block
    drawn to walk on, and the failure is reported once, where it was."""
    keys = fastpath.MaskKeys()
    keys.position = len(keys.block) - 8  # two keys left
    monkeypatch.setattr(takes, "MASK_KEYS", keys)
    reader = FrameReader(masked=True, max_frame_size=BIG, max_message_size=BIG)
    reader.inflater = Inflater(DEFAULTS, True, BIG)
    good = client_bytes(Wire(TEXT, compressed([b"fine"])[0], rsv=RSV1))
    bad = client_bytes(Wire(TEXT, b"\xff\xff", rsv=RSV1))
    after = client_bytes(Wire(TEXT, b"never"))
    budget = () if take == "take_deflated" else (1 << 30,)
    result = getattr(reader, take)(good + bad + after, *budget)
    assert result[0] == len(good)
    assert keys.position == len(keys.block) - 4
    events = reader.receive_data(bad + after)
    assert len(events) == 1 and getattr(events[0], "code", None) == 1007
