"""relay.py: two legs in memory, as playbooks.

Each test feeds the relay what a client (masked frames) and an upstream server (plain frames)
send, then reads what the relay writes to each of them with the FrameReader that peer would use.
"""

from __future__ import annotations

import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sansio.conftest import (
    BIG,
    MIB,
    Violation,
    Wire,
    assemble,
    client_bytes,
    frame_sequences,
    parse,
    server_bytes,
    split,
)
from tests.sansio.driver import Driven
from wsproxy.sansio import records as relay_module
from wsproxy.sansio.deflate import DeflateParams, Inflater
from wsproxy.sansio.endpoint import FrameReader
from wsproxy.sansio.events import DataChunk
from wsproxy.sansio.frames import RSV1, Opcode, apply_mask, serialize_close
from wsproxy.sansio.legs import Leg
from wsproxy.sansio.relay import (
    RECORD_PIECE,
    STREAM_THRESHOLD,
    FrameRecord,
    RelayConfig,
    Side,
    utf8_boundary,
)

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG
CLIENT, SERVER = Side.CLIENT, Side.SERVER


def close(code: int, reason: str = "") -> Wire:
    return Wire(CLOSE, serialize_close(code, reason))


class Playbook:
    """A relay with a client and a server around it (the shell: ``tests.sansio.driver``)."""

    def __init__(
        self,
        *,
        full_payloads: bool = False,
        deflate: DeflateParams | None = None,
        preview_size: int = relay_module.PREVIEW,
        full_payload_limit: int | None = None,
        **limits: int,
    ) -> None:
        self.relay = Driven(
            RelayConfig(
                max_frame_size=limits.get("max_frame_size", BIG),
                max_message_size=limits.get("max_message_size", BIG),
                deflate=deflate,
                records=True,
                full_payloads=full_payloads,
                preview_size=preview_size,
                full_payload_limit=full_payload_limit,
            )
        )
        self.records = self.relay.records
        self.notes = self.relay.notes

    def client_sends(self, *frames: Wire, raw: bytes = b"") -> None:
        self.relay.receive(CLIENT, client_bytes(*frames) + raw)

    def server_sends(self, *frames: Wire, raw: bytes = b"") -> None:
        self.relay.receive(SERVER, server_bytes(*frames) + raw)

    def server_gets(self) -> list[Wire | Violation]:
        """What the server reads (the relay must mask: a masked reader checks that)."""
        return parse(self.relay.data_to_send(SERVER), masked=True)

    def client_gets(self) -> list[Wire | Violation]:
        return parse(self.relay.data_to_send(CLIENT), masked=False)

    def closed(self, side: Side) -> bool:
        return self.relay.closed(side)

    def aborted(self, side: Side) -> bool:
        return self.relay.aborted(side)

    @property
    def client(self) -> Leg:
        return self.relay.relay.client

    @property
    def server(self) -> Leg:
        return self.relay.relay.server


# --- pass-through --------------------------------------------------------------------------------


def test_text_and_binary_pass_through_both_ways() -> None:
    p = Playbook()
    p.client_sends(Wire(TEXT, "héllo".encode()), Wire(BINARY, b"\x00\xff"))
    assert p.server_gets() == [Wire(TEXT, "héllo".encode()), Wire(BINARY, b"\x00\xff")]
    assert p.client_gets() == []
    p.server_sends(Wire(TEXT, b"echo"), Wire(BINARY, b""))
    assert p.client_gets() == [Wire(TEXT, b"echo"), Wire(BINARY, b"")]
    assert p.server_gets() == []
    assert (p.client.messages, p.client.frames, p.server.messages) == (2, 2, 2)


@pytest.mark.parametrize("size", [0, 10, 200])
def test_records_keep_preview_size_bytes(size: int) -> None:
    """Without full payloads a record keeps ``preview_size`` bytes (the -v log's
    --preview-length): of a small frame, of one that streams through, of a control frame."""
    p = Playbook(preview_size=size)
    small, large = bytes(range(256)), bytes(4 * STREAM_THRESHOLD)
    p.client_sends(Wire(BINARY, small), Wire(BINARY, large), Wire(PING, b"p" * 100))
    assert p.server_gets() == [Wire(BINARY, small), Wire(BINARY, large), Wire(PING, b"p" * 100)]
    assert [(r.length, r.payload) for r in p.records] == [
        (256, small[:size]),
        (len(large), large[:size]),
        (100, b"p" * min(size, 100)),
    ]


def test_fragmented_message_keeps_its_fragments() -> None:
    frames = [
        Wire(TEXT, b"Hel", fin=False),
        Wire(PING, b"between"),
        Wire(CONT, b"", fin=False),
        Wire(CONT, b"lo"),
    ]
    p = Playbook()
    p.client_sends(*frames)
    assert p.server_gets() == frames
    p.server_sends(*frames)
    assert p.client_gets() == frames
    assert p.client.messages == 1
    assert p.client.frames == 4


def test_client_frames_are_remasked_with_a_fresh_key() -> None:
    p = Playbook()
    sent = client_bytes(Wire(TEXT, b"Hello, upstream"))
    p.relay.receive(CLIENT, sent)
    out = p.relay.data_to_send(SERVER)
    assert len(out) == len(sent)
    assert out[:2] == sent[:2] == b"\x81\x8f"
    assert out[2:6] != sent[2:6]  # never the client's key
    assert out != sent
    assert apply_mask(out[6:], out[2:6]) == b"Hello, upstream"
    # Every frame gets its own key.
    p.relay.receive(CLIENT, sent)
    again = p.relay.data_to_send(SERVER)
    assert again[2:6] != out[2:6]


