"""JSON-RPC 2.0: every message type, batches, and answers named by their request's method."""

from __future__ import annotations

import pytest

from wsproxy.decoders.base import Decoded, Hints
from wsproxy.decoders.jsonrpc import JsonRpcDecoder, JsonRpcFactory


def test_request_and_its_response() -> None:
    decoder = JsonRpcDecoder()
    request = b'{"jsonrpc":"2.0","method":"sum","params":[1,2],"id":1}'
    decoded = decoder.decode(request, text=True, from_client=True)
    assert decoded is not None
    assert (decoded.kind, decoded.operation, decoded.id, decoded.value) == (
        "request",
        "sum",
        "1",
        [1, 2],
    )
    assert decoded.summary == 'jsonrpc request "sum" id=1 [1, 2]'
    assert decoder.encode(decoded) == request
    response = decoder.decode(b'{"jsonrpc":"2.0","result":3,"id":1}', text=True, from_client=False)
    assert response is not None
    assert (response.kind, response.operation, response.value) == ("response", "sum", 3)
    assert response.summary == 'jsonrpc response "sum" id=1 3'
    again = decoder.decode(b'{"jsonrpc":"2.0","result":3,"id":1}', text=True, from_client=False)
    assert again is not None and again.operation is None  # answered once


def test_notification_error_and_edit() -> None:
    decoder = JsonRpcDecoder()
    note = decoder.decode(b'{"jsonrpc": "2.0", "method": "tick"}', text=True, from_client=False)
    assert note is not None and (note.kind, note.id, note.value) == ("notification", None, None)
    error = b'{"jsonrpc":"2.0","error":{"code":-32601,"message":"no"},"id":"a"}'
    decoded = decoder.decode(error, text=True, from_client=False)
    assert decoded is not None and (decoded.kind, decoded.id) == ("error", "a")
    decoded.value = {"code": 1, "message": "changed"}
    assert decoder.encode(decoded) == (
        b'{"jsonrpc":"2.0","error":{"code":1,"message":"changed"},"id":"a"}'
    )
    note.operation = "tock"
    assert decoder.encode(note) == b'{"jsonrpc": "2.0", "method": "tock"}'


def test_batch() -> None:
    decoder = JsonRpcDecoder()
    batch = b'[{"jsonrpc":"2.0","method":"a","id":1},{"jsonrpc":"2.0","method":"a"}]'
    decoded = decoder.decode(batch, text=True, from_client=True)
    assert decoded is not None
    assert (decoded.kind, decoded.operation, decoded.fields["methods"]) == (
        "batch",
        "a",
        ["a", "a"],
    )
    assert decoder.encode(decoded) == batch
    mixed = b'[{"jsonrpc":"2.0","method":"a","id":2},{"jsonrpc":"2.0","method":"b","id":3}]'
    decoded = decoder.decode(mixed, text=True, from_client=True)
    assert decoded is not None and decoded.operation is None
    answers = b'[{"jsonrpc":"2.0","result":1,"id":2},{"jsonrpc":"2.0","result":1,"id":3}]'
    decoded = decoder.decode(answers, text=True, from_client=False)
    assert decoded is not None and decoded.fields["methods"] == ["a", "b"]


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"[]",
        b"[1]",
        b'{"method":"a"}',  # no version
        b'{"jsonrpc":"1.0","method":"a"}',
        b'{"jsonrpc":"2.0","id":1}',  # neither result nor error
        b'{"jsonrpc":"2.0","id":1,"result":1,"error":{}}',
        b'{"jsonrpc":"2.0","result":1}',  # a response without id
    ],
)
def test_not_jsonrpc(payload: bytes) -> None:
    assert JsonRpcDecoder().decode(payload, text=True, from_client=True) is None


def test_binary_and_refusals() -> None:
    decoder = JsonRpcDecoder()
    assert decoder.decode(b'{"jsonrpc":"2.0","method":"a"}', text=False, from_client=True) is None
    assert decoder.encode(Decoded("jsonrpc", "request")) is None
    assert decoder.encode(Decoded("jsonrpc", "batch", {1j})) is None


def test_remembered_ids_are_bounded() -> None:
    decoder = JsonRpcDecoder()
    for number in range(1100):
        payload = f'{{"jsonrpc":"2.0","method":"m","id":{number}}}'.encode()
        decoder.decode(payload, text=True, from_client=True)
    assert len(decoder._methods) == 1024


def test_factory() -> None:
    factory = JsonRpcFactory()
    assert factory.claims(Hints(subprotocol="jsonrpc"))
    assert not factory.claims(Hints())
    assert factory.sniff(b'{"jsonrpc":"2.0","method":"a"}', text=True)
    assert not factory.sniff(b'{"jsonrpc":"2.0"}', text=True)
    assert not factory.sniff(b'{"a":1}', text=True)
    assert not factory.sniff(b'{"jsonrpc":"2.0","method":"a"}', text=False)
    assert isinstance(factory.new(Hints()), JsonRpcDecoder)
