"""The fast path for permessage-deflate: ``relay_deflated`` (C and pure twin),
``Inflater.inflate_message`` and ``FrameReader.take_deflated`` in the relay.

The contract: whole, final compressed frames are inflated once with the running context (to
check limits and UTF-8, and so the context follows the sender's) and forwarded as they came;
whatever else stops the run; a failure inside a compressed frame fails the connection exactly
as the general reader would. A property test holds a quiet relay (fast path) to a recording one
(general path) on random streams of compressed, plain, fragmented and broken messages.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sansio.conftest import (
    BIG,
    IN_CI,
    Wire,
    assemble,
    client_bytes,
    require_extension,
    server_bytes,
    split,
)
from tests.sansio.driver import Driven
from wsproxy.exceptions import ProtocolError
from wsproxy.sansio import fastpath, takes
from wsproxy.sansio.deflate import INFLATE_PIECE, DeflateParams, Deflater, Inflater
from wsproxy.sansio.endpoint import FrameReader
from wsproxy.sansio.frames import RSV1, Opcode
from wsproxy.sansio.legs import Side
from wsproxy.sansio.relay import RelayConfig

TEXT, BINARY, PING, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.CONTINUATION
TAIL = b"\x00\x00\xff\xff"
KEYS = bytes(range(1, 65))
RelayDeflated = fastpath.RelayDeflated


def _c_not_built(*args: object) -> Any:
    raise RuntimeError("wsproxy.sansio._speedups is not built: pip install must compile it in CI")


IMPLEMENTATIONS = [
    pytest.param(
        fastpath.relay_deflated_c or _c_not_built,
        id="c",
        marks=pytest.mark.skipif(
            fastpath.relay_deflated_c is None and not IN_CI,
            reason="wsproxy.sansio._speedups is not built (no compiler at install time)",
        ),
    ),
    pytest.param(fastpath.relay_deflated_py, id="python"),
]


DEFAULTS = DeflateParams()  # context takeover, 15-bit windows: what browsers and ws agree on


def compressed(messages: list[bytes], params: DeflateParams = DEFAULTS) -> list[bytes]:
    """The payloads a client with context takeover sends for ``messages``."""
    deflater = Deflater(params, True)
    return [deflater.compress(m) for m in messages]


class Spy:
    """An inflate callable that records what it was given."""

    def __init__(self, inflater: Inflater) -> None:
        self.inflater = inflater
        self.inputs: list[bytes] = []
        self.outputs: list[bytes] = []

    def __call__(self, data: bytes) -> bytes:
        self.inputs.append(data)
        out = self.inflater.inflate_message(data)
        self.outputs.append(out)
        return out


def spy(from_client: bool = True, limit: int | None = BIG) -> Spy:
    return Spy(Inflater(DeflateParams(), from_client, limit))


def parse(data: bytes, *, masked: bool) -> list[Any]:
    """What a peer with permessage-deflate reads from ``data``, frame by frame (payloads as
    on the wire)."""
    reader = FrameReader(masked=masked, max_frame_size=BIG, max_message_size=BIG)
    reader.inflater = Inflater(DeflateParams(), masked, BIG)
    return assemble(reader.receive_data(data))


MESSAGES = [b"hello hello hello", "héllo wörld ".encode() * 3, b"", b"hello again"]


# --- relay_deflated ------------------------------------------------------------------------------


@pytest.mark.parametrize("relay", IMPLEMENTATIONS)
def test_server_frames_are_inflated_and_left_as_they_are(relay: RelayDeflated) -> None:
    payloads = compressed(MESSAGES)
    frames = [Wire(TEXT, p, rsv=RSV1) for p in payloads] + [Wire(BINARY, b"plain")]
    data = server_bytes(*frames)
    inflate = spy(from_client=False)
    assert relay(data, False, BIG, BIG, KEYS, 0, inflate, 1000) == (len(data), None, 5, 0, None)
    assert inflate.outputs == MESSAGES
    # Each payload with the RFC 7692 tail appended; an empty payload is passed empty.
    assert inflate.inputs == [p + TAIL if p else b"" for p in payloads]


@pytest.mark.parametrize("relay", IMPLEMENTATIONS)
def test_client_frames_are_remasked_and_not_recompressed(relay: RelayDeflated) -> None:
    payloads = compressed(MESSAGES)
    frames = [Wire(TEXT, p, rsv=RSV1) for p in payloads]
    data = client_bytes(*frames)
    inflate = spy()
    end, out, count, key_pos, error = relay(data, True, BIG, BIG, KEYS, 4, inflate, 1000)
    assert (end, count, key_pos, error) == (len(data), 4, 20, None)
    assert out is not None and parse(out, masked=True) == frames
    assert out[2:6] == KEYS[4:8]
    assert inflate.outputs == MESSAGES


@pytest.mark.parametrize("relay", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "stop",
    [
        Wire(TEXT, b"\xf2\x48\xcd", fin=False, rsv=RSV1),  # a compressed fragment
        Wire(TEXT, b"\xf2\x48\xcd", rsv=RSV1 | 0x20),  # RSV2 too
        Wire(PING, b"p"),
        Wire(TEXT, bytes(11), rsv=RSV1),  # over max_compressed (10)
    ],
)
def test_the_run_stops_before_anything_else_uninflated(relay: RelayDeflated, stop: Wire) -> None:
    for masked, make in ((True, client_bytes), (False, server_bytes)):
        head = make(Wire(TEXT, compressed([b"ok"])[0], rsv=RSV1))
        data = head + make(stop)
        inflate = spy()
        end, _, count, _, error = relay(data, masked, BIG, BIG, KEYS, 0, inflate, 10)
        assert (end, count, error) == (len(head), 1, None)
        assert len(inflate.inputs) == 1


@pytest.mark.parametrize("relay", IMPLEMENTATIONS)
def test_limits_apply_to_each_kind(relay: RelayDeflated) -> None:
    packed = compressed([b"a" * 50])[0]
    data = server_bytes(Wire(BINARY, packed, rsv=RSV1), Wire(BINARY, bytes(60)))
    first = 2 + len(packed)
    # max_frame bounds both kinds on the wire; max_message the plain one; max_compressed the
    # compressed one, whose content max_message bounds too.
    assert relay(data, False, len(packed), BIG, KEYS, 0, spy(False), BIG)[:3] == (first, None, 1)
    assert relay(data, False, BIG, 50, KEYS, 0, spy(False), BIG)[:3] == (first, None, 1)
    assert relay(data, False, BIG, BIG, KEYS, 0, spy(False), len(packed) - 1)[:3] == (0, None, 0)
    # A caller whose max_compressed lets more through than the limit: the limit still holds.
    end, _, count, _, error = relay(data, False, BIG, 49, KEYS, 0, spy(False), BIG)
    assert (end, count, error) == (0, 0, (1009, "message inflates beyond 49 bytes"))


@pytest.mark.parametrize("relay", IMPLEMENTATIONS)
def test_out_of_keys_stops_before_inflating(relay: RelayDeflated) -> None:
    data = client_bytes(*(Wire(TEXT, p, rsv=RSV1) for p in compressed([b"one", b"two"])))
    inflate = spy()
    end, out, count, key_pos, error = relay(data, True, BIG, BIG, KEYS, 56, inflate, BIG)
    assert (count, key_pos, error) == (2, 64, None)
    end, out, count, key_pos, error = relay(data, True, BIG, BIG, KEYS, 60, spy(), BIG)
    assert (count, key_pos, error) == (1, 64, None)
    assert out is not None and len(out) == end < len(data)


@pytest.mark.parametrize("relay", IMPLEMENTATIONS)
def test_what_inflate_raises_stops_the_run_at_its_frame(relay: RelayDeflated) -> None:
    good = server_bytes(Wire(TEXT, compressed([b"fine"])[0], rsv=RSV1))
    data = good + server_bytes(Wire(TEXT, b"\xff\xff\xff", rsv=RSV1))
    end, out, count, key_pos, error = relay(data, False, BIG, BIG, KEYS, 0, spy(False), BIG)
    assert (end, out, count, key_pos) == (len(good), None, 1, 0)
    assert isinstance(error, ProtocolError) and error.code == 1007


@pytest.mark.parametrize("relay", IMPLEMENTATIONS)
def test_text_that_inflates_to_bad_utf8_stops_the_run(relay: RelayDeflated) -> None:
    bad, good = compressed([b"\xed\xa0\x80", b"binary \xff is fine"])
    for masked, make in ((True, client_bytes), (False, server_bytes)):
        data = make(Wire(BINARY, good, rsv=RSV1))
        inflate = Spy(Inflater(DeflateParams(), True, BIG))
        inflate.inflater.inflate_message(bad + TAIL)  # the context the binary one refers to
        whole = data + make(Wire(TEXT, bad, rsv=RSV1))
        end, _, count, _, error = relay(whole, masked, BIG, BIG, KEYS, 0, inflate, BIG)
        assert (end, count) == (len(data), 1)
        assert error == (1007, "invalid UTF-8 in a text message")


@pytest.mark.parametrize("relay", IMPLEMENTATIONS)
def test_plain_frames_are_checked_as_relay_frames_checks_them(relay: RelayDeflated) -> None:
    data = server_bytes(Wire(TEXT, b"ok"), Wire(TEXT, b"\xff"))
    assert relay(data, False, BIG, BIG, KEYS, 0, spy(False), BIG) == (4, None, 1, 0, None)
    assert relay(b"", False, BIG, BIG, KEYS, 0, spy(False), BIG) == (0, None, 0, 0, None)
    with pytest.raises(ValueError, match="key_pos"):
        relay(data, False, BIG, BIG, KEYS, -1, spy(False), BIG)


def test_the_c_one_wants_bytes_back() -> None:
    relay_deflated_c = require_extension(fastpath.relay_deflated_c)
    data = server_bytes(Wire(TEXT, compressed([b"x"])[0], rsv=RSV1))

    def not_bytes(payload: bytes) -> Any:
        return bytearray(payload)

    with pytest.raises(TypeError, match="must return bytes"):
        relay_deflated_c(data, False, BIG, BIG, KEYS, 0, not_bytes, BIG)


# --- Inflater.inflate_message --------------------------------------------------------------------


@pytest.mark.parametrize("takeover", [True, False])
def test_inflate_message_is_decompress_in_one_call(takeover: bool) -> None:
    params = DeflateParams(client_no_context_takeover=not takeover)
    messages = [b"abc" * 30, b"", b"abc" * 31 + b"d", bytes(range(256)) * 3]
    payloads = compressed(messages, params)
    fast, slow = Inflater(params, True, BIG), Inflater(params, True, BIG)
    for payload, message in zip(payloads, messages, strict=True):
        assert fast.inflate_message(payload + TAIL if payload else b"") == message
        assert slow.decompress(payload) == message
    assert fast._window == slow._window  # what a later BFINAL restart would prime with


def test_inflate_message_past_a_final_block() -> None:
    """RFC 7692 7.2.3.4: a message that ends its DEFLATE stream; later ones still refer back."""
    first = zlib.compressobj(wbits=-15)
    ended = first.compress(b"shared window text") + first.flush(zlib.Z_FINISH)
    # The next messages refer back to the first, across the restart.
    nxt = zlib.compressobj(wbits=-15, zdict=b"shared window text")
    second = nxt.compress(b"shared window text!") + nxt.flush(zlib.Z_SYNC_FLUSH)
    inflater = Inflater(DeflateParams(), True, BIG)
    assert inflater.inflate_message(ended + b"\x00" + TAIL) == b"shared window text"
    assert inflater.inflate_message(second[:-4] + TAIL) == b"shared window text!"
    assert not inflater.pending


def test_inflate_message_failures() -> None:
    with pytest.raises(ProtocolError) as bad:
        Inflater(DeflateParams(), True, BIG).inflate_message(b"\xff\xff\xff" + TAIL)
    assert bad.value.code == 1007
    packed = compressed([bytes(1000)])[0]
    with pytest.raises(ProtocolError) as big:  # a caller that ignored most_compressed
        Inflater(DeflateParams(), True, 999).inflate_message(packed + TAIL)
    assert big.value.code == 1009


def test_most_compressed_keeps_the_content_within_both_bounds() -> None:
    params = DeflateParams()
    assert Inflater(params, True, None).most_compressed() == (INFLATE_PIECE - 1) // 1032 - 4
    assert Inflater(params, True, 10_000).most_compressed() == 10_000 // 1032 - 4
    assert Inflater(params, True, 10).most_compressed() == 0
    # The worst case: a run of zeros, the best DEFLATE can do.
    most = Inflater(params, True, 100_000).most_compressed()
    encoder = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = bytes(200_000)
    bomb = (encoder.compress(data) + encoder.flush(zlib.Z_SYNC_FLUSH))[:-4]
    take = bomb[:most]
    out = zlib.decompressobj(wbits=-15).decompress(take + TAIL)
    assert len(out) <= 100_000


# --- in the relay --------------------------------------------------------------------------------


def _relayed(
    pieces: list[tuple[Side, bytes]], records: bool, **config: Any
) -> tuple[bytes, bytes, Driven]:
    relay = Driven(
        RelayConfig(
            max_frame_size=BIG,
            max_message_size=config.pop("max_message_size", BIG),
            records=records,
            deflate=DeflateParams(),
            **config,
        )
    )
    to_server, to_client = b"", b""
    for side, piece in pieces:
        relay.receive(side, piece)
        to_server += relay.data_to_send(Side.SERVER)
        to_client += relay.data_to_send(Side.CLIENT)
    return to_server, to_client, relay


def _wire(kind: str, text: bytes, deflater: Deflater) -> list[Wire]:
    """One message as a sender with context takeover puts it on the wire."""
    opcode = BINARY if kind.startswith("binary") else TEXT
    if kind.endswith("plain"):
        return [Wire(opcode, text)]
    if kind.endswith("fragmented"):
        half = len(text) // 2
        return [
            Wire(opcode, deflater.compress_piece(text[:half], False), fin=False, rsv=RSV1),
            Wire(CONT, deflater.compress_piece(text[half:], True)),
        ]
    if kind == "corrupt":
        return [Wire(TEXT, b"\xff\xff\xff\xff", rsv=RSV1)]
    return [Wire(opcode, deflater.compress(text), rsv=RSV1)]


_KINDS = st.sampled_from(
    ["text", "binary", "text plain", "binary fragmented", "text fragmented", "corrupt", "ping"]
)
_TEXTS = st.sampled_from(
    [b"", b"hello", b"hello hello hello", "é€😀 unicode".encode(), b"\xed\xa0\x80", bytes(300)]
)


def _stream(draw: st.DrawFn, masked: bool) -> tuple[bytes, list[Wire]]:
    deflater = Deflater(DeflateParams(), masked)
    frames: list[Wire] = []
    for kind, text in draw(st.lists(st.tuples(_KINDS, _TEXTS), max_size=8)):
        if kind == "ping":
            frames.append(Wire(PING, text[:10]))
        else:
            frames += _wire(kind, text, deflater)
    return (client_bytes if masked else server_bytes)(*frames), frames


@settings(max_examples=150, deadline=None)
@given(data=st.data(), limit=st.sampled_from([BIG, 200]))
def test_a_quiet_relay_does_what_the_general_path_does(data: st.DataObject, limit: int) -> None:
    c_wire, _ = _stream(data.draw, True)
    s_wire, _ = _stream(data.draw, False)
    c_pieces = split(c_wire, data.draw(st.lists(st.integers(0, len(c_wire)), max_size=5)))
    s_pieces = split(s_wire, data.draw(st.lists(st.integers(0, len(s_wire)), max_size=5)))
    order = data.draw(
        st.permutations([Side.CLIENT] * len(c_pieces) + [Side.SERVER] * len(s_pieces))
    )
    feeds = {Side.CLIENT: iter(c_pieces), Side.SERVER: iter(s_pieces)}
    pieces = [(side, next(feeds[side])) for side in order]
    fast_server, fast_client, fast = _relayed(pieces, False, max_message_size=limit)
    slow_server, slow_client, slow = _relayed(pieces, True, max_message_size=limit)
    assert parse(fast_server, masked=True) == parse(slow_server, masked=True)
    assert fast_client == slow_client
    assert fast.transports == slow.transports
    for side in (Side.CLIENT, Side.SERVER):
        fast_leg, slow_leg = fast.leg(side), slow.leg(side)
        assert fast_leg.messages == slow_leg.messages
        assert fast_leg.frames == slow_leg.frames
        assert fast_leg.violation == slow_leg.violation
        assert fast_leg.reader.bytes_received == slow_leg.reader.bytes_received


def test_a_quiet_relay_takes_compressed_messages_on_the_fast_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    inner: Callable[..., Any] = fastpath.relay_deflated

    def counting(*args: Any) -> Any:
        result = inner(*args)
        calls.append(result[2])
        return result

    monkeypatch.setattr(takes, "relay_deflated", counting)
    messages = [b"one message", b"one message again", b"and a third"]
    wire = client_bytes(*(Wire(TEXT, p, rsv=RSV1) for p in compressed(messages)))
    to_server, _, relay = _relayed([(Side.CLIENT, wire)], False)
    assert calls == [3]
    assert relay.client.messages == 3
    reader = FrameReader(masked=True, max_frame_size=BIG, max_message_size=BIG)
    reader.inflater = Inflater(DeflateParams(), True, BIG)
    contents = [e.content for e in reader.receive_data(to_server)]  # type: ignore[union-attr]
    assert contents == messages


def test_a_failure_in_the_fast_path_is_reported_once() -> None:
    wire = client_bytes(
        Wire(TEXT, compressed([b"fine"])[0], rsv=RSV1), Wire(TEXT, b"\xff\xff", rsv=RSV1)
    )
    to_server, _, relay = _relayed([(Side.CLIENT, wire)], False)
    assert parse(to_server, masked=True)[0] == Wire(TEXT, compressed([b"fine"])[0], rsv=RSV1)
    violation = relay.client.violation
    assert violation is not None and violation.code == 1007
    assert relay.client.reader.receive_data(b"more") == []
    assert relay.client.reader.bytes_received == len(wire)


def test_an_unexpected_error_of_inflate_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = FrameReader(masked=False, max_frame_size=BIG, max_message_size=BIG)
    inflater = Inflater(DeflateParams(), False, BIG)

    def broken(payload: bytes) -> bytes:
        raise KeyError("a bug")

    monkeypatch.setattr(inflater, "fast_inflate", lambda: broken)
    reader.inflater = inflater
    with pytest.raises(KeyError):
        reader.take_deflated(server_bytes(Wire(TEXT, b"\x00", rsv=RSV1)))
    assert FrameReader(masked=False, max_frame_size=1, max_message_size=1).take_deflated(
        b"\x81\x00"
    ) == (0, None, 0)


# --- the direct form: (decoder, window, after_final) ---------------------------------------------


@pytest.mark.parametrize("relay", IMPLEMENTATIONS)
def test_the_direct_form_inflates_and_keeps_the_window(relay: RelayDeflated) -> None:
    messages = [b"x" * 40_000, b"small", b"y" * 30_000, b"z" * 30_000, b"tail"]
    data = server_bytes(*(Wire(BINARY, p, rsv=RSV1) for p in compressed(messages)))
    fast, slow = Inflater(DEFAULTS, True, BIG), Inflater(DEFAULTS, True, BIG)
    inflate = fast.fast_inflate()
    assert isinstance(inflate, tuple)
    assert relay(data, False, BIG, BIG, KEYS, 0, inflate, 1000) == (len(data), None, 5, 0, None)
    for payload in compressed(messages):
        slow.decompress(payload)
    assert bytes(fast._window[-32768:]) == bytes(slow._window[-32768:])
    assert len(fast._window) <= 65536


@pytest.mark.parametrize("relay", IMPLEMENTATIONS)
def test_the_direct_form_stops_after_a_final_block(relay: RelayDeflated) -> None:
    first = zlib.compressobj(wbits=-15)
    ended = first.compress(b"shared window text") + first.flush(zlib.Z_FINISH) + b"\x00"
    nxt = zlib.compressobj(wbits=-15, zdict=b"shared window text")
    second = (nxt.compress(b"shared window text!") + nxt.flush(zlib.Z_SYNC_FLUSH))[:-4]
    head = server_bytes(Wire(TEXT, ended, rsv=RSV1))
    data = head + server_bytes(Wire(TEXT, second, rsv=RSV1))
    inflater = Inflater(DEFAULTS, False, BIG)
    assert relay(data, False, BIG, BIG, KEYS, 0, inflater.fast_inflate(), BIG) == (
        len(head),
        None,
        1,
        0,
        None,
    )
    # Asked anew, the inflater's new decoder goes on from the restart.
    rest = data[len(head) :]
    assert relay(rest, False, BIG, BIG, KEYS, 0, inflater.fast_inflate(), BIG)[2:] == (1, 0, None)


@pytest.mark.parametrize("relay", IMPLEMENTATIONS)
def test_the_direct_form_reports_what_zlib_raises(relay: RelayDeflated) -> None:
    inflater = Inflater(DEFAULTS, False, BIG)
    data = server_bytes(Wire(BINARY, b"\xff\xff\xff", rsv=RSV1))
    end, _, count, _, error = relay(data, False, BIG, BIG, KEYS, 0, inflater.fast_inflate(), BIG)
    assert (end, count) == (0, 0) and isinstance(error, zlib.error)
    failure = inflater.failure(error)
    assert failure.code == 1007 and failure.reason.startswith("invalid permessage-deflate data")
    assert inflater.failure(failure) is failure
    with pytest.raises(KeyError):
        inflater.failure(KeyError("a bug"))


def test_without_context_takeover_the_fast_path_calls_inflate_message() -> None:
    params = DeflateParams(server_no_context_takeover=True)
    inflater = Inflater(params, False, BIG)
    assert inflater.fast_inflate() == inflater.inflate_message
    assert isinstance(Inflater(params, True, BIG).fast_inflate(), tuple)


def test_the_c_one_checks_the_direct_form() -> None:
    c = require_extension(fastpath.relay_deflated_c)
    decoder = zlib.decompressobj(wbits=-15)
    with pytest.raises(TypeError, match="callable or"):
        c(b"", False, BIG, BIG, KEYS, 0, (decoder, b"not a bytearray", bytes), BIG)  # type: ignore[arg-type]
    ended = zlib.compressobj(wbits=-15)
    final = ended.compress(b"x") + ended.flush(zlib.Z_FINISH)
    data = server_bytes(Wire(BINARY, final, rsv=RSV1))

    def not_bytes(content: bytes) -> Any:
        return bytearray(content)

    end, _, _, _, error = c(data, False, BIG, BIG, KEYS, 0, (decoder, bytearray(), not_bytes), BIG)
    assert end == 0 and isinstance(error, TypeError)


def test_inflate_message_keeps_the_window_as_resume_does() -> None:
    """The window a BFINAL restart primes with: the last 32 KiB at least, never much more."""
    messages = [bytes(40_000), b"x" * 20_000, b"y" * 30_000, b"z" * 30_000, b""]
    fast, slow = Inflater(DEFAULTS, True, BIG), Inflater(DEFAULTS, True, BIG)
    for payload, message in zip(compressed(messages), messages, strict=True):
        assert fast.inflate_message(payload + TAIL) == message == slow.decompress(payload)
        assert bytes(fast._window[-32768:]) == bytes(slow._window[-32768:])
        assert len(fast._window) <= 65536
    assert fast.inflate_message(b"") == b""  # an entirely empty payload: an empty message
    assert fast.feed_piece(b"") == b"" and not fast.pending