def test_server_frames_go_to_the_client_unmasked_and_unchanged() -> None:
    p = Playbook()
    sent = server_bytes(Wire(TEXT, b"Hel", fin=False), Wire(PONG, b"x"), Wire(CONT, b"lo"))
    p.relay.receive(SERVER, sent)
    assert p.relay.data_to_send(CLIENT) == sent


def test_compressed_frames_keep_rsv1_and_their_bytes() -> None:
    """With permessage-deflate the relay forwards the sender's compressed payload as is."""
    p = Playbook(deflate=DeflateParams())
    frames = [
        Wire(TEXT, bytes.fromhex("f248cd"), fin=False, rsv=RSV1),
        Wire(CONT, b"\xc9\xc9\x07\x00"),
    ]
    p.client_sends(*frames)
    p.server_sends(*frames)
    to_server, to_client = p.relay.data_to_send(SERVER), p.relay.data_to_send(CLIENT)
    assert to_client == bytes.fromhex("4103f248cd8004c9c90700")
    reader = p.server.reader.__class__(masked=True, max_frame_size=BIG, max_message_size=BIG)
    reader.inflater = Inflater(DeflateParams(), True, MIB)
    chunks = reader.receive_data(to_server)
    assert [(c.opcode, c.rsv, c.data) for c in chunks] == [  # type: ignore[union-attr]
        (TEXT, RSV1, bytes.fromhex("f248cd")),
        (CONT, 0, b"\xc9\xc9\x07\x00"),
    ]
    assert b"".join(c.content for c in chunks) == b"Hello"  # type: ignore[union-attr]


def test_small_frame_is_held_until_whole() -> None:
    p = Playbook()
    data = client_bytes(Wire(BINARY, b"x" * 1000))
    for byte in range(len(data) - 1):
        p.relay.receive(CLIENT, data[byte : byte + 1])
        assert p.relay.data_to_send(SERVER) == b""
    p.relay.receive(CLIENT, data[-1:])
    out = p.relay.data_to_send(SERVER)
    assert parse(out, masked=True) == [Wire(BINARY, b"x" * 1000)]


@pytest.mark.parametrize("side", [CLIENT, SERVER])
def test_large_frame_streams_out_before_it_is_complete(side: Side) -> None:
    size = 4 * STREAM_THRESHOLD
    payload = bytes(i % 253 for i in range(size))
    frames = [Wire(BINARY, payload, fin=False), Wire(CONT, b"end")]
    data = client_bytes(*frames) if side is CLIENT else server_bytes(*frames)
    p = Playbook()
    leg, target = p.relay.leg(side), p.relay.leg(side.other)
    out = b""
    for piece in split(data, range(1000, len(data), 50_000)):
        p.relay.receive(side, piece)
        sent = p.relay.data_to_send(side.other)
        if len(out) + len(piece) < size:
            assert sent, "a large frame must stream"
            assert target.mid_frame_out
        out += sent
        assert len(leg.reader._buffer) <= 14
    assert not target.mid_frame_out
    assert parse(out, masked=side is CLIENT) == frames


def test_frame_of_exactly_the_threshold_is_held() -> None:
    p = Playbook()
    data = client_bytes(Wire(BINARY, bytes(STREAM_THRESHOLD)))
    p.relay.receive(CLIENT, data[:-1])
    assert p.relay.data_to_send(SERVER) == b""
    p.relay.receive(CLIENT, data[-1:])
    assert p.server_gets() == [Wire(BINARY, bytes(STREAM_THRESHOLD))]


# --- pings and pongs -----------------------------------------------------------------------------


def test_ping_and_pong_relayed_unchanged_never_answered() -> None:
    p = Playbook()
    p.client_sends(Wire(PING, b"from client"), Wire(PONG, b"unsolicited"))
    assert p.server_gets() == [Wire(PING, b"from client"), Wire(PONG, b"unsolicited")]
    assert p.client_gets() == []  # no pong from the relay
    p.server_sends(Wire(PING, b"from server"), Wire(PING, b""))
    assert p.client_gets() == [Wire(PING, b"from server"), Wire(PING, b"")]
    assert p.server_gets() == []
    p.client_sends(Wire(PONG, b"from server"))
    assert p.server_gets() == [Wire(PONG, b"from server")]


# --- close handshake -----------------------------------------------------------------------------


def test_close_from_the_client() -> None:
    p = Playbook()
    p.client_sends(Wire(TEXT, b"last"), close(1000, "done"))
    assert p.server_gets() == [Wire(TEXT, b"last"), close(1000, "done")]
    assert p.client_gets() == []
    assert p.client.close_received and p.server.close_sent
    assert not p.closed(CLIENT)
    p.server_sends(Wire(TEXT, b"in flight"), close(1000, "server's own words"))
    # The client gets what the server sent before its answer, then the echo of its own close.
    assert p.client_gets() == [Wire(TEXT, b"in flight"), close(1000, "done")]
    assert (p.server.received_code, p.server.received_reason) == (1000, "server's own words")
    assert p.closed(CLIENT)  # the proxy is the server: it closes TCP first
    assert p.client.closed_cleanly and p.server.closed_cleanly
    assert not p.closed(SERVER)  # it waits for the upstream to close TCP
    assert (p.client.received_code, p.client.received_reason) == (1000, "done")
    assert (p.client.sent.code, p.server.sent.code) == (1000, 1000)
    assert not p.relay.finished
    p.relay.receive_eof(SERVER)
    assert p.relay.finished
    assert p.client_gets() == [] and p.server_gets() == []
    assert p.notes == []


