"""relay.py and hookseam.py: the exact commands each entry point returns, as playbooks.

Every test feeds the relay what a peer sends (or an event of the shell: a timer, hooks done,
a plugin's inject, close or abort) and compares the whole list of commands it returns, in
order: records and notes, then the bytes for each peer, then transport commands, timers,
hooks to run, reading paused or resumed, Finished. A ``Send`` is shown as ``Sent``: the frames
the receiving peer reads from it with its own FrameReader (the server's checks that the proxy
masks); every other command is compared as it is, ``RunHooks`` with the very item pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.sansio.conftest import BIG, Wire, client_bytes, server_bytes
from wsproxy.sansio.commands import (
    AbortTransport,
    CloseTransport,
    Command,
    Finished,
    Note,
    PauseReading,
    Record,
    ResumeReading,
    RunHooks,
    Send,
    StartTimer,
    Timer,
)
from wsproxy.sansio.deflate import DeflateParams, Deflater, Inflater
from wsproxy.sansio.endpoint import FrameReader
from wsproxy.sansio.events import ControlFrame, DataChunk, Violation
from wsproxy.sansio.fastpath import EVENT_COST
from wsproxy.sansio.frames import RSV1, Opcode, serialize_close
from wsproxy.sansio.hookseam import HOOK_BACKLOG
from wsproxy.sansio.items import FrameEvent, Message
from wsproxy.sansio.legs import LegState
from wsproxy.sansio.relay import (
    ERROR_GRACE,
    STREAM_THRESHOLD,
    FrameRecord,
    Leg,
    Relay,
    RelayConfig,
    Side,
)

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG
CLIENT, SERVER = Side.CLIENT, Side.SERVER
TIMEOUT = 5.0  # RelayConfig's close_timeout


def close(code: int, reason: str = "") -> Wire:
    return Wire(CLOSE, serialize_close(code, reason))


class Sent:
    """A ``Send`` as its peer reads it: the frames it completes (a frame streamed over several
    sends shows in the one that ends it), violations included."""

    def __init__(self, side: Side, *frames: Wire | Violation) -> None:
        self.side = side
        self.frames = list(frames)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sent) and (self.side, self.frames) == (other.side, other.frames)

    def __repr__(self) -> str:
        return f"Sent({self.side.name}, {', '.join(map(repr, self.frames))})"


@dataclass
class Peer:
    """One peer reading what the proxy writes to it; ``messages`` are the contents it got,
    inflated when the connection compresses."""

    reader: FrameReader
    pieces: list[bytes] | None = None
    content: bytes = b""
    messages: list[bytes] = field(default_factory=list)

    def read(self, data: bytes) -> list[Wire | Violation]:
        frames: list[Wire | Violation] = []
        events = self.reader.receive_data(data)
        while self.reader.pending:  # a highly compressed frame inflates in batches
            events += self.reader.receive_data(b"")
        for event in events:
            if isinstance(event, ControlFrame):
                frames.append(Wire(event.opcode, event.payload))
            elif isinstance(event, Violation):
                frames.append(event)
            else:
                self._chunk(event, frames)
        return frames

    def _chunk(self, event: DataChunk, frames: list[Wire | Violation]) -> None:
        if event.frame_start:
            self.pieces = []
        assert self.pieces is not None
        self.pieces.append(event.data)
        self.content += event.content
        if event.frame_end:
            frames.append(Wire(event.opcode, b"".join(self.pieces), event.fin, event.rsv))
            self.pieces = None
        if event.message_end:
            self.messages.append(self.content)
            self.content = b""


class Book:
    """A relay and its two peers; each method is one event in, its commands out (viewed)."""

    def __init__(self, **config: object) -> None:
        settings: dict[str, object] = {"max_frame_size": BIG, "max_message_size": BIG}
        settings.update(config)
        self.config = RelayConfig(**settings)  # type: ignore[arg-type]
        self.relay = Relay(self.config)
        self.peers = {SERVER: self._peer(SERVER), CLIENT: self._peer(CLIENT)}
        self.finished = 0

    def _peer(self, side: Side) -> Peer:
        to_server = side is SERVER  # the server reads masked frames: the proxy's as a client
        reader = FrameReader(masked=to_server, max_frame_size=BIG, max_message_size=BIG)
        if self.config.deflate is not None:
            reader.inflater = Inflater(self.config.deflate, to_server, None)
        return Peer(reader)

    def view(self, commands: list[Command]) -> list[object]:
        out: list[object] = []
        for command in commands:
            if isinstance(command, Send):
                out.append(
                    Sent(command.side, *self.peers[command.side].read(b"".join(command.chunks)))
                )
            else:
                out.append(command)
            if isinstance(command, Finished):
                self.finished += 1
                assert self.finished == 1, "Finished twice"
        return out

    # -- events in ------------------------------------------------------------------------

    def client(self, *frames: Wire, raw: bytes = b"") -> list[object]:
        return self.view(self.relay.receive(CLIENT, client_bytes(*frames) + raw))

    def server(self, *frames: Wire, raw: bytes = b"") -> list[object]:
        return self.view(self.relay.receive(SERVER, server_bytes(*frames) + raw))

    def receive(self, side: Side, data: bytes) -> list[object]:
        return self.view(self.relay.receive(side, data))

    def eof(self, side: Side, reason: str = "") -> list[object]:
        return self.view(self.relay.receive_eof(side, reason))

    def fire(self, timer: Timer) -> list[object]:
        return self.view(self.relay.timer_fired(timer))

    def done(self, side: Side) -> list[object]:
        return self.view(self.relay.hooks_done(side))

    def inject(self, side: Side, opcode: int, payload: bytes) -> list[object]:
        return self.view(self.relay.inject(side, opcode, payload))

    def close(self, side: Side | None, code: int, reason: str) -> list[object]:
        return self.view(self.relay.close(side, code, reason))

    def abort(self) -> list[object]:
        return self.view(self.relay.abort())

    # -- what the hooks get ---------------------------------------------------------------

    def item(self, side: Side) -> FrameEvent | Message:
        item = self.relay.leg(side).pending
        assert item is not None, f"nothing pending from {side}"
        return item

    def message(self, side: Side, actor: str | None = None) -> Message:
        """The message the hooks hold; ``actor`` is the plugin running (the chain sets it)."""
        item = self.item(side)
        assert isinstance(item, Message)
        item._actor = actor
        return item

    def frame(self, side: Side, actor: str | None = None) -> FrameEvent:
        item = self.item(side)
        assert isinstance(item, FrameEvent)
        item._actor = actor
        return item

    def hooks(self, side: Side) -> RunHooks:
        """The RunHooks command for what is pending from ``side`` now."""
        return RunHooks(side, self.item(side))

    def leg(self, side: Side) -> Leg:
        return self.relay.leg(side)


def rec(side: Side, opcode: int, payload: bytes, **fields: object) -> Record:
    """The Record of a whole frame; ``fields`` override fin, rsv, length, message_opcode..."""
    values: dict[str, object] = {
        "side": side,
        "opcode": opcode,
        "fin": True,
        "rsv": 0,
        "length": len(payload),
        "payload": payload,
        "compressed": False,
        "message_opcode": opcode,
    }
    values.update(fields)
    return Record(FrameRecord(**values))  # type: ignore[arg-type]


# --- message hooks ---------------------------------------------------------------------------


def test_message_hooks_get_the_whole_message_then_its_frames_go_as_they_came() -> None:
    b = Book(want_messages=True)
    out = b.client(Wire(TEXT, b"Hel", fin=False), Wire(CONT, b"lo"))
    assert out == [b.hooks(CLIENT)]
    message = b.message(CLIENT)
    assert (message.from_client, message.opcode, message.content) == (True, TEXT, b"Hello")
    assert message.fragment_sizes == [3, 2]
    assert not message.modified and not message.compressed
    assert b.client(Wire(TEXT, b"next")) == []  # waits behind the held message
    assert b.done(CLIENT) == [
        Sent(SERVER, Wire(TEXT, b"Hel", fin=False), Wire(CONT, b"lo")),
        b.hooks(CLIENT),
    ]
    assert b.message(CLIENT).content == b"next"
    assert b.done(CLIENT) == [Sent(SERVER, Wire(TEXT, b"next"))]
    assert (b.leg(CLIENT).messages, b.leg(CLIENT).frames) == (2, 3)


def test_a_changed_message_of_the_same_size_keeps_its_fragments() -> None:
    b = Book(want_messages=True, records=True)
    b.client(Wire(TEXT, b"Hel", fin=False), Wire(CONT, b"lo"))
    b.message(CLIENT, "upper").text = "HELLO"
    assert b.done(CLIENT) == [
        rec(CLIENT, TEXT, b"HEL", fin=False, verdict="modified", by="upper", original=b"Hello"),
        rec(CLIENT, CONT, b"LO", message_opcode=TEXT, verdict="modified", by="upper"),
        Sent(SERVER, Wire(TEXT, b"HEL", fin=False), Wire(CONT, b"LO")),
    ]


def test_a_changed_message_of_another_size_goes_as_one_frame() -> None:
    b = Book(want_messages=True, records=True)
    b.server(Wire(BINARY, b"ab", fin=False), Wire(CONT, b"cd"))
    message = b.message(SERVER, "grow")
    message.content = b"abcdef"
    message.opcode = TEXT
    assert message.modified_by == "grow"
    assert b.done(SERVER) == [
        rec(SERVER, TEXT, b"abcdef", verdict="modified", by="grow", original=b"abcd"),
        Sent(CLIENT, Wire(TEXT, b"abcdef")),
    ]


def test_a_message_emptied_by_a_hook_goes_as_one_empty_frame() -> None:
    b = Book(want_messages=True)
    b.client(Wire(BINARY, b"x", fin=False), Wire(CONT, b"y"))
    b.message(CLIENT).content = b""
    assert b.done(CLIENT) == [Sent(SERVER, Wire(BINARY, b""))]


def test_a_dropped_message_is_noted_recorded_and_not_sent() -> None:
    b = Book(want_messages=True, records=True)
    b.client(Wire(TEXT, b"secret"), Wire(TEXT, b"public"))
    b.message(CLIENT, "block").drop()
    assert b.done(CLIENT) == [
        Note(CLIENT, "message dropped by block"),
        rec(CLIENT, TEXT, b"secret", verdict="dropped", by="block"),
        b.hooks(CLIENT),
    ]
    assert b.done(CLIENT) == [rec(CLIENT, TEXT, b"public"), Sent(SERVER, Wire(TEXT, b"public"))]
    assert (b.leg(CLIENT).messages, b.leg(CLIENT).dropped) == (2, 1)


def test_hooks_done_with_nothing_pending_changes_nothing() -> None:
    b = Book(want_messages=True)
    assert b.done(CLIENT) == []
    assert b.client(Wire(TEXT, b"x")) == [b.hooks(CLIENT)]


def test_a_message_in_pieces_goes_to_the_hooks_once_whole() -> None:
    b = Book(want_messages=True)
    wire = client_bytes(Wire(BINARY, b"abcdef", fin=False), Wire(CONT, b"gh"))
    assert b.receive(CLIENT, wire[:8]) == []  # the header and "ab"
    assert b.receive(CLIENT, wire[8:14]) == []  # the rest of the frame, and half a header
    assert b.receive(CLIENT, wire[14:]) == [b.hooks(CLIENT)]
    assert b.message(CLIENT).content == b"abcdefgh"
    b.message(CLIENT).drop()
    assert b.done(CLIENT) == [Note(CLIENT, "message dropped by plugin")]  # no records


def test_a_held_message_for_a_peer_closed_meanwhile_is_dropped_by_the_proxy() -> None:
    b = Book(want_messages=True, records=True)
    b.client(Wire(TEXT, b"slow"))
    b.close(None, 1001, "shutdown")
    assert b.done(CLIENT) == [rec(CLIENT, TEXT, b"slow", verdict="dropped", by="proxy")]


def test_each_frame_of_a_held_message_dropped_by_the_proxy_keeps_its_opcode() -> None:
    b = Book(want_messages=True, records=True)
    b.client(Wire(TEXT, b"sl", fin=False), Wire(CONT, b"ow"))
    b.close(None, 1001, "shutdown")
    assert b.done(CLIENT) == [
        rec(CLIENT, TEXT, b"sl", fin=False, verdict="dropped", by="proxy"),
        rec(CLIENT, CONT, b"ow", message_opcode=TEXT, verdict="dropped", by="proxy"),
    ]


# --- frame hooks -----------------------------------------------------------------------------


def test_frame_hooks_get_each_frame_pings_included_in_order() -> None:
    b = Book(want_frames=True)
    out = b.client(Wire(TEXT, b"Hel", fin=False), Wire(PING, b"p"), Wire(CONT, b"lo"))
    assert out == [b.hooks(CLIENT)]
    first = b.frame(CLIENT)
    assert (first.opcode, first.payload, first.fin, first.message_opcode) == (
        TEXT,
        b"Hel",
        False,
        TEXT,
    )
    assert b.done(CLIENT) == [Sent(SERVER, Wire(TEXT, b"Hel", fin=False)), b.hooks(CLIENT)]
    ping = b.frame(CLIENT)
    assert (ping.opcode, ping.payload, ping.is_control) == (PING, b"p", True)
    assert b.done(CLIENT) == [Sent(SERVER, Wire(PING, b"p")), b.hooks(CLIENT)]
    last = b.frame(CLIENT)
    assert (last.opcode, last.payload, last.fin, last.message_opcode) == (CONT, b"lo", True, TEXT)
    assert b.done(CLIENT) == [Sent(SERVER, Wire(CONT, b"lo"))]
    assert (b.leg(CLIENT).messages, b.leg(CLIENT).frames) == (1, 3)


def test_a_frame_changed_by_a_hook() -> None:
    b = Book(want_frames=True, records=True)
    b.server(Wire(BINARY, b"ab", fin=False), Wire(CONT, b"cd"))
    assert b.done(SERVER) == [
        rec(SERVER, BINARY, b"ab", fin=False),
        Sent(CLIENT, Wire(BINARY, b"ab", fin=False)),
        b.hooks(SERVER),
    ]
    b.frame(SERVER, "edit").payload = b"CDE"
    assert b.done(SERVER) == [
        rec(
            SERVER,
            CONT,
            b"CDE",
            message_opcode=BINARY,
            verdict="modified",
            by="edit",
            original=b"cd",
        ),
        Sent(CLIENT, Wire(CONT, b"CDE")),
    ]


def test_the_first_frame_dropped_the_next_starts_the_message() -> None:
    b = Book(want_frames=True, records=True)
    b.client(Wire(TEXT, b"Hel", fin=False), Wire(CONT, b"lo"))
    b.frame(CLIENT, "cut").drop()
    assert b.done(CLIENT) == [
        rec(CLIENT, TEXT, b"Hel", fin=False, verdict="dropped", by="cut"),
        b.hooks(CLIENT),
    ]
    assert b.done(CLIENT) == [rec(CLIENT, TEXT, b"lo"), Sent(SERVER, Wire(TEXT, b"lo"))]
    assert b.leg(CLIENT).dropped == 1


def test_the_last_frame_dropped_after_the_first_went_ends_the_message_empty() -> None:
    b = Book(want_frames=True, records=True)
    b.client(Wire(TEXT, b"Hel", fin=False), Wire(CONT, b"lo"))
    b.done(CLIENT)
    b.frame(CLIENT, "cut").drop()
    # The record of the dropped frame has its opcode as it came: a continuation of a text.
    assert b.done(CLIENT) == [
        rec(CLIENT, CONT, b"lo", message_opcode=TEXT, verdict="dropped", by="cut"),
        rec(CLIENT, CONT, b"", message_opcode=TEXT, verdict="modified", by="cut"),
        Sent(SERVER, Wire(CONT, b"")),
    ]


def test_a_ping_changed_by_a_frame_hook() -> None:
    b = Book(want_frames=True, records=True)
    assert b.server(Wire(PING, b"p")) == [b.hooks(SERVER)]
    b.frame(SERVER, "pinger").payload = "pong?"
    assert b.done(SERVER) == [
        rec(SERVER, PING, b"pong?", verdict="modified", by="pinger", original=b"p"),
        Sent(CLIENT, Wire(PING, b"pong?")),
    ]


def test_a_pong_dropped_by_a_frame_hook() -> None:
    b = Book(want_frames=True, records=True)
    b.client(Wire(PONG, b"late"))
    b.frame(CLIENT, "quiet").drop()
    assert b.done(CLIENT) == [
        Note(CLIENT, "PONG dropped by quiet"),
        rec(CLIENT, PONG, b"late", verdict="dropped", by="quiet"),
    ]
    assert b.leg(CLIENT).dropped == 1
    quiet = Book(want_frames=True)  # nobody records: the note alone
    quiet.client(Wire(PING, b""))
    quiet.frame(CLIENT, "quiet").drop()
    assert quiet.done(CLIENT) == [Note(CLIENT, "PING dropped by quiet")]


def test_a_close_frame_can_be_neither_dropped_nor_changed() -> None:
    b = Book(want_frames=True)
    b.client(close(1000, "bye"))
    frame = b.frame(CLIENT, "meddler")
    with pytest.raises(ValueError, match="cannot be dropped"):
        frame.drop()
    with pytest.raises(ValueError, match="cannot be changed"):
        frame.payload = b"\x03\xe8"
    assert not (frame.dropped or frame.modified)
    assert b.done(CLIENT) == [
        Sent(SERVER, close(1000, "bye")),
        StartTimer(Timer.CLOSE_SERVER, TIMEOUT),
    ]
    assert b.leg(CLIENT).state is LegState.CLOSE_RECEIVED


def test_a_ping_over_125_bytes_is_refused() -> None:
    b = Book(want_frames=True)
    b.client(Wire(PING, b""))
    with pytest.raises(ValueError, match="at most 125"):
        b.frame(CLIENT).payload = bytes(126)
    assert b.done(CLIENT) == [Sent(SERVER, Wire(PING, b""))]


def test_frame_and_message_hooks_together() -> None:
    """Frames go to the frame hooks one by one, then the message they make to the message
    hooks; a frame a hook changed makes the message a changed one."""
    b = Book(want_frames=True, want_messages=True, records=True)
    b.client(Wire(TEXT, b"Hel", fin=False), Wire(CONT, b"lo"))
    assert b.done(CLIENT) == [b.hooks(CLIENT)]  # the second frame: nothing goes yet
    b.frame(CLIENT, "frames").payload = b"LO"
    assert b.done(CLIENT) == [b.hooks(CLIENT)]  # now the message
    message = b.message(CLIENT)
    assert (message.content, message.fragment_sizes, message.modified_by) == (
        b"HelLO",
        [3, 2],
        "frames",
    )
    assert b.done(CLIENT) == [
        rec(CLIENT, TEXT, b"Hel", fin=False, verdict="modified", by="frames", original=b"HelLO"),
        rec(CLIENT, CONT, b"LO", message_opcode=TEXT, verdict="modified", by="frames"),
        Sent(SERVER, Wire(TEXT, b"Hel", fin=False), Wire(CONT, b"LO")),
    ]


def test_a_frame_dropped_before_the_message_hooks_is_left_out_of_the_message() -> None:
    b = Book(want_frames=True, want_messages=True)
    b.server(Wire(TEXT, b"Hel", fin=False), Wire(CONT, b"lo"))
    b.frame(SERVER, "cut").drop()
    b.done(SERVER)
    assert b.done(SERVER) == [b.hooks(SERVER)]
    message = b.message(SERVER)
    assert (message.content, message.fragment_sizes, message.modified_by) == (b"lo", [2], "cut")
    assert b.done(SERVER) == [Sent(CLIENT, Wire(TEXT, b"lo"))]


def test_an_unchanged_message_with_frame_hooks_goes_as_framed() -> None:
    b = Book(want_frames=True, want_messages=True)
    b.server(Wire(BINARY, b"ab", fin=False), Wire(CONT, b"c"))
    b.done(SERVER)
    b.done(SERVER)
    assert not b.message(SERVER).modified
    assert b.done(SERVER) == [Sent(CLIENT, Wire(BINARY, b"ab", fin=False), Wire(CONT, b"c"))]


# --- what waits behind a held item, and what does not ------------------------------------------


def test_a_held_message_lets_pings_through_and_the_other_direction_flow() -> None:
    b = Book(want_messages=True)
    assert b.client(Wire(TEXT, b"first")) == [b.hooks(CLIENT)]
    held = b.message(CLIENT)
    # A ping from the same peer goes on at once; its next message waits behind the held one.
    assert b.client(Wire(PING, b"p"), Wire(TEXT, b"second"), Wire(PONG, b"q")) == [
        Sent(SERVER, Wire(PING, b"p"), Wire(PONG, b"q"))
    ]
    # The server's messages have hooks of their own, run and done while the client's is held.
    assert b.server(Wire(TEXT, b"news")) == [b.hooks(SERVER)]
    assert b.done(SERVER) == [Sent(CLIENT, Wire(TEXT, b"news"))]
    assert b.server(Wire(PING, b"s")) == [Sent(CLIENT, Wire(PING, b"s"))]
    assert b.item(CLIENT) is held
    assert b.done(CLIENT) == [Sent(SERVER, Wire(TEXT, b"first")), b.hooks(CLIENT)]
    assert b.message(CLIENT).content == b"second"
    assert b.done(CLIENT) == [Sent(SERVER, Wire(TEXT, b"second"))]


def test_pings_with_nothing_held_go_on_in_the_order_they_came() -> None:
    """Autobahn 2.10: ten pings in one read, pongs expected in order."""
    b = Book(want_messages=True)
    pings = [Wire(PING, str(n).encode()) for n in range(10)]
    assert b.client(*pings) == [Sent(SERVER, *pings)]


def test_no_ping_after_a_close_goes_ahead_of_it() -> None:
    """RFC 6455 5.5.1: what the peer sends after its close frame does not count, in the same
    read or a later one, even while the close waits behind a held message (Autobahn 7.1.3)."""
    b = Book(want_messages=True)
    assert b.client(Wire(TEXT, b"last"), close(1000, "done"), Wire(PING, b"after")) == [
        b.hooks(CLIENT)
    ]
    assert b.client(Wire(PONG, b"later")) == []
    assert b.done(CLIENT) == [
        Sent(SERVER, Wire(TEXT, b"last"), close(1000, "done")),
        StartTimer(Timer.CLOSE_SERVER, TIMEOUT),
    ]


def test_a_close_with_nothing_held_is_read_at_once_and_nothing_after_it_goes() -> None:
    b = Book(want_messages=True)
    assert b.client(Wire(PING, b"p"), close(1000, "done"), Wire(PING, b"after")) == [
        Sent(SERVER, Wire(PING, b"p"), close(1000, "done")),
        StartTimer(Timer.CLOSE_SERVER, TIMEOUT),
    ]


def test_a_ping_behind_a_held_message_goes_to_the_frame_hooks_in_turn() -> None:
    """With frame hooks a ping is an item of its own: it waits its turn."""
    b = Book(want_frames=True)
    b.client(Wire(BINARY, b"data"))
    assert b.client(Wire(PING, b"p")) == []
    assert b.done(CLIENT) == [Sent(SERVER, Wire(BINARY, b"data")), b.hooks(CLIENT)]
    assert b.frame(CLIENT).opcode == PING


def test_a_close_waits_behind_a_held_message_and_what_follows_it_is_dropped() -> None:
    b = Book(want_messages=True)
    assert b.client(Wire(TEXT, b"last"), close(1000, "done"), Wire(TEXT, b"after")) == [
        b.hooks(CLIENT)
    ]
    assert b.leg(CLIENT).state is LegState.OPEN  # the close is not read yet
    assert b.done(CLIENT) == [
        Sent(SERVER, Wire(TEXT, b"last"), close(1000, "done")),
        StartTimer(Timer.CLOSE_SERVER, TIMEOUT),
    ]
    assert b.leg(CLIENT).backlog_bytes == 0 and not b.leg(CLIENT).backlog
    assert b.server(close(1000, "ok")) == [
        Sent(CLIENT, close(1000, "done")),
        CloseTransport(CLIENT, linger=False),
    ]
    assert b.eof(SERVER) == [CloseTransport(SERVER, linger=False), Finished()]


def test_a_protocol_error_waits_behind_a_held_message() -> None:
    b = Book(want_messages=True)
    unmasked = bytes([0x81, 0x01]) + b"x"
    assert b.client(Wire(TEXT, b"Hello"), raw=unmasked) == [b.hooks(CLIENT)]
    assert b.done(CLIENT) == [
        Note(CLIENT, "protocol error: unmasked frame from the client (1002)"),
        Sent(SERVER, Wire(TEXT, b"Hello")),
        StartTimer(Timer.CLOSE_SERVER, TIMEOUT),  # the client waits for the server's close
        StartTimer(Timer.GRACE, ERROR_GRACE),
    ]


def test_reading_pauses_past_the_backlog_and_resumes_once_half_drained() -> None:
    b = Book(want_messages=True)
    size = HOOK_BACKLOG * 3 // 8  # three of them are over HOOK_BACKLOG, one is under half
    big = [Wire(BINARY, bytes([n]) * size) for n in range(3)]
    assert b.client(Wire(TEXT, b"held")) == [b.hooks(CLIENT)]
    assert b.client(big[0], big[1]) == []  # 3/4 of the backlog waits
    assert b.client(big[2]) == [PauseReading(CLIENT)]
    assert b.client(Wire(TEXT, b"in flight")) == []  # paused once
    assert b.done(CLIENT) == [Sent(SERVER, Wire(TEXT, b"held")), b.hooks(CLIENT)]
    assert b.leg(CLIENT).backlog_bytes > HOOK_BACKLOG // 2  # not yet
    assert b.done(CLIENT) == [Sent(SERVER, big[0]), b.hooks(CLIENT), ResumeReading(CLIENT)]
    assert b.done(CLIENT) == [Sent(SERVER, big[1]), b.hooks(CLIENT)]
    assert b.done(CLIENT) == [Sent(SERVER, big[2]), b.hooks(CLIENT)]
    assert b.done(CLIENT) == [Sent(SERVER, Wire(TEXT, b"in flight"))]
    assert b.leg(CLIENT).backlog_bytes == 0


def test_many_tiny_messages_pause_reading_long_before_a_mebibyte_of_bytes() -> None:
    """Each waiting event counts EVENT_COST besides its bytes: compressed 9-byte frames that
    inflate to kilobytes cannot pile up by the hundred thousand behind a held message."""
    b = Book(want_messages=True)
    assert b.client(Wire(TEXT, b"held")) == [b.hooks(CLIENT)]
    sent = 0
    while True:
        sent += 1
        assert sent <= HOOK_BACKLOG // EVENT_COST + 1, "never paused"
        if b.client(Wire(TEXT, b"x")) == [PauseReading(CLIENT)]:
            break
    assert sent * len(b"x") < 64 * 1024  # paused by the count of events, not their bytes
    assert b.leg(CLIENT).backlog_bytes > HOOK_BACKLOG


# --- inject ------------------------------------------------------------------------------------


def test_inject_waits_while_a_fragmented_message_is_half_sent() -> None:
    b = Book(records=True)
    assert b.server(Wire(TEXT, b"Hel", fin=False)) == [
        rec(SERVER, TEXT, b"Hel", fin=False),
        Sent(CLIENT, Wire(TEXT, b"Hel", fin=False)),
    ]
    # Recorded as it is injected (a frame from the server's direction); sent once the
    # message ends, since nothing may come between its fragments but control frames.
    assert b.inject(CLIENT, TEXT, b"news") == [rec(SERVER, TEXT, b"news", verdict="injected")]
    assert b.inject(CLIENT, BINARY, b"\x00") == [rec(SERVER, BINARY, b"\x00", verdict="injected")]
    assert b.server(Wire(CONT, b"lo")) == [
        rec(SERVER, CONT, b"lo", message_opcode=TEXT),
        Sent(CLIENT, Wire(CONT, b"lo"), Wire(TEXT, b"news"), Wire(BINARY, b"\x00")),
    ]
    assert b.inject(CLIENT, TEXT, b"now") == [
        rec(SERVER, TEXT, b"now", verdict="injected"),
        Sent(CLIENT, Wire(TEXT, b"now")),
    ]


def test_inject_waits_for_a_fragmented_message_the_hooks_send() -> None:
    b = Book(want_frames=True)
    b.client(Wire(BINARY, b"a", fin=False), Wire(CONT, b"b"))
    assert b.done(CLIENT) == [Sent(SERVER, Wire(BINARY, b"a", fin=False)), b.hooks(CLIENT)]
    assert b.inject(SERVER, TEXT, b"x") == []
    assert b.done(CLIENT) == [Sent(SERVER, Wire(CONT, b"b"), Wire(TEXT, b"x"))]


@pytest.mark.parametrize("fragmented", [False, True])
def test_inject_waits_while_a_streamed_frame_is_half_sent(fragmented: bool) -> None:
    """A frame over STREAM_THRESHOLD goes out as its payload arrives: an injected frame must
    not land inside that payload, whether the streamed frame is a whole message or the first
    fragment of one. (It did: the peer read a corrupt payload, then a protocol error.)"""
    b = Book()
    payload = bytes(2 * STREAM_THRESHOLD)
    frames = [Wire(BINARY, payload, fin=not fragmented)]
    if fragmented:
        frames.append(Wire(CONT, b"end"))
    wire = server_bytes(*frames)
    assert b.receive(SERVER, wire[:1000]) == [Sent(CLIENT)]  # the frame has started
    assert b.leg(CLIENT).mid_frame_out
    assert b.inject(CLIENT, TEXT, b"news") == []
    assert b.receive(SERVER, wire[1000:]) == [Sent(CLIENT, *frames, Wire(TEXT, b"news"))]


def test_inject_to_a_peer_that_got_a_close_returns_nothing() -> None:
    """RFC 6455 5.5.1: nothing after our close frame; the peer that only sent one still
    takes frames until it gets our answer."""
    b = Book(records=True)
    b.server(close(1000))
    assert b.leg(CLIENT).state is LegState.CLOSE_SENT
    assert b.inject(CLIENT, TEXT, b"too late") == []
    assert b.leg(SERVER).state is LegState.CLOSE_RECEIVED
    assert b.inject(SERVER, TEXT, b"still") == [
        rec(CLIENT, TEXT, b"still", verdict="injected"),
        Sent(SERVER, Wire(TEXT, b"still")),
    ]


def test_an_injected_message_goes_through_the_message_hooks_then_out_whole() -> None:
    """As in mitmproxy: with message hooks, an injected message is handed to them like any
    message (``injected`` set, from the side it travels from), and sent by their verdict."""
    b = Book(want_messages=True, records=True)
    assert b.inject(CLIENT, TEXT, b"news") == [b.hooks(SERVER)]
    message = b.message(SERVER)
    assert (message.from_client, message.injected, message.content) == (False, True, b"news")
    assert b.done(SERVER) == [
        rec(SERVER, TEXT, b"news", verdict="injected"),
        Sent(CLIENT, Wire(TEXT, b"news")),
    ]
    assert b.inject(SERVER, BINARY, b"\x00") == [b.hooks(CLIENT)]
    assert b.message(CLIENT).from_client
    assert b.done(CLIENT) == [
        rec(CLIENT, BINARY, b"\x00", verdict="injected"),
        Sent(SERVER, Wire(BINARY, b"\x00")),
    ]
    # No peer sent them: they count as no peer's messages.
    assert (b.leg(CLIENT).messages, b.leg(SERVER).messages) == (0, 0)


def test_an_injected_message_waits_behind_what_the_peer_sent_and_hooks_may_change_it() -> None:
    b = Book(want_messages=True)
    assert b.server(Wire(TEXT, b"first")) == [b.hooks(SERVER)]
    assert b.inject(CLIENT, TEXT, b"second") == []  # the server's message is with the hooks
    assert b.done(SERVER) == [Sent(CLIENT, Wire(TEXT, b"first")), b.hooks(SERVER)]
    injected = b.message(SERVER, "edit")
    assert injected.injected
    injected.text = "SECOND"
    injected.opcode = BINARY
    assert b.done(SERVER) == [Sent(CLIENT, Wire(BINARY, b"SECOND"))]


def test_an_injected_message_a_hook_drops_is_noted_not_recorded_nor_sent() -> None:
    b = Book(want_messages=True, records=True)
    b.inject(CLIENT, TEXT, b"hush")
    b.message(SERVER, "quiet").drop()
    assert b.done(SERVER) == [Note(SERVER, "injected message dropped by quiet")]
    assert b.peers[CLIENT].messages == []


def test_an_injected_message_skips_frame_hooks() -> None:
    b = Book(want_frames=True, want_messages=True)
    assert b.inject(SERVER, TEXT, b"hi") == [b.hooks(CLIENT)]
    assert isinstance(b.item(CLIENT), Message)
    assert b.done(CLIENT) == [Sent(SERVER, Wire(TEXT, b"hi"))]


def test_an_injected_message_between_compressed_ones_leaves_the_window_alone() -> None:
    b = Book(want_messages=True, deflate=DeflateParams())
    first, second = deflated(b"Hello", b"Hello, Hello", client=False)
    b.server(Wire(TEXT, first, rsv=RSV1))
    b.inject(CLIENT, TEXT, b"Hello?")
    b.server(Wire(TEXT, second, rsv=RSV1))
    assert b.done(SERVER) == [Sent(CLIENT, Wire(TEXT, first, rsv=RSV1)), b.hooks(SERVER)]
    assert b.done(SERVER) == [Sent(CLIENT, Wire(TEXT, b"Hello?")), b.hooks(SERVER)]
    assert b.done(SERVER) == [Sent(CLIENT, Wire(TEXT, second, rsv=RSV1))]
    assert b.peers[CLIENT].messages == [b"Hello", b"Hello?", b"Hello, Hello"]


def test_injected_messages_behind_the_peers_close_are_dropped_with_a_note() -> None:
    b = Book(want_messages=True)
    b.server(Wire(TEXT, b"held"), close(1000))
    b.inject(CLIENT, TEXT, b"late")  # the client takes frames until the close reaches it
    b.inject(CLIENT, TEXT, b"later")
    out = b.done(SERVER)
    assert Note(SERVER, "2 injected message(s) dropped: the client is closing") in out
    assert b.peers[CLIENT].messages == [b"held"]
    assert b.relay.inject_refusal(CLIENT) == "the client is closing"
    assert b.inject(CLIENT, TEXT, b"too late") == []


def test_injection_is_refused_while_the_backlog_is_over_its_limit() -> None:
    """An addon that injects in answer to every injected message loops, as in mitmproxy, but
    what waits for the hooks in one direction stays bounded."""
    b = Book(want_messages=True)
    b.server(Wire(TEXT, b"held"))
    assert b.relay.inject_refusal(CLIENT) is None
    assert b.inject(CLIENT, BINARY, bytes(HOOK_BACKLOG + 1)) == [PauseReading(SERVER)]
    refusal = "more than 1024 KiB wait for the plugins towards the client"
    assert b.relay.inject_refusal(CLIENT) == refusal
    assert b.inject(CLIENT, TEXT, b"x") == []
    assert b.relay.inject_refusal(SERVER) is None  # the other direction has room
    assert b.done(SERVER) == [
        Sent(CLIENT, Wire(TEXT, b"held")),
        b.hooks(SERVER),
        ResumeReading(SERVER),
    ]
    assert b.relay.inject_refusal(CLIENT) is None
    assert len(b.message(SERVER).content) == HOOK_BACKLOG + 1


# --- the proxy's own closes and aborts -----------------------------------------------------------


def test_close_one_side_gives_the_other_1001() -> None:
    b = Book()
    assert b.close(CLIENT, 4000, "kicked") == [
        Sent(CLIENT, close(4000, "kicked")),
        Sent(SERVER, close(1001, "closed by a plugin")),
        StartTimer(Timer.CLOSE_CLIENT, TIMEOUT),
        StartTimer(Timer.CLOSE_SERVER, TIMEOUT),
    ]
    assert b.relay.closed_by == "proxy"
    assert b.client(close(4000, "kicked")) == [CloseTransport(CLIENT, linger=False)]
    assert b.server(close(1001)) == []  # the upstream closes TCP first
    assert b.eof(SERVER) == [CloseTransport(SERVER, linger=False), Finished()]


def test_close_both_sides_then_again() -> None:
    b = Book()
    b.server(Wire(TEXT, b"hi"))
    assert b.close(None, 1001, "shutdown") == [
        Sent(CLIENT, close(1001, "shutdown")),
        Sent(SERVER, close(1001, "shutdown")),
        StartTimer(Timer.CLOSE_CLIENT, TIMEOUT),
        StartTimer(Timer.CLOSE_SERVER, TIMEOUT),
    ]
    assert b.close(None, 1000, "again") == []
    assert b.inject(SERVER, TEXT, b"x") == []


def test_close_a_side_while_the_client_owes_a_close_sends_that_first() -> None:
    b = Book()
    b.client(raw=bytes([0x82, 0x00]))  # unmasked: the client owes a 1002
    assert b.close(SERVER, 1011, "bye") == [
        Sent(CLIENT, close(1002, "unmasked frame from the client")),
        Sent(SERVER, close(1011, "bye")),
        CloseTransport(CLIENT, linger=True),
    ]


def test_abort_resets_both_transports_and_finishes() -> None:
    b = Book()
    assert b.abort() == [
        Note(CLIENT, "aborted by a plugin"),
        AbortTransport(CLIENT),
        AbortTransport(SERVER),
        Finished(),
    ]
    assert b.relay.closed_by == "proxy"  # a plugin ended it, whatever the peers do next
    b.eof(CLIENT)
    assert b.relay.closed_by == "proxy"
    assert (b.leg(CLIENT).state, b.leg(SERVER).state) == (LegState.GONE, LegState.ABORTED)


def test_close_mid_streamed_frame_aborts_that_leg_with_a_note() -> None:
    b = Book()
    b.receive(CLIENT, client_bytes(Wire(BINARY, bytes(2 * STREAM_THRESHOLD)))[:1000])
    assert b.close(CLIENT, 1000, "bye") == [
        Note(SERVER, "aborted: a frame to it was half-sent when it had to get 1001"),
        Sent(CLIENT, close(1000, "bye")),
        AbortTransport(SERVER),
        StartTimer(Timer.CLOSE_CLIENT, TIMEOUT),
    ]


def test_data_to_a_closing_peer_is_dropped_with_a_note_at_the_message_end() -> None:
    b = Book()
    b.close(None, 1001, "shutdown")
    assert b.client(Wire(TEXT, b"in ", fin=False)) == []  # the client has not read our close
    assert b.client(Wire(CONT, b"flight")) == [
        Note(CLIENT, "message dropped: the other side is closing")
    ]


# --- timers ------------------------------------------------------------------------------------


def test_grace_after_a_client_protocol_error() -> None:
    b = Book()
    assert b.client(Wire(TEXT, b"Hello"), raw=bytes([0x81, 0x00])) == [
        Note(CLIENT, "protocol error: unmasked frame from the client (1002)"),
        Sent(SERVER, Wire(TEXT, b"Hello")),
        StartTimer(Timer.CLOSE_SERVER, TIMEOUT),
        StartTimer(Timer.GRACE, ERROR_GRACE),
    ]
    assert b.server(Wire(TEXT, b"Hello")) == [Sent(CLIENT, Wire(TEXT, b"Hello"))]
    assert b.fire(Timer.GRACE) == [Sent(SERVER, close(1001, "client protocol error"))]
    assert b.fire(Timer.GRACE) == []  # once only
    assert b.server(Wire(TEXT, b"more"), close(1000)) == [
        Sent(CLIENT, Wire(TEXT, b"more"), close(1002, "unmasked frame from the client")),
        CloseTransport(CLIENT, linger=True),
    ]
    assert b.eof(SERVER) == [CloseTransport(SERVER, linger=False), Finished()]
    assert b.fire(Timer.CLOSE_SERVER) == []  # no longer matters


def test_the_servers_close_timeout() -> None:
    b = Book()
    assert b.client(close(1000)) == [
        Sent(SERVER, close(1000)),
        StartTimer(Timer.CLOSE_SERVER, TIMEOUT),
    ]
    assert b.fire(Timer.CLOSE_SERVER) == [
        Note(SERVER, "no close answer in time"),
        CloseTransport(SERVER, linger=True),
    ]
    assert b.eof(CLIENT) == [CloseTransport(CLIENT, linger=False), Finished()]


def test_the_clients_close_timeout() -> None:
    b = Book()
    assert b.server(close(1001)) == [
        Sent(CLIENT, close(1001)),
        StartTimer(Timer.CLOSE_CLIENT, TIMEOUT),
    ]
    assert b.fire(Timer.CLOSE_CLIENT) == [
        Note(CLIENT, "no close answer in time"),
        CloseTransport(CLIENT, linger=True),
    ]
    assert b.eof(SERVER) == [CloseTransport(SERVER, linger=False), Finished()]


def test_a_close_timeout_shorter_than_the_grace() -> None:
    """The client waits for the server's close handshake, which must end in time: when that
    time is up first, the client gets its 1002 and both transports are closed."""
    b = Book(close_timeout=0.1)
    assert b.client(raw=bytes([0x81, 0x00])) == [
        Note(CLIENT, "protocol error: unmasked frame from the client (1002)"),
        StartTimer(Timer.CLOSE_SERVER, 0.1),
        StartTimer(Timer.GRACE, ERROR_GRACE),
    ]
    assert b.fire(Timer.CLOSE_SERVER) == [
        Note(SERVER, "no close answer in time"),
        Sent(CLIENT, close(1002, "unmasked frame from the client")),
        CloseTransport(CLIENT, linger=True),
        CloseTransport(SERVER, linger=True),
        Finished(),
    ]
    assert b.fire(Timer.GRACE) == []  # its close cannot go any more


def test_a_close_timer_for_a_client_already_closed_does_nothing() -> None:
    """The client broke the protocol after the server's close: its transport is closed at
    once, while its close timer still runs; when it fires it has nothing to time out."""
    b = Book()
    b.server(close(1000))
    assert b.client(raw=bytes([0x81, 0x00])) == [
        Note(CLIENT, "protocol error: unmasked frame from the client (1002)"),
        Sent(SERVER, close(1001, "client protocol error")),
        CloseTransport(CLIENT, linger=True),
        StartTimer(Timer.CLOSE_SERVER, TIMEOUT),
    ]
    assert b.fire(Timer.CLOSE_CLIENT) == []
    assert b.fire(Timer.CLOSE_SERVER) == [
        Note(SERVER, "no close answer in time"),
        CloseTransport(SERVER, linger=False),
        Finished(),
    ]


def test_a_close_after_its_timeout_still_answers_the_other_peer() -> None:
    b = Book()
    b.client(close(1000, "bye"))
    b.fire(Timer.CLOSE_SERVER)
    assert b.leg(SERVER).state is LegState.ENDED
    assert b.server(close(1000)) == [
        Sent(CLIENT, close(1000, "bye")),
        CloseTransport(CLIENT, linger=False),
        Finished(),
    ]
    assert b.leg(SERVER).received_code == 1000


def test_finished_comes_exactly_once() -> None:
    b = Book()
    b.client(close(1000))
    assert b.server(close(1000)) == [
        Sent(CLIENT, close(1000)),
        CloseTransport(CLIENT, linger=False),
    ]
    assert b.eof(SERVER) == [CloseTransport(SERVER, linger=False), Finished()]
    assert b.eof(SERVER) == []
    assert b.eof(CLIENT) == []
    assert b.client(Wire(TEXT, b"ghost")) == []
    for timer in Timer:
        assert b.fire(timer) == []
    assert b.close(None, 1001, "late") == []
    assert b.inject(CLIENT, TEXT, b"late") == []
    assert not any(isinstance(c, (AbortTransport, Finished)) for c in b.abort())
    assert b.finished == 1


# --- compression -------------------------------------------------------------------------------


def deflated(
    *contents: bytes, params: DeflateParams | None = None, client: bool = True
) -> list[bytes]:
    """What a peer's compressor makes of these messages, one after the other."""
    deflater = Deflater(params or DeflateParams(), client)
    return [deflater.compress(content) for content in contents]


