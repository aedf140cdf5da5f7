"""GraphQL over WebSocket: both subprotocols, operation names, answers tied to their start."""

from __future__ import annotations

import json

import pytest

from wsproxy.decoders.base import Decoded, Hints
from wsproxy.decoders.graphqlws import GraphqlWsDecoder, GraphqlWsFactory, operation_name

SUBSCRIBE = {
    "id": "1",
    "type": "subscribe",
    "payload": {
        "query": "subscription OnMessage($room: String!) { onMessage(room: $room) }",
        "variables": {"room": "a"},
    },
}


def text(message: object) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("subscription OnMessage { x }", "OnMessage"),
        ("query   Q1($a: Int) { a }", "Q1"),
        ("mutation M { m }", "M"),
        ("{ hello }", None),
        ("# query Fake\n{ hello }", None),
        ('{ a(s: "query Fake") } query Real { b }', "Real"),
        ('{ a(s: """query Fake""") }', None),
        ("fragment F on T { x } query Later { ...F }", "Later"),
    ],
)
def test_operation_name(query: str, name: str | None) -> None:
    assert operation_name(query) == name


def test_transport_ws_conversation() -> None:
    decoder = GraphqlWsDecoder("graphql-transport-ws")
    init = decoder.decode(b'{"type":"connection_init","payload":{}}', text=True, from_client=True)
    assert init is not None and (init.kind, init.summary) == (
        "connection_init",
        "graphql connection_init {}",
    )
    start = decoder.decode(text(SUBSCRIBE), text=True, from_client=True)
    assert start is not None
    assert (start.protocol, start.kind, start.id, start.operation) == (
        "graphql",
        "subscribe",
        "1",
        "OnMessage",
    )
    assert start.summary == 'graphql subscribe id=1 "OnMessage" {"room": "a"}'
    assert start.fields["subprotocol"] == "graphql-transport-ws"
    item = b'{"id":"1","type":"next","payload":{"data":{"onMessage":"hi"}}}'
    following = decoder.decode(item, text=True, from_client=False)
    assert following is not None and following.operation == "OnMessage"
    assert following.summary == 'graphql next id=1 "OnMessage" {"data": {…}}'
    done = decoder.decode(b'{"id":"1","type":"complete"}', text=True, from_client=False)
    assert done is not None and (done.operation, done.summary) == (
        "OnMessage",
        'graphql complete id=1 "OnMessage"',
    )
    late = decoder.decode(item, text=True, from_client=False)
    assert late is not None and late.operation is None  # forgotten once complete
    ping = decoder.decode(b'{"type":"ping"}', text=True, from_client=False)
    assert ping is not None and ping.summary == "graphql ping"
    # A legacy type is not of this subprotocol.
    assert decoder.decode(b'{"type":"ka"}', text=True, from_client=False) is None


def test_legacy_conversation() -> None:
    decoder = GraphqlWsDecoder("graphql-ws")
    start = {"id": 7, "type": "start", "payload": {"query": "{ a }", "operationName": "Named"}}
    decoded = decoder.decode(text(start), text=True, from_client=True)
    assert decoded is not None and (decoded.id, decoded.operation) == ("7", "Named")
    data = decoder.decode(b'{"id":7,"type":"data","payload":{}}', text=True, from_client=False)
    assert data is not None and data.operation == "Named"
    ka = decoder.decode(b'{"type":"ka"}', text=True, from_client=False)
    assert ka is not None and ka.kind == "ka"
    stop = decoder.decode(b'{"id":7,"type":"stop"}', text=True, from_client=True)
    assert stop is not None and stop.operation == "Named"
    assert decoder.decode(b'{"type":"next"}', text=True, from_client=False) is None


def test_either_subprotocol_when_none_was_named() -> None:
    decoder = GraphqlWsDecoder()
    for kind in ("next", "ka"):
        decoded = decoder.decode(text({"type": kind}), text=True, from_client=False)
        assert decoded is not None and "subprotocol" not in decoded.fields