def test_close_from_the_server_first() -> None:
    p = Playbook()
    p.server_sends(Wire(TEXT, b"bye"), close(1001, "restart"))
    assert p.client_gets() == [Wire(TEXT, b"bye"), close(1001, "restart")]
    assert p.server_gets() == []
    assert not p.closed(CLIENT)
    p.client_sends(Wire(TEXT, b"crossing"), close(1000))
    # The close crossed a message: that message still goes; the server gets its close echoed.
    assert p.server_gets() == [Wire(TEXT, b"crossing"), close(1001, "restart")]
    assert (p.client.received_code, p.client.received_reason) == (1000, "")
    assert p.closed(CLIENT)
    assert not p.closed(SERVER)
    p.relay.receive_eof(CLIENT)
    p.relay.receive_eof(SERVER)
    assert p.relay.finished
    assert p.client_gets() == [] and p.server_gets() == []


def test_empty_close_is_relayed_as_empty() -> None:
    p = Playbook()
    p.client_sends(Wire(CLOSE, b""))
    assert p.server_gets() == [Wire(CLOSE, b"")]
    assert p.client.received_code is None
    p.server_sends(close(1000))
    assert p.client_gets() == [Wire(CLOSE, b"")]
    assert p.closed(CLIENT)


def test_closes_that_cross() -> None:
    """Both peers close at once: each one's close is relayed, and nothing more is sent."""
    p = Playbook()
    p.client_sends(close(1000, "client"))
    p.server_sends(close(1001, "server"))
    assert p.server_gets() == [close(1000, "client")]
    assert p.client_gets() == [close(1000, "client")]
    assert p.closed(CLIENT)


def test_nothing_is_forwarded_after_a_peers_close() -> None:
    p = Playbook()
    p.client_sends(close(1000), Wire(TEXT, b"after"), Wire(PING, b""), close(1000))
    assert p.server_gets() == [close(1000)]
    p.client_sends(Wire(TEXT, b"later"))
    assert p.server_gets() == []
    p.server_sends(close(1000), Wire(TEXT, b"after"))
    assert p.client_gets() == [close(1000)]


def test_data_to_a_closing_peer_is_dropped() -> None:
    """Once a close went to a peer, RFC 6455 5.5.1 forbids sending it more data."""
    p = Playbook()
    p.server_sends(close(1000))
    assert p.client_gets() == [close(1000)]
    # The server keeps talking (a broken one): nothing of it reaches the client now.
    p.relay.server.received = None  # pretend its close is not yet read
    p.server_sends(Wire(TEXT, b"late"), Wire(PING, b"late"))
    assert p.client_gets() == []
    assert p.notes == [(SERVER, "message dropped: the other side is closing")]


# --- protocol errors -----------------------------------------------------------------------------

RSV2_FRAME = bytes([0x80 | 0x20 | TEXT, 0x80 | 1]) + b"\x00\x00\x00\x00x"
UNMASKED = bytes([0x81, 0x05]) + b"Hello"


def test_client_protocol_error_waits_for_the_servers_close() -> None:
    """The playbook of the module docstring: "Hello", a frame with RSV2, a ping, in one feed."""
    p = Playbook()
    p.client_sends(Wire(TEXT, b"Hello"), raw=RSV2_FRAME + client_bytes(Wire(PING, b"lost")))
    # The server gets "Hello"; its 1001 waits ERROR_GRACE (the shell's timer) so it can answer.
    assert p.server_gets() == [Wire(TEXT, b"Hello")]
    assert p.server.grace_close == (1001, "client protocol error")
    assert p.client_gets() == []
    assert p.client.violation is not None and p.client.violation.code == 1002
    assert p.client.owed_close == (1002, p.client.violation.reason)
    assert not p.closed(CLIENT)
    p.client_sends(Wire(TEXT, b"ignored"))  # the client's reader has stopped
    assert p.server_gets() == []
    p.server_sends(Wire(TEXT, b"Hello"))  # the echo
    assert p.client_gets() == [Wire(TEXT, b"Hello")]
    p.relay.send_deferred_close(SERVER)
    assert p.server_gets() == [close(1001, "client protocol error")]
    assert p.client_gets() == []  # still not: the server has not answered
    p.relay.send_deferred_close(SERVER)  # once only
    assert p.server_gets() == []
    p.server_sends(Wire(TEXT, b"more"), close(1001, "bye"))
    assert p.client_gets() == [Wire(TEXT, b"more"), close(1002, p.client.violation.reason)]
    assert p.closed(CLIENT)
    assert p.client.owed_close is None
    assert p.server_gets() == []
    assert not p.closed(SERVER)  # the upstream closes TCP itself
    p.relay.receive_eof(SERVER)
    assert p.relay.finished