def test_an_unchanged_compressed_message_goes_as_it_came() -> None:
    b = Book(want_messages=True, deflate=DeflateParams())
    first, second = deflated(b"Hello", b"Hello, Hello")
    b.client(Wire(TEXT, first, rsv=RSV1))
    message = b.message(CLIENT)
    assert (message.content, message.compressed) == (b"Hello", True)
    assert b.done(CLIENT) == [Sent(SERVER, Wire(TEXT, first, rsv=RSV1))]
    b.client(Wire(TEXT, second, rsv=RSV1))
    assert b.done(CLIENT) == [Sent(SERVER, Wire(TEXT, second, rsv=RSV1))]
    assert b.peers[SERVER].messages == [b"Hello", b"Hello, Hello"]


def test_compressed_frames_waiting_behind_a_held_one_count_what_they_inflate_to() -> None:
    """A 64 KiB message of one repeated byte is some 100 bytes on the wire: the backlog counts
    the 64 KiB its piece holds once inflated, so reading pauses after about 16 of them, not
    after thousands."""
    b = Book(want_frames=True, want_messages=True, deflate=DeflateParams())
    content = b"x" * 65536
    payloads = deflated(*[content] * 40)
    assert len(payloads[1]) < 200
    assert b.client(Wire(TEXT, payloads[0], rsv=RSV1)) != []  # held by the frame hooks
    for sent, payload in enumerate(payloads[1:], 1):  # noqa: B007 (read after the loop)
        if b.client(Wire(TEXT, payload, rsv=RSV1)) == [PauseReading(CLIENT)]:
            break
    else:
        raise AssertionError("never paused")
    assert sent * len(content) <= HOOK_BACKLOG + len(content)
    assert b.leg(CLIENT).backlog_bytes > HOOK_BACKLOG


