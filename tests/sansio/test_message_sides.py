"""Message hooks for one peer only (``RelayConfig.message_sides``): the other peer's frames take
the quiet path, and every byte out is what a relay hooking both peers sends when its hooks
leave that peer's messages alone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sansio.conftest import BIG, Wire, client_bytes, frame_sequences, server_bytes, split
from tests.sansio.test_deflate_fastpath import DEFAULTS, _stream, compressed, parse
from tests.sansio.test_fastpath import _Hooks
from wsproxy.sansio.frames import RSV1, Opcode
from wsproxy.sansio.items import Message
from wsproxy.sansio.legs import Side
from wsproxy.sansio.relay import RelayConfig


def _client_only(message: Message) -> None:
    """Changes or drops some client messages; a server message it leaves as it is."""
    if not message.from_client:
        return
    size = len(message.content)
    if size % 2:
        message.content = message.content.replace(b"l", b"L") + b"!"
    elif size % 3 == 0 and size:
        message.drop()


@pytest.mark.parametrize("records", [False, True])
@pytest.mark.parametrize("deflate", [True, False])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_the_unhooked_peer_goes_the_quiet_way_with_the_same_bytes(
    records: bool, deflate: bool, data: st.DataObject
) -> None:
    if deflate:
        c_wire, _ = _stream(data.draw, True)
        s_wire, _ = _stream(data.draw, False)
    else:  # fragments, controls, bad frames: everything the reader may meet
        c_wire = client_bytes(*data.draw(frame_sequences(close=False)))
        s_wire = server_bytes(*data.draw(frame_sequences(close=False)))
    c_pieces = split(c_wire, data.draw(st.lists(st.integers(0, len(c_wire)), max_size=5)))
    s_pieces = split(s_wire, data.draw(st.lists(st.integers(0, len(s_wire)), max_size=5)))
    order = data.draw(
        st.permutations([Side.CLIENT] * len(c_pieces) + [Side.SERVER] * len(s_pieces))
    )
    feeds = {Side.CLIENT: iter(c_pieces), Side.SERVER: iter(s_pieces)}
    pieces = [(side, next(feeds[side])) for side in order]
    runs = []
    for sides in (frozenset([Side.CLIENT]), frozenset(Side), frozenset()):
        config = RelayConfig(
            max_frame_size=BIG,
            max_message_size=BIG,
            deflate=DEFAULTS if deflate else None,
            records=records,
            want_messages=bool(sides),
            message_sides=sides,
        )
        relay = _Hooks(config, _client_only)
        for side, piece in pieces:
            relay.receive(side, piece)
        runs.append(relay)
    one, both, none = runs
    assert not one.relay.server.want_messages and one.relay.server.quiet is not records
    # The client's messages as with hooks on both peers, the server's as with none.
    assert one.seen == [(side, seen) for side, seen in both.seen if side is Side.CLIENT]
    assert parse(bytes(one.sent[Side.SERVER]), masked=True) == parse(
        bytes(both.sent[Side.SERVER]), masked=True
    )
    assert one.sent[Side.CLIENT] == none.sent[Side.CLIENT]
    assert [n for n in one.notes if n[0] is Side.CLIENT] == [
        n for n in both.notes if n[0] is Side.CLIENT
    ]
    assert [n for n in one.notes if n[0] is Side.SERVER] == [
        n for n in none.notes if n[0] is Side.SERVER
    ]
    assert one.transports in (both.transports, none.transports)
    for side, like in ((Side.CLIENT, both), (Side.SERVER, none)):
        a, b = one.leg(side), like.leg(side)
        assert (a.messages, a.frames, a.dropped, a.recompress, a.violation) == (
            b.messages,
            b.frames,
            b.dropped,
            b.recompress,
            b.violation,
        )
    if records:
        for side, like in ((Side.CLIENT, both), (Side.SERVER, none)):
            assert _records(one, side) == _records(like, side)


def _records(run: _Hooks, side: Side) -> list[tuple[object, ...]]:
    return [
        (r.opcode, r.fin, r.length, r.payload, r.verdict, r.by)
        for r in run.records
        if r.side is side
    ]


def test_what_is_injected_towards_the_unhooked_peer_goes_straight_out() -> None:
    """Injected towards the client, whose peer's messages no hook reads: no hook sees it, it
    goes out at once; towards the server it goes through the hooks, as before."""
    config = RelayConfig(
        max_frame_size=BIG,
        max_message_size=BIG,
        deflate=DEFAULTS,
        want_messages=True,
        message_sides=frozenset([Side.CLIENT]),
    )
    relay = _Hooks(config, _client_only)
    relay.run(relay.relay.inject(Side.CLIENT, Opcode.TEXT, b"to the client"))
    assert relay.seen == []
    assert relay.sent[Side.CLIENT] == b"\x81\x0dto the client"
    relay.run(relay.relay.inject(Side.SERVER, Opcode.TEXT, b"to the server"))
    assert relay.seen == [(Side.CLIENT, b"to the server")]
    wire = client_bytes(Wire(Opcode.TEXT, compressed([b"hello"])[0], rsv=RSV1))
    relay.receive(Side.CLIENT, wire)
    assert relay.seen[-1] == (Side.CLIENT, b"hello")