def test_client_protocol_error_echo_and_close_in_one_feed() -> None:
    """The server answers and closes before the grace ends: its close is echoed at once."""
    p = Playbook()
    p.client_sends(Wire(TEXT, b"Hello"), raw=bytes([0x83, 0x80, 0, 0, 0, 0]))
    assert p.server_gets() == [Wire(TEXT, b"Hello")]
    p.server_sends(Wire(TEXT, b"Hello"), close(1000, "done"))
    assert p.client_gets() == [Wire(TEXT, b"Hello"), close(1002, "reserved opcode 0x3")]
    assert p.server_gets() == [close(1000, "done")]
    assert p.server.grace_close is None
    assert p.closed(CLIENT)
    p.relay.send_deferred_close(SERVER)
    assert p.server_gets() == []


def test_client_protocol_error_after_the_server_closed() -> None:
    """The server's close is already in: nothing to wait for, the client is closed now."""
    p = Playbook()
    p.server_sends(close(1000))
    assert p.client_gets() == [close(1000)]
    p.client_sends(raw=UNMASKED)
    assert p.client_gets() == []  # it already has a close: no second one
    assert p.server_gets() == [close(1001, "client protocol error")]  # its answer
    assert p.client.violation is not None and p.client.violation.code == 1002
    assert p.closed(CLIENT)
    assert p.server.grace_close is None


def test_client_protocol_error_after_the_client_got_a_close() -> None:
    p = Playbook()
    p.server_sends(close(1000))
    p.relay.server.received = None  # as if only our close went to the client
    p.client_gets()
    p.client_sends(raw=UNMASKED)
    assert p.server_gets() == [close(1001, "client protocol error")]
    assert p.client.owed_close is None  # close already sent: no pending one
    assert p.closed(CLIENT)


def test_server_protocol_error() -> None:
    p = Playbook()
    p.server_sends(Wire(TEXT, b"ok"), raw=server_bytes(Wire(TEXT, b"\xff")))
    assert p.client_gets() == [Wire(TEXT, b"ok"), close(1014, "upstream protocol error")]
    assert p.server_gets() == [close(1007, "invalid UTF-8 in a text message")]
    assert p.closed(SERVER)  # a broken upstream is cut right after its close
    assert not p.closed(CLIENT)  # the client may still answer
    p.client_sends(close(1014))
    assert p.server_gets() == []
    assert p.closed(CLIENT)
    assert p.notes == [(SERVER, "protocol error: invalid UTF-8 in a text message (1007)")]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (bytes([0x81, 0x85, 1, 2, 3, 4]), 1002),  # masked
        (bytes([0xC1, 0x00]), 1002),  # RSV1 without deflate
        (bytes([0x80, 0x00]), 1002),  # continuation without a message
        (bytes([0x88, 0x01, 0x03]), 1002),  # one-byte close
        (bytes([0x88, 0x02, 0x03, 0xED]), 1002),  # close code 1005
        (bytes([0x88, 0x03, 0x03, 0xE8, 0xFF]), 1007),  # close reason not UTF-8
    ],
)
def test_server_protocol_errors_get_their_code_client_1014(raw: bytes, code: int) -> None:
    p = Playbook()
    p.server_sends(raw=raw)
    assert p.client_gets() == [close(1014, "upstream protocol error")]
    (got,) = p.server_gets()
    assert isinstance(got, Wire) and got.payload[:2] == code.to_bytes(2, "big")


def test_server_error_after_client_close_does_not_close_twice() -> None:
    p = Playbook()
    p.client_sends(close(1000))
    assert p.server_gets() == [close(1000)]
    p.server_sends(raw=bytes([0x83, 0x00]))
    assert p.client_gets() == [close(1014, "upstream protocol error")]
    assert p.server_gets() == []  # it already has our close
    assert p.closed(CLIENT)  # the client's close is answered
    assert p.closed(SERVER)


def test_client_eof_without_close() -> None:
    p = Playbook()
    p.client_sends(Wire(TEXT, b"bye"))
    p.relay.receive_eof(CLIENT)
    assert p.server_gets() == [Wire(TEXT, b"bye"), close(1001, "client went away")]
    assert p.client.gone and p.closed(CLIENT)
    assert p.notes == [(CLIENT, "connection closed without a close frame (1006)")]
    p.relay.receive(CLIENT, client_bytes(Wire(TEXT, b"ghost")))
    assert p.server_gets() == []
    p.relay.receive_eof(CLIENT)  # twice is harmless
    assert p.server_gets() == []
    p.server_sends(close(1001))
    assert p.client_gets() == []  # nobody to send it to
    p.relay.receive_eof(SERVER)
    assert p.relay.finished


def test_server_eof_without_close() -> None:
    p = Playbook()
    p.relay.receive_eof(SERVER, "connection reset")
    assert p.client_gets() == [close(1014, "upstream connection lost")]
    assert p.closed(SERVER)
    assert p.notes == [(SERVER, "connection reset (1006)")]
    assert not p.closed(CLIENT)
    p.client_sends(close(1014))
    assert p.closed(CLIENT)
    assert p.server_gets() == []


def test_eof_after_a_clean_close_sends_nothing() -> None:
    p = Playbook()
    p.client_sends(close(1000))
    p.server_sends(close(1000))
    p.server_gets(), p.client_gets()
    p.relay.receive_eof(SERVER)
    p.relay.receive_eof(CLIENT)
    assert p.client_gets() == [] and p.server_gets() == []
    assert p.notes == []