@pytest.mark.parametrize("want_frames", [True, False])
def test_one_read_of_tiny_compressed_frames_waits_as_a_bounded_backlog(want_frames: bool) -> None:
    """3,000 messages of 1 KB are some 10 bytes each under context takeover: one read of all
    of them inflates to 3 MB. The relay parses no more of it than the backlog holds, keeps the
    rest as bytes, and reads on as the hooks catch up (frame hooks: the general reader;
    message hooks alone: the whole-message walk); every message arrives, in order."""
    b = Book(want_frames=want_frames, want_messages=True, deflate=DeflateParams())
    contents = [b"%05d" % n + b"x" * 1019 for n in range(3000)]
    payloads = deflated(*contents)
    assert sum(len(p) for p in payloads) < 40_000
    data = client_bytes(*(Wire(TEXT, p, rsv=RSV1) for p in payloads))
    out = b.receive(CLIENT, data)
    assert PauseReading(CLIENT) in out
    leg = b.leg(CLIENT)
    assert leg.backlog_bytes < 2 * HOOK_BACKLOG + 64 * 1024  # not 3000 * (1 KB + EVENT_COST)
    assert leg.reader.pending
    while leg.pending is not None:
        b.done(CLIENT)
    assert b.peers[SERVER].messages == contents
    assert not leg.reader.pending


