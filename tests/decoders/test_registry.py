"""Choosing a connection's decoder: claims first, then sniffing; and joining frames."""

from __future__ import annotations

import pytest

from wsproxy.decoders import connection
from wsproxy.decoders.base import Hints
from wsproxy.decoders.connection import ConnectionDecoding, MessageJoiner, StreamDecoding
from wsproxy.decoders.registry import FACTORIES, choose, claimed


@pytest.mark.parametrize(
    ("hints", "payload", "text", "protocol"),
    [
        (Hints(path="/socket.io/?EIO=4&transport=websocket"), b'{"a":1}', True, "socketio"),
        (
            Hints(subprotocol="graphql-transport-ws"),
            b'{"jsonrpc":"2.0","method":"a"}',
            True,
            "graphql",
        ),
        (Hints(), b'0{"sid":"x"}', True, "socketio"),
        (Hints(), b'{"type":"connection_init"}', True, "graphql"),
        (Hints(), b'{"jsonrpc":"2.0","method":"a","id":1}', True, "jsonrpc"),
        (Hints(), b'{"type":"next"}', True, "json"),
        (Hints(), b"hello", True, None),
        (Hints(), b"\x00\x01", False, None),
    ],
)
def test_choose(hints: Hints, payload: bytes, text: bool, protocol: str | None) -> None:
    factory = choose(hints, payload, text)
    assert (None if factory is None else factory.protocol) == protocol


def test_claimed_and_order() -> None:
    assert claimed(Hints()) is None
    # Plain JSON is the last guess for text; only the binary formats, which never take text,
    # come after it.
    order = [factory.protocol for factory in FACTORIES]
    assert order[order.index("json") + 1 :] == ["msgpack", "cbor", "protobuf"]
    assert not any(f.sniff(b'{"a": 1}', text=True) for f in FACTORIES[order.index("json") + 1 :])
    assert choose(Hints(), b"{}", True, factories=[]) is None


def test_connection_decoding_is_chosen_at_the_first_decodable_message() -> None:
    decoding = ConnectionDecoding(Hints())
    assert decoding.protocol is None
    assert decoding.decode(b"hello", text=True, from_client=True) is None
    assert decoding.encode(object()) is None  # type: ignore[arg-type]
    decoded = decoding.decode(b'{"jsonrpc":"2.0","method":"a"}', text=True, from_client=True)
    assert decoded is not None and decoding.protocol == "jsonrpc"
    # Fixed from then on: a later GraphQL-looking message is JSON-RPC's to judge.
    assert decoding.decode(b'{"type":"connection_init"}', text=True, from_client=True) is None
    assert decoding.encode(decoded) == b'{"jsonrpc":"2.0","method":"a"}'


def test_connection_decoding_gives_up_after_some_tries() -> None:
    decoding = ConnectionDecoding(Hints())
    for _ in range(connection.SNIFF_TRIES):
        assert not decoding.gave_up
        assert decoding.decode(b"plain", text=True, from_client=True) is None
    assert decoding.gave_up  # the -v log stops feeding it
    assert decoding.decode(b'{"a":1}', text=True, from_client=True) is None
    assert decoding.protocol is None
    found = ConnectionDecoding(Hints())
    assert found.decode(b'{"a":1}', text=True, from_client=True) is not None
    assert not found.gave_up


def test_connection_decoding_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "DECODE_LIMIT", 8)
    decoding = ConnectionDecoding(Hints())
    assert decoding.decode(b'{"a":"0123456789"}', text=True, from_client=True) is None
    assert decoding.protocol is None  # not sniffed either
    assert decoding.decode(b'{"a":1}', text=True, from_client=True) is not None
    assert decoding.decode(b'{"a":"0123456789"}', text=True, from_client=True) is None


def test_joiner(monkeypatch: pytest.MonkeyPatch) -> None:
    joiner = MessageJoiner()
    assert joiner.add(b"whole", last=True) == b"whole"
    assert joiner.add(b"ab", last=False) is None
    assert joiner.add(b"", last=False) is None
    assert joiner.add(b"cd", last=True) == b"abcd"
    monkeypatch.setattr(connection, "DECODE_LIMIT", 4)
    assert joiner.add(b"abc", last=False) is None
    assert joiner.add(b"de", last=False) is None  # over the limit: no longer held
    assert joiner.add(b"f", last=True) is None
    assert joiner.add(b"ok", last=True) == b"ok"


def test_stream_joins_each_direction_on_its_own() -> None:
    stream = StreamDecoding(Hints())
    call = b'{"jsonrpc":"2.0","method":"sum","params":[1,2],"id":7}'
    reply = b'{"jsonrpc":"2.0","result":3,"id":7}'
    assert stream.frame(call[:10], from_client=True, text=True, last=False) is None
    assert stream.decoding.protocol is None  # nothing chosen before a whole message
    # The server's message, in two frames, comes between the client's frames.
    assert stream.frame(reply[:5], from_client=False, text=True, last=False) is None
    assert stream.frame(call[10:30], from_client=True, text=True, last=False) is None
    answer = stream.frame(reply[5:], from_client=False, text=True, last=True)
    assert answer is not None and answer.kind == "response" and answer.id == "7"
    assert stream.decoding.protocol == "jsonrpc"
    asked = stream.frame(call[30:], from_client=True, text=True, last=True)
    assert asked is not None and asked.kind == "request" and asked.operation == "sum"
    assert stream.decoding.encode(asked) == call


def test_stream_a_whole_message_between_frames_is_its_own() -> None:
    stream = StreamDecoding(Hints())
    call = b'{"jsonrpc":"2.0","method":"a","id":1}'
    injected = b'{"jsonrpc":"2.0","method":"b","id":2}'
    assert stream.frame(call[:12], from_client=True, text=True, last=False) is None
    # ``last`` is False (the client's message is not over) but the injected one is whole.
    d = stream.frame(injected, from_client=True, text=True, last=False, whole=True)
    assert d is not None and d.operation == "b"
    d = stream.frame(call[12:], from_client=True, text=True, last=True)
    assert d is not None and d.operation == "a"  # not mixed with the injected bytes


def test_stream_a_message_past_the_limit_is_not_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "DECODE_LIMIT", 16)
    stream = StreamDecoding(Hints())
    assert stream.frame(b'{"a":"0123', from_client=True, text=True, last=False) is None
    assert stream.frame(b'456789"}', from_client=True, text=True, last=True) is None
    assert stream.decoding.protocol is None  # not held, not sniffed
    d = stream.frame(b'{"a":1}', from_client=True, text=True, last=True)
    assert d is not None and d.protocol == "json"