def test_client_eof_after_its_protocol_error() -> None:
    p = Playbook()
    p.client_sends(raw=UNMASKED)
    p.relay.receive_eof(CLIENT)
    assert p.client.gone
    assert p.client_gets() == []
    p.relay.send_deferred_close(SERVER)
    assert p.server_gets() == [close(1001, "client protocol error")]


@pytest.mark.parametrize("deferred_sent", [False, True])
def test_server_eof_while_a_client_error_waits_gives_the_client_its_code(
    deferred_sent: bool,
) -> None:
    """The upstream vanished instead of answering: the client still broke the protocol, so
    it gets its 1002, not the 1014 meant for an upstream failure."""
    p = Playbook()
    p.client_sends(raw=UNMASKED)
    if deferred_sent:
        p.relay.send_deferred_close(SERVER)
        assert p.server_gets() == [close(1001, "client protocol error")]
    p.relay.receive_eof(SERVER)
    assert p.client_gets() == [close(1002, "unmasked frame from the client")]
    assert p.closed(CLIENT)
    assert p.relay.finished


@pytest.mark.parametrize("deferred_sent", [False, True])
def test_server_error_while_a_client_error_waits_gives_the_client_its_code(
    deferred_sent: bool,
) -> None:
    p = Playbook()
    p.client_sends(raw=UNMASKED)
    if deferred_sent:
        p.relay.send_deferred_close(SERVER)
        assert p.server_gets() == [close(1001, "client protocol error")]
    p.server_sends(raw=bytes([0x8F, 0x00]))
    expected_server = [] if deferred_sent else [close(1002, "reserved opcode 0xf")]
    assert p.server_gets() == expected_server
    assert p.client_gets() == [close(1002, "unmasked frame from the client")]
    assert p.closed(CLIENT)
    assert p.closed(SERVER)


# --- errors in the middle of a streamed frame ----------------------------------------------------


def streamed_text(bad_at: int) -> bytes:
    """A client text frame over the threshold with an invalid byte at ``bad_at``."""
    payload = bytearray(b"a" * (2 * STREAM_THRESHOLD))
    payload[bad_at] = 0xFF
    return client_bytes(Wire(TEXT, bytes(payload)))


def test_client_error_mid_streamed_frame_aborts_the_server() -> None:
    p = Playbook()
    data = streamed_text(STREAM_THRESHOLD + 10)
    p.relay.receive(CLIENT, data[:1000])
    assert p.relay.data_to_send(SERVER)  # the frame has started towards the server
    p.relay.receive(CLIENT, data[1000:])
    assert p.aborted(SERVER)  # no close frame can go inside a frame's payload
    assert not p.server.close_sent
    assert p.client_gets() == [close(1007, "invalid UTF-8 in a text message")]
    assert p.closed(CLIENT)
    assert p.relay.finished
    assert any("aborted" in note for side, note in p.notes if side is SERVER)


def test_server_eof_mid_streamed_frame_aborts_the_client() -> None:
    p = Playbook()
    data = server_bytes(Wire(BINARY, bytes(2 * STREAM_THRESHOLD)))
    p.relay.receive(SERVER, data[:STREAM_THRESHOLD])
    assert p.relay.data_to_send(CLIENT)
    p.relay.receive_eof(SERVER)
    assert p.aborted(CLIENT)
    assert p.relay.data_to_send(CLIENT) == b""
    assert p.relay.finished


def test_server_error_mid_streamed_frame_aborts_the_client() -> None:
    p = Playbook()
    payload = bytearray(b"b" * (2 * STREAM_THRESHOLD))
    payload[-1] = 0xC0
    data = server_bytes(Wire(TEXT, bytes(payload)))
    p.relay.receive(SERVER, data[:100])
    p.relay.data_to_send(CLIENT)
    p.relay.receive(SERVER, data[100:])
    assert p.aborted(CLIENT)
    assert p.server_gets() == [close(1007, "invalid UTF-8 in a text message")]
    assert p.closed(SERVER)


def test_client_error_while_the_server_streams_to_it() -> None:
    """The client's close must wait for the server's streamed frame and close answer."""
    p = Playbook()
    big = server_bytes(Wire(BINARY, bytes(2 * STREAM_THRESHOLD)))
    p.relay.receive(SERVER, big[:1000])
    p.client_sends(raw=bytes([0x81, 0x01, 0x41]))  # unmasked
    p.relay.send_deferred_close(SERVER)
    assert p.server_gets() == [close(1001, "client protocol error")]
    p.relay.receive(SERVER, big[1000:] + server_bytes(close(1001)))
    assert p.client_gets() == [
        Wire(BINARY, bytes(2 * STREAM_THRESHOLD)),
        close(1002, "unmasked frame from the client"),
    ]
    assert p.closed(CLIENT) and not p.aborted(CLIENT)


def test_server_close_while_the_client_streams_a_frame_to_it() -> None:
    """The server's close is relayed once the client's streamed frame is complete."""
    p = Playbook()
    big = client_bytes(Wire(BINARY, bytes(2 * STREAM_THRESHOLD)))
    p.relay.receive(CLIENT, big[:1000])
    p.server_sends(close(1000))
    assert p.client_gets() == [close(1000)]
    p.relay.receive(CLIENT, big[1000:])
    p.client_sends(close(1000))
    assert p.server_gets() == [Wire(BINARY, bytes(2 * STREAM_THRESHOLD)), close(1000)]
    assert p.closed(CLIENT)


# --- the proxy's own closes ----------------------------------------------------------------------