def test_the_end_of_a_peer_reads_what_its_full_backlog_kept_first() -> None:
    """A TCP close the shell read with the rest: the bytes before it are parsed at once (one
    read's worth), as they were before the backlog filled, and the end is handled after them."""
    b = Book(want_messages=True, deflate=DeflateParams())
    payloads = deflated(*[b"z" * 1024] * 3000)
    data = client_bytes(*(Wire(TEXT, p, rsv=RSV1) for p in payloads))
    b.receive(CLIENT, data)
    reader = b.leg(CLIENT).reader
    assert reader.pending
    b.eof(CLIENT)
    assert not reader.pending and reader.bytes_received == len(data)
    assert not reader._buffer


def test_bytes_a_full_backlog_kept_are_read_before_the_next_read() -> None:
    b = Book(want_messages=True, deflate=DeflateParams())
    contents = [b"%05d" % n + b"y" * 2000 for n in range(2000)]
    payloads = deflated(*contents)
    first = client_bytes(*(Wire(TEXT, p, rsv=RSV1) for p in payloads[:1500]))
    second = client_bytes(*(Wire(TEXT, p, rsv=RSV1) for p in payloads[1500:]))
    assert PauseReading(CLIENT) in b.receive(CLIENT, first)
    b.receive(CLIENT, second)  # a read the shell had before it paused: kept behind the first
    resumed = False
    while b.leg(CLIENT).pending is not None:
        resumed |= ResumeReading(CLIENT) in b.done(CLIENT)
    assert resumed
    assert b.peers[SERVER].messages == contents
    assert b.leg(CLIENT).reader.bytes_received == len(first) + len(second)