@pytest.mark.parametrize(
    "payload", [b"", b"nope", b"[]", b'{"type":1}', b'{"type":"bogus"}', b'"connection_init"']
)
def test_not_graphql(payload: bytes) -> None:
    assert GraphqlWsDecoder().decode(payload, text=True, from_client=True) is None


def test_binary_is_not_graphql() -> None:
    assert GraphqlWsDecoder().decode(b'{"type":"ping"}', text=False, from_client=True) is None


def test_edit_variables_and_operation() -> None:
    decoder = GraphqlWsDecoder("graphql-transport-ws")
    original = text(SUBSCRIBE)
    decoded = decoder.decode(original, text=True, from_client=True)
    assert decoded is not None
    assert decoder.encode(decoded) == original
    decoded.value["variables"]["room"] = "b"
    edited = json.loads(decoder.encode(decoded) or b"")
    assert edited["payload"]["variables"] == {"room": "b"}
    assert "operationName" not in edited["payload"]  # the name from the query is kept so
    decoded.operation = "Other"
    edited = json.loads(decoder.encode(decoded) or b"")
    assert edited["payload"]["operationName"] == "Other"
    decoded.id = "9"
    assert json.loads(decoder.encode(decoded) or b"")["id"] == "9"


def test_encode_spaced_and_refusals() -> None:
    decoder = GraphqlWsDecoder()
    spaced = b'{"type": "next", "id": "1", "payload": {"data": null}}'
    decoded = decoder.decode(spaced, text=True, from_client=False)
    assert decoded is not None and decoder.encode(decoded) == spaced
    assert decoder.encode(Decoded("graphql", "next")) is None
    decoded.value = {b"bytes"}
    assert decoder.encode(decoded) is None


def test_a_start_without_id_is_named_but_not_remembered() -> None:
    decoder = GraphqlWsDecoder("graphql-ws")
    start = {"type": "start", "payload": {"query": "subscription S { a }"}}
    decoded = decoder.decode(text(start), text=True, from_client=True)
    assert decoded is not None and (decoded.id, decoded.operation) == (None, "S")
    assert decoder._operations == {}  # no id: no answer can name it


def test_a_message_without_payload_is_encoded_without_one() -> None:
    decoder = GraphqlWsDecoder("graphql-transport-ws")
    for raw in (b'{"type":"ping"}', b'{"id":"1","type":"complete"}'):
        decoded = decoder.decode(raw, text=True, from_client=True)
        assert decoded is not None and decoded.value is None
        assert decoder.encode(decoded) == raw  # no "payload": null added


def test_pending_operations_are_bounded() -> None:
    decoder = GraphqlWsDecoder()
    for number in range(1100):
        start = {"id": str(number), "type": "subscribe", "payload": {"query": "subscription S{a}"}}
        decoder.decode(text(start), text=True, from_client=True)
    assert len(decoder._operations) == 1024
    assert "0" not in decoder._operations


@pytest.mark.parametrize(
    ("subprotocol", "claimed"),
    [
        ("graphql-transport-ws", True),
        ("graphql-ws", True),
        ("GraphQL-WS", True),
        ("mqtt", False),
        (None, False),
    ],
)
def test_claims(subprotocol: str | None, claimed: bool) -> None:
    assert GraphqlWsFactory().claims(Hints(subprotocol=subprotocol)) is claimed


@pytest.mark.parametrize(
    ("payload", "sniffed"),
    [
        (b'{"type":"connection_init"}', True),
        (b'{"type":"connection_init","payload":{"auth":"x"}}', True),
        (b'{"type":"next"}', False),
        (b'{"type":', False),
        (b'["type"]', False),
    ],
)
def test_sniff(payload: bytes, sniffed: bool) -> None:
    assert GraphqlWsFactory().sniff(payload, text=True) is sniffed
    assert GraphqlWsFactory().sniff(payload, text=False) is False


def test_new() -> None:
    assert GraphqlWsFactory().new(Hints(subprotocol="graphql-ws")).subprotocol == "graphql-ws"
    assert GraphqlWsFactory().new(Hints()).subprotocol is None