def test_close_both() -> None:
    p = Playbook()
    p.client_sends(Wire(TEXT, b"hi"))
    p.relay.close_both(1001, "proxy shutting down")
    assert p.server_gets() == [Wire(TEXT, b"hi"), close(1001, "proxy shutting down")]
    assert p.client_gets() == [close(1001, "proxy shutting down")]
    assert not p.closed(CLIENT)  # both still owe their close answers
    p.client_sends(close(1001))
    assert p.closed(CLIENT)
    assert p.server_gets() == []  # the server already has a close
    p.server_sends(close(1001))
    assert p.client_gets() == []
    p.relay.close_both(1001, "again")  # idempotent
    assert p.client_gets() == [] and p.server_gets() == []


def test_close_both_mid_streamed_frame_aborts_that_leg() -> None:
    p = Playbook()
    p.relay.receive(CLIENT, client_bytes(Wire(BINARY, bytes(2 * STREAM_THRESHOLD)))[:1000])
    p.relay.data_to_send(SERVER)
    p.relay.close_both(1001, "shutdown")
    assert p.aborted(SERVER)
    assert p.client_gets() == [close(1001, "shutdown")]


def test_close_both_delivers_a_owed_close_first() -> None:
    p = Playbook()
    p.client_sends(raw=bytes([0x81, 0x00]))
    assert p.server_gets() == []
    p.relay.close_both(1001, "shutdown")
    assert p.client_gets() == [close(1002, "unmasked frame from the client")]
    assert p.closed(CLIENT)
    assert p.server_gets() == [close(1001, "shutdown")]
    assert p.server.grace_close is None


def test_close_timeout_delivers_the_owed_close() -> None:
    p = Playbook()
    p.client_sends(Wire(BINARY, b"x"), raw=bytes([0x82, 0x00]))
    p.relay.send_deferred_close(SERVER)
    assert p.server_gets() == [Wire(BINARY, b"x"), close(1001, "client protocol error")]
    assert p.client_gets() == []
    p.relay.close_timeout(SERVER)  # the upstream never answered
    assert p.client_gets() == [close(1002, "unmasked frame from the client")]
    assert p.closed(CLIENT)
    assert p.closed(SERVER)
    assert p.relay.finished


def test_close_timeout_without_owed_close() -> None:
    p = Playbook()
    p.server_sends(close(1000))
    p.client_gets()
    p.relay.close_timeout(CLIENT)  # the client never answered
    assert p.closed(CLIENT)
    assert p.client_gets() == [] and p.server_gets() == []
    p.relay.receive_eof(SERVER)
    p.relay.close_timeout(SERVER)
    assert p.relay.finished


# --- the frame log -------------------------------------------------------------------------------