def test_a_compressed_message_changed_by_a_hook_is_compressed_by_the_proxy_from_then_on() -> None:
    """Under context takeover the server's window now lacks what the client compressed
    against: this message and every later one are compressed by the proxy."""
    b = Book(want_messages=True, deflate=DeflateParams())
    first, second = deflated(b"Hello", b"Hello, Hello")
    proxy = deflated(b"Howdy", b"Hello, Hello")  # a fresh compressor, as the proxy's
    b.client(Wire(TEXT, first, rsv=RSV1))
    b.message(CLIENT, "rewrite").text = "Howdy"
    assert b.done(CLIENT) == [
        Note(CLIENT, "a message was changed: recompressing from now on"),
        Sent(SERVER, Wire(TEXT, proxy[0], rsv=RSV1)),
    ]
    b.client(Wire(TEXT, second, rsv=RSV1))
    assert b.message(CLIENT).content == b"Hello, Hello"
    assert b.done(CLIENT) == [Sent(SERVER, Wire(TEXT, proxy[1], rsv=RSV1))]
    # What the server inflates, with the one window it has.
    assert b.peers[SERVER].messages == [b"Howdy", b"Hello, Hello"]
    check = Inflater(DeflateParams(), True, None)
    assert [check.decompress(payload) for payload in proxy] == [b"Howdy", b"Hello, Hello"]


