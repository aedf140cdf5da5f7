"""legs.py: one leg's close handshake as a table, and what the relay asks of a leg."""

from __future__ import annotations

import itertools

import pytest

from tests.sansio.conftest import BIG
from wsproxy.sansio.deflate import DeflateParams
from wsproxy.sansio.endpoint import FrameReader
from wsproxy.sansio.framewriter import FrameWriter
from wsproxy.sansio.legs import (
    TRANSITIONS,
    CloseFrame,
    Leg,
    LegEvent,
    LegState,
    Side,
    StateError,
)

S, E = LegState, LegEvent

# The table of the module docstring, written out: (from, event) -> to.
EXPECTED = {
    (S.OPEN, E.SEND_CLOSE): S.CLOSE_SENT,
    (S.OPEN, E.RECEIVE_CLOSE): S.CLOSE_RECEIVED,
    (S.CLOSE_SENT, E.RECEIVE_CLOSE): S.CLOSED,
    (S.CLOSE_RECEIVED, E.SEND_CLOSE): S.CLOSED,
    (S.OPEN, E.PEER_GONE): S.GONE,
    (S.CLOSE_SENT, E.PEER_GONE): S.GONE,
    (S.CLOSE_RECEIVED, E.PEER_GONE): S.GONE,
    (S.CLOSED, E.PEER_GONE): S.GONE,
    (S.OPEN, E.ABORT): S.ABORTED,
    (S.CLOSE_SENT, E.ABORT): S.ABORTED,
    (S.CLOSE_RECEIVED, E.ABORT): S.ABORTED,
    (S.CLOSED, E.ABORT): S.ABORTED,
    (S.OPEN, E.END): S.ENDED,
    (S.CLOSE_SENT, E.END): S.ENDED,
    (S.CLOSE_RECEIVED, E.END): S.ENDED,
    (S.CLOSED, E.END): S.ENDED,
    (S.ENDED, E.PEER_GONE): S.GONE,
    (S.ABORTED, E.PEER_GONE): S.GONE,
}
LIVE = {S.OPEN, S.CLOSE_SENT, S.CLOSE_RECEIVED, S.CLOSED}


def leg(side: Side = Side.CLIENT, state: LegState = S.OPEN) -> Leg:
    from_client = side is Side.CLIENT
    reader = FrameReader(masked=from_client, max_frame_size=BIG, max_message_size=BIG)
    return Leg(side, reader, FrameWriter(mask=not from_client), state=state)


def test_the_table_is_the_one_of_the_docstring() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("start", "event"), sorted(EXPECTED, key=str))
def test_every_transition(start: LegState, event: LegEvent) -> None:
    one = leg(state=start)
    ends_transport = one.change(event)
    assert one.state is EXPECTED[start, event]
    # The shell is told to close or abort exactly when the leg leaves its live states.
    assert ends_transport == (start in LIVE and one.state not in LIVE)


MISSING = sorted(set(itertools.product(S, E)) - set(EXPECTED), key=str)


@pytest.mark.parametrize(("start", "event"), MISSING)
def test_a_transition_not_in_the_table_is_a_state_error(start: LegState, event: LegEvent) -> None:
    one = leg(Side.SERVER, start)
    with pytest.raises(StateError, match=f"server leg: no {event} from {start}"):
        one.change(event)
    assert one.state is start


def test_a_second_close_either_way_is_refused() -> None:
    """RFC 6455 5.5.1: one close frame each way; the relay never asks for a second."""
    for start, event in ((S.CLOSE_SENT, E.SEND_CLOSE), (S.CLOSE_RECEIVED, E.RECEIVE_CLOSE)):
        with pytest.raises(StateError):
            leg(state=start).change(event)


@pytest.mark.parametrize(
    ("state", "can_send", "live", "gone"),
    [
        (S.OPEN, True, True, False),
        (S.CLOSE_RECEIVED, True, True, False),
        (S.CLOSE_SENT, False, True, False),
        (S.CLOSED, False, True, False),
        (S.ENDED, False, False, False),
        (S.ABORTED, False, False, False),
        (S.GONE, False, False, True),
    ],
)
def test_what_each_state_allows(state: LegState, can_send: bool, live: bool, gone: bool) -> None:
    one = leg(state=state)
    assert (one.can_send, one.live, one.gone) == (can_send, live, gone)


def test_close_frames_sent_and_received() -> None:
    one = leg()
    assert (one.close_received, one.close_sent, one.closed_cleanly) == (False, False, False)
    assert (one.received_code, one.received_reason) == (None, "")
    one.received = CloseFrame(1001, "going", b"\x03\xe9going")
    assert (one.close_received, one.received_code, one.received_reason) == (True, 1001, "going")
    assert not one.closed_cleanly
    one.sent = CloseFrame(None)
    assert one.close_sent and one.closed_cleanly


def test_hooked_and_context_takeover() -> None:
    client, server = leg(Side.CLIENT), leg(Side.SERVER)
    assert not client.hooked and not client.context_takeover  # no deflate at all
    client.want_messages = True
    server.want_frames = True
    assert client.hooked and server.hooked
    params = DeflateParams(client_no_context_takeover=True)
    client.deflate_params = server.deflate_params = params
    assert (client.context_takeover, server.context_takeover) == (False, True)


def test_side_other() -> None:
    assert (Side.CLIENT.other, Side.SERVER.other) == (Side.SERVER, Side.CLIENT)
