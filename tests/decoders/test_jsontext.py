"""Plain JSON: the fallback, its kinds and the style kept when re-encoding."""

from __future__ import annotations

import pytest

from wsproxy.decoders.base import Decoded, Hints
from wsproxy.decoders.brief import brief, cut
from wsproxy.decoders.jsontext import JsonDecoder, JsonFactory


@pytest.mark.parametrize(
    ("payload", "kind", "summary"),
    [
        (b'{"a":1,"b":[1,2]}', "object", 'json {"a": 1, "b": […]}'),
        (b"[1, 2]", "array", "json [1, 2]"),
        (b'"s"', "string", 'json "s"'),
        (b"1.5", "number", "json 1.5"),
        (b"true", "boolean", "json true"),
        (b"null", "null", "json null"),
    ],
)
def test_kinds_and_round_trip(payload: bytes, kind: str, summary: str) -> None:
    decoder = JsonDecoder()
    decoded = decoder.decode(payload, text=True, from_client=True)
    assert decoded is not None and (decoded.kind, decoded.summary) == (kind, summary)
    assert decoder.encode(decoded) == payload


def test_not_json() -> None:
    decoder = JsonDecoder()
    assert decoder.decode(b"{", text=True, from_client=True) is None
    assert decoder.decode(b"\xff", text=True, from_client=True) is None
    assert decoder.decode(b"[" * 100_000, text=True, from_client=True) is None
    assert decoder.decode(b"{}", text=False, from_client=True) is None
    assert decoder.encode(Decoded("json", "object", {1j: 1})) is None


def test_whitespace_is_normalised() -> None:
    decoder = JsonDecoder()
    decoded = decoder.decode(b'{\n  "a": 1\n}', text=True, from_client=True)
    assert decoded is not None and decoder.encode(decoded) == b'{"a": 1}'


def test_factory() -> None:
    factory = JsonFactory()
    assert factory.claims(Hints(subprotocol="json"))
    assert not factory.claims(Hints())
    assert factory.sniff(b' {"a":1}', text=True)
    assert not factory.sniff(b"{bad", text=True)
    assert not factory.sniff(b"12", text=True)  # a bare value is no sign of JSON
    assert not factory.sniff(b"{}", text=False)
    assert isinstance(factory.new(Hints()), JsonDecoder)


def test_brief() -> None:
    assert brief({"a": {"b": 1}, "c": [], "d": {}, "e": b"xy"}) == (
        '{"a": {…}, "c": [], "d": {}, "e": <2 B>}'
    )
    assert brief(["x" * 300]) == '["' + "x" * 198 + "…"
    assert len(brief(list(range(1000)))) == 201
    assert len(brief({str(n): n for n in range(1000)})) == 201
    assert brief(1j) == "1j"
    assert brief(float("nan")) == "NaN"
    assert cut("abc", 2) == "ab…"