def test_a_dropped_compressed_message_starts_recompressing() -> None:
    b = Book(want_messages=True, deflate=DeflateParams(), records=True)
    first, second = deflated(b"secret", b"secret again")
    b.server(Wire(BINARY, first, rsv=RSV1))
    b.message(SERVER, "block").drop()
    assert b.done(SERVER) == [
        Note(SERVER, "message dropped by block"),
        rec(SERVER, BINARY, b"secret", length=6, compressed=True, verdict="dropped", by="block"),
        Note(SERVER, "a message was changed: recompressing from now on"),
    ]
    b.server(Wire(BINARY, second, rsv=RSV1))
    (proxy,) = deflated(b"secret again", client=False)
    assert b.done(SERVER) == [
        rec(SERVER, BINARY, b"secret again", rsv=RSV1, length=len(proxy), compressed=True),
        Sent(CLIENT, Wire(BINARY, proxy, rsv=RSV1)),
    ]
    assert b.peers[CLIENT].messages == [b"secret again"]


def test_without_context_takeover_a_changed_message_does_not_switch_for_good() -> None:
    params = DeflateParams(client_no_context_takeover=True)
    b = Book(want_messages=True, deflate=params)
    first, second = deflated(b"abc", b"abcabc", params=params)
    b.client(Wire(BINARY, first, rsv=RSV1))
    b.message(CLIENT).content = b"xyz"
    (proxy,) = deflated(b"xyz", params=params)
    assert b.done(CLIENT) == [Sent(SERVER, Wire(BINARY, proxy, rsv=RSV1))]  # no note
    b.client(Wire(BINARY, second, rsv=RSV1))
    assert b.done(CLIENT) == [Sent(SERVER, Wire(BINARY, second, rsv=RSV1))]  # as it came
    assert b.peers[SERVER].messages == [b"xyz", b"abcabc"]


