"""Hypothesis: no input crashes a decoder, a factory or the registry, and decoding then
encoding gives the same bytes where the protocol's form allows (compact JSON: whitespace,
escapes and number spellings are the writer's choice, so only canonical text comes back
exactly)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wsproxy.decoders.base import Hints
from wsproxy.decoders.graphqlws import GraphqlWsDecoder
from wsproxy.decoders.jsonrpc import JsonRpcDecoder
from wsproxy.decoders.jsontext import JsonDecoder
from wsproxy.decoders.registry import FACTORIES, choose
from wsproxy.decoders.socketio import SocketIoDecoder

DECODERS = [
    SocketIoDecoder,
    lambda: SocketIoDecoder(3),
    GraphqlWsDecoder,
    JsonRpcDecoder,
    JsonDecoder,
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


def compact(value: Any, ascii_only: bool = False) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only)


# Text that looks like the protocols (so the parsers get past their first checks) and any bytes.
prefixes = st.sampled_from(["", "0", "2", "3", "4", "40", "42", "43", "45", "451-", "42/a,", "{"])
payloads = st.one_of(
    st.binary(max_size=64),
    st.builds(
        lambda p, s: (p + s).encode("utf-8", "surrogatepass"), prefixes, st.text(max_size=40)
    ),
    st.builds(lambda p, v: (p + compact(v)).encode(), prefixes, json_values),
)


@settings(max_examples=300)
@given(st.lists(st.tuples(payloads, st.booleans(), st.booleans()), max_size=6))
def test_no_input_crashes_a_decoder(messages: list[tuple[bytes, bool, bool]]) -> None:
    for make in DECODERS:
        decoder = make()
        for payload, text, from_client in messages:
            data = bytearray(payload) if from_client else payload  # the relay's bytearrays too
            decoded = decoder.decode(data, text=text, from_client=from_client)  # type: ignore[arg-type]
            if decoded is not None:
                assert decoded.summary
                decoder.encode(decoded)  # may say None, never raise


@settings(max_examples=200)
@given(payloads, st.booleans(), st.text(max_size=20), st.none() | st.text(max_size=20))
def test_no_input_crashes_a_factory(payload: bytes, text: bool, path: str, sub: str | None) -> None:
    hints = Hints(subprotocol=sub, path=path)
    for factory in FACTORIES:
        factory.claims(hints)
        factory.sniff(payload, text=text)
        factory.new(hints)
    choose(hints, payload, text)


namespaces = st.sampled_from(["", "/admin,"])
ack_ids = st.sampled_from(["", "0", "17"])


@given(
    st.sampled_from(["2", "3"]),
    namespaces,
    ack_ids,
    st.text(min_size=1, max_size=8),
    st.lists(json_values, max_size=3),
    st.booleans(),
)
def test_socketio_round_trip(
    kind: str, namespace: str, ident: str, event: str, args: list[Any], ascii_only: bool
) -> None:
    if kind == "3":
        ident = ident or "1"
        data = compact(args, ascii_only)
    else:
        data = compact([event, *args], ascii_only)
    if not ascii_only and data.isascii():
        ascii_only = True  # the same text either way
    payload = f"4{kind}{namespace}{ident}{data}".encode()
    decoder = SocketIoDecoder()
    decoded = decoder.decode(payload, text=True, from_client=True)
    assert decoded is not None and decoded.protocol == "socketio"
    assert decoder.encode(decoded) == payload


@given(
    st.sampled_from(["subscribe", "next", "complete", "error", "ping"]),
    st.none() | st.text(max_size=5),
    json_values,
)
def test_graphql_round_trip(kind: str, ident: str | None, payload: Any) -> None:
    message: dict[str, Any] = {"type": kind}
    if ident is not None:
        message["id"] = ident
    message["payload"] = payload
    raw = compact(message).encode()
    decoder = GraphqlWsDecoder()
    decoded = decoder.decode(raw, text=True, from_client=True)
    assert decoded is not None
    assert decoder.encode(decoded) == raw


@given(st.text(min_size=1, max_size=8), json_values, st.integers(0, 99))
def test_jsonrpc_round_trip(method: str, params: Any, ident: int) -> None:
    decoder = JsonRpcDecoder()
    for message in (
        {"jsonrpc": "2.0", "method": method, "params": params, "id": ident},
        {"jsonrpc": "2.0", "result": params, "id": ident},
    ):
        raw = compact(message).encode()
        decoded = decoder.decode(raw, text=True, from_client=True)
        assert decoded is not None
        assert decoder.encode(decoded) == raw


@given(json_values)
def test_json_round_trip(value: Any) -> None:
    raw = compact(value).encode()
    decoder = JsonDecoder()
    decoded = decoder.decode(raw, text=True, from_client=True)
    assert decoded is not None and decoder.encode(decoded) == raw