def test_on_frame_records_each_frame_once() -> None:
    p = Playbook()
    big = bytes(range(256)) * (STREAM_THRESHOLD // 128)
    p.relay.receive(CLIENT, client_bytes(Wire(BINARY, b"Hel", fin=False), Wire(PING, b"p")))
    data = client_bytes(Wire(CONT, big))
    for piece in split(data, range(0, len(data), 10_000)):
        p.relay.receive(CLIENT, piece)
    assert p.records == [
        FrameRecord(CLIENT, BINARY, False, 0, 3, b"Hel", False, BINARY),
        FrameRecord(CLIENT, PING, True, 0, 1, b"p", False, PING),
        FrameRecord(CLIENT, CONT, True, 0, len(big), big[:64], False, BINARY),
    ]


def test_without_listeners() -> None:
    relay = Driven(RelayConfig(max_frame_size=BIG, max_message_size=BIG))
    relay.receive(CLIENT, client_bytes(Wire(TEXT, b"x"), Wire(PING, b"")) + bytes([0x83, 0x80]))
    relay.receive_eof(SERVER)
    assert parse(relay.data_to_send(SERVER), masked=True)[0] == Wire(TEXT, b"x")


def test_limits_apply_on_both_legs() -> None:
    p = Playbook(max_frame_size=100, max_message_size=150)
    p.client_sends(Wire(BINARY, bytes(101)))
    assert p.client.violation is not None and p.client.violation.code == 1009
    p = Playbook(max_frame_size=100, max_message_size=150)
    p.server_sends(Wire(BINARY, bytes(100), fin=False), Wire(CONT, bytes(51)))
    assert p.client_gets() == [
        Wire(BINARY, bytes(100), fin=False),
        close(1014, "upstream protocol error"),
    ]
    assert p.server_gets()[0] == close(1009, "message over the limit of 150 bytes")


# --- properties ----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    client_frames=frame_sequences(),
    server_frames=frame_sequences(),
    data=st.data(),
)
def test_every_valid_sequence_passes_through_exactly(
    client_frames: list[Wire], server_frames: list[Wire], data: st.DataObject
) -> None:
    """Both peers talk at once, their bytes cut anywhere: each receives exactly the other's
    data and ping/pong frames (opcode, fin, rsv and payload), only re-masked. Of the closes,
    the first one read (the initiator's) goes to the other peer, and once that peer answers
    the initiator gets its own close back (the relay echoes rather than relays the answer)."""
    c_wire, s_wire = client_bytes(*client_frames), server_bytes(*server_frames)
    c_pieces = split(c_wire, data.draw(st.lists(st.integers(0, len(c_wire)), max_size=8)))
    s_pieces = split(s_wire, data.draw(st.lists(st.integers(0, len(s_wire)), max_size=8)))
    order = data.draw(st.permutations([CLIENT] * len(c_pieces) + [SERVER] * len(s_pieces)))
    pieces = {CLIENT: iter(c_pieces), SERVER: iter(s_pieces)}
    relay = Driven(RelayConfig(max_frame_size=BIG, max_message_size=BIG))
    to_server, to_client = b"", b""
    initiator: Side | None = None
    for side in order:
        relay.receive(side, next(pieces[side]))
        if initiator is None and relay.leg(side).close_received:
            initiator = side
        to_server += relay.data_to_send(SERVER)
        to_client += relay.data_to_send(CLIENT)

    sent = {CLIENT: client_frames, SERVER: server_frames}
    closes = {side: [f for f in frames if f.opcode == CLOSE] for side, frames in sent.items()}
    for receiver, wire, masked in ((SERVER, to_server, True), (CLIENT, to_client, False)):
        expected = [f for f in sent[receiver.other] if f.opcode != CLOSE]
        if initiator is receiver.other or (initiator is receiver and closes[receiver.other]):
            assert initiator is not None
            expected += closes[initiator]
        assert parse(wire, masked=masked) == expected, receiver
    both_closed = closes[CLIENT] and closes[SERVER]
    assert relay.closed(CLIENT) == bool(both_closed)
    assert not relay.closed(SERVER)  # the upstream closes TCP first
    assert relay.client.violation is None and relay.server.violation is None
    if not closes[SERVER]:
        assert to_client == s_wire  # unmasked frames go through byte for byte


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_large_frames_pass_through_at_any_split(data: st.DataObject) -> None:
    size = data.draw(st.integers(STREAM_THRESHOLD - 2, STREAM_THRESHOLD + 70_000))
    payload = data.draw(st.binary(min_size=16, max_size=16)) * (size // 16) + b"t" * (size % 16)
    frames = [
        Wire(BINARY, payload, fin=False),
        Wire(PING, b"between"),
        Wire(CONT, payload[: size // 2]),
    ]
    wire = client_bytes(*frames)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=6))
    relay = Driven(RelayConfig(max_frame_size=BIG, max_message_size=BIG))
    out = b""
    for piece in split(wire, cuts):
        relay.receive(CLIENT, piece)
        out += relay.data_to_send(SERVER)
    assert parse(out, masked=True) == frames


# --- captures: large frames recorded in pieces as they stream ------------------------------------


def pieces_of(records: list[FrameRecord], opcode: int | None = None) -> list[FrameRecord]:
    return [r for r in records if r.opcode < 0x8 and (opcode is None or r.opcode == opcode)]


def check_pieces(pieces: list[FrameRecord], content: bytes, most: int) -> None:
    """``pieces`` are one frame's records: contiguous, ``more`` on all but the last."""
    assert [r.more for r in pieces] == [True] * (len(pieces) - 1) + [False]
    offset = 0
    for r in pieces:
        assert r.offset == offset
        assert len(r.payload) <= most
        offset += len(r.payload)
    assert b"".join(r.payload for r in pieces) == content


@pytest.mark.parametrize("step", [None, 1, 7, 1500])
def test_capture_gets_a_frame_in_pieces_as_it_streams(
    step: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With full_payloads, the content of a frame comes in records of about RECORD_PIECE bytes
    (offset and more say where), fed in any pieces, byte by byte included; a control frame
    between two fragments is recorded whole, and the peer gets the frames unchanged."""
    monkeypatch.setattr(relay_module, "RECORD_PIECE", 1000)
    first, second = bytes(range(256)) * 18, b"tail" * 700  # 4608 and 2800 bytes
    frames = [Wire(BINARY, first, fin=False), Wire(PING, b"p"), Wire(CONT, second)]
    p = Playbook(full_payloads=True)
    wire = client_bytes(*frames)
    for piece in split(wire, range(0, len(wire), step or len(wire))):
        p.relay.receive(CLIENT, piece)
    assert p.server_gets() == frames
    most = 1000 + (step or len(wire))
    check_pieces(pieces_of(p.records, BINARY), first, most)
    check_pieces(pieces_of(p.records, CONT), second, most)
    if step is not None:
        assert len(pieces_of(p.records, BINARY)) >= 4
    ping = [r for r in p.records if r.opcode == PING]
    assert ping == [FrameRecord(CLIENT, PING, True, 0, 1, b"p", False, PING)]
    assert all(r.length == len(first) for r in pieces_of(p.records, BINARY))


def test_pieces_past_the_full_payload_limit_keep_a_preview(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``full_payload_limit`` (the log's decoding, no capture): whole pieces up to the limit,
    then only previews, so a huge frame costs no more than the limit; the peer still gets it
    whole."""
    monkeypatch.setattr(relay_module, "RECORD_PIECE", 1000)
    payload = bytes(range(256)) * 40  # 10240 bytes: pieces at offsets 0, 1000, ...
    p = Playbook(full_payloads=True, full_payload_limit=3000, preview_size=16)
    wire = client_bytes(Wire(BINARY, payload))
    for piece in split(wire, range(0, len(wire), 500)):
        p.relay.receive(CLIENT, piece)
    assert p.server_gets() == [Wire(BINARY, payload)]
    pieces = pieces_of(p.records, BINARY)
    assert len(pieces) >= 5
    for record in pieces:
        if record.offset < 3000:
            assert record.payload == payload[record.offset : record.offset + len(record.payload)]
            assert len(record.payload) >= 1000 or not record.more
        else:
            assert len(record.payload) <= 16


def test_a_stalled_frame_holds_at_most_a_piece() -> None:
    """Half of a 2 MiB frame arrives, then nothing: what reached the server is recorded in
    pieces, and the relay holds less than one piece of it for the capture."""
    size = 2 * MIB
    payload = bytes(range(256)) * (size // 256)
    p = Playbook(full_payloads=True)
    wire = client_bytes(Wire(BINARY, payload))
    half = wire[: len(wire) // 2]
    for piece in split(half, range(0, len(half), 64 * 1024)):
        p.relay.receive(CLIENT, piece)
    recorded = b"".join(r.payload for r in p.records)
    assert all(r.more for r in p.records) and len(p.records) >= 3
    assert all(len(r.payload) < RECORD_PIECE + 64 * 1024 for r in p.records)
    held = sum(map(len, p.client.recorder._parts))
    assert held < RECORD_PIECE
    assert recorded + b"".join(p.client.recorder._parts) == payload[: len(recorded) + held]
    assert len(recorded) + held == len(half) - 14  # everything but the header
    p.relay.receive(CLIENT, wire[len(half) :])
    check_pieces(p.records, payload, RECORD_PIECE + len(wire))


@pytest.mark.parametrize("step", [1, 5, None])
def test_text_pieces_are_cut_between_characters(
    step: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_module, "RECORD_PIECE", 100)
    text = ("aé✓😀" * 100).encode()
    p = Playbook(full_payloads=True)
    wire = server_bytes(Wire(TEXT, text))
    for piece in split(wire, range(0, len(wire), step or len(wire))):
        p.relay.receive(SERVER, piece)
    pieces = pieces_of(p.records)
    check_pieces(pieces, text, 100 + (step or len(wire)))
    for r in pieces:
        r.payload.decode("utf-8")  # each piece is valid text on its own


def test_pieces_after_the_other_side_closed_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_module, "RECORD_PIECE", 1000)
    payload = bytes(5000)
    wire = server_bytes(Wire(BINARY, payload))
    p = Playbook(full_payloads=True)
    p.relay.receive(SERVER, wire[:2500])
    p.relay.close_both(1001, "shutdown")  # the proxy closes while the frame is half-way
    p.relay.receive(SERVER, wire[2500:])
    pieces = pieces_of(p.records)
    check_pieces(pieces, payload, 2500 + len(wire))
    verdicts = [(r.verdict, r.by) for r in pieces]
    assert verdicts[0] == ("forwarded", None) and verdicts[-1] == ("dropped", "proxy")


@pytest.mark.parametrize("data", [b"", b"ab", "é".encode(), "a✓".encode(), "😀".encode()])
def test_utf8_boundary(data: bytes) -> None:
    for end in range(len(data) + 1):
        cut = utf8_boundary(data, end)
        assert cut <= end
        data[:cut].decode("utf-8")
        assert end - cut < 4
    assert utf8_boundary(b"\xff\xfe", 1) == 1  # not UTF-8: cut where asked


def test_a_highly_compressed_frame_is_inflated_in_batches() -> None:
    """16 MiB of repeated bytes in one small compressed frame: the reader hands the content on in
    batches (pending), the relay forwards the frame as it came; over the limit, nothing of
    the frame is forwarded before the 1009 (the upstream still gets a clean close)."""
    zeros = random.Random(1).randbytes(4096) * 4096  # 16 MiB, compressed about 160:1
    enc = zlib.compressobj(9, zlib.DEFLATED, -15)
    wire = enc.compress(zeros) + enc.flush(zlib.Z_SYNC_FLUSH)[:-4]
    assert len(wire) > STREAM_THRESHOLD  # streams through
    for limit, ok in ((BIG, True), (4 * MIB, False)):
        p = Playbook(max_message_size=limit, deflate=DeflateParams())
        reader = p.client.reader
        batches = [
            sum(
                len(e.content)
                for e in reader.receive_data(client_bytes(Wire(BINARY, wire, rsv=RSV1)))
                if isinstance(e, DataChunk)
            )
        ]
        while reader.pending:
            batches.append(
                sum(len(e.content) for e in reader.receive_data(b"") if isinstance(e, DataChunk))
            )
        # The same bytes through the relay.
        p.client.reader = FrameReader(masked=True, max_frame_size=BIG, max_message_size=limit)
        p.client.reader.inflater = Inflater(DeflateParams(), True, limit)
        p.client_sends(Wire(BINARY, wire, rsv=RSV1))
        assert max(batches) <= 2 * MIB and len(batches) > 4
        if ok:
            assert sum(batches) == len(zeros)
            upstream = FrameReader(masked=True, max_frame_size=BIG, max_message_size=BIG)
            upstream.inflater = Inflater(DeflateParams(), True, None)
            events = upstream.receive_data(p.relay.data_to_send(SERVER))
            while upstream.pending:
                events += upstream.receive_data(b"")
            assert assemble(events) == [Wire(BINARY, wire, rsv=RSV1)]
        else:
            assert p.relay.data_to_send(SERVER) == b""  # nothing of the frame went out
            p.relay.send_deferred_close(SERVER)
            assert p.server_gets() == [close(1001, "client protocol error")]