def test_frame_hooks_on_a_compressed_message_recompress_each_frame() -> None:
    b = Book(want_frames=True, deflate=DeflateParams())
    sender = Deflater(DeflateParams(), True)
    pieces = [sender.compress_piece(b"Hello, ", False), sender.compress_piece(b"world", True)]
    b.client(Wire(TEXT, pieces[0], fin=False, rsv=RSV1), Wire(CONT, pieces[1]))
    frame = b.frame(CLIENT)
    assert (frame.payload, frame.compressed, frame.rsv) == (b"Hello, ", True, RSV1)
    proxy = Deflater(DeflateParams(), True)
    expected = [proxy.compress_piece(b"Hello, ", False), proxy.compress_piece(b"WORLD", True)]
    assert b.done(CLIENT) == [
        Sent(SERVER, Wire(TEXT, expected[0], fin=False, rsv=RSV1)),
        b.hooks(CLIENT),
    ]
    b.frame(CLIENT, "upper").payload = b"WORLD"
    assert b.done(CLIENT) == [Sent(SERVER, Wire(CONT, expected[1]))]
    assert b.peers[SERVER].messages == [b"Hello, WORLD"]
    assert b.leg(CLIENT).recompress


def test_a_compressed_frame_dropped_by_a_frame_hook() -> None:
    b = Book(want_frames=True, deflate=DeflateParams(server_no_context_takeover=True))
    sender = Deflater(DeflateParams(), False)
    pieces = [sender.compress_piece(b"drop me", False), sender.compress_piece(b"keep", True)]
    b.server(Wire(BINARY, pieces[0], fin=False, rsv=RSV1), Wire(CONT, pieces[1]))
    b.frame(SERVER, "cut").drop()
    assert b.done(SERVER) == [b.hooks(SERVER)]
    (proxy,) = deflated(b"keep", client=False)
    assert b.done(SERVER) == [Sent(CLIENT, Wire(BINARY, proxy, rsv=RSV1))]
    assert b.peers[CLIENT].messages == [b"keep"]


def test_a_compressed_frame_dropped_under_context_takeover() -> None:
    """Frame hooks recompress this direction from its first compressed frame on: a drop
    changes nothing more (no note)."""
    b = Book(want_frames=True, deflate=DeflateParams())
    sender = Deflater(DeflateParams(), True)
    pieces = [sender.compress_piece(b"drop me", False), sender.compress_piece(b"keep", True)]
    b.client(Wire(TEXT, pieces[0], fin=False, rsv=RSV1), Wire(CONT, pieces[1]))
    b.frame(CLIENT, "cut").drop()
    assert b.done(CLIENT) == [b.hooks(CLIENT)]
    assert b.leg(CLIENT).recompress
    (proxy,) = deflated(b"keep")
    assert b.done(CLIENT) == [Sent(SERVER, Wire(TEXT, proxy, rsv=RSV1))]
    assert b.peers[SERVER].messages == [b"keep"]


def test_a_captured_compressed_text_message_comes_in_pieces_of_valid_text() -> None:
    """Inflated content comes in chunks of a whole piece (INFLATE_PIECE is RECORD_PIECE), and
    256 KiB of three-byte characters end inside one: every piece is still valid UTF-8."""
    text = "✓".encode() * 300_000  # 900,000 bytes, four pieces
    (payload,) = deflated(text)
    b = Book(deflate=DeflateParams(), records=True, full_payloads=True)
    out = b.client(Wire(TEXT, payload, rsv=RSV1))
    assert out[-1] == Sent(SERVER, Wire(TEXT, payload, rsv=RSV1))
    pieces = [command.record for command in out[:-1] if isinstance(command, Record)]
    assert len(pieces) == len(out) - 1 >= 4
    assert [piece.more for piece in pieces] == [True] * (len(pieces) - 1) + [False]
    offset = 0
    for piece in pieces:
        assert piece.offset == offset
        piece.payload.decode("utf-8")  # each piece on its own
        offset += len(piece.payload)
    assert b"".join(piece.payload for piece in pieces) == text
