"""extensions.py: the Sec-WebSocket-Extensions grammar (RFC 6455 9.1) and token lists."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproxy.sansio.errors import HandshakeError
from wsproxy.sansio.extensions import (
    Extension,
    parse_extension_header,
    parse_token_list,
    serialize_extension_header,
)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # RFC 7692 section 5 and 7.1 examples.
        (["permessage-deflate"], [("permessage-deflate", [])]),
        (
            ["permessage-deflate; client_max_window_bits; server_max_window_bits=10"],
            [
                (
                    "permessage-deflate",
                    [("client_max_window_bits", None), ("server_max_window_bits", "10")],
                )
            ],
        ),
        (
            ["permessage-deflate; server_max_window_bits=10, permessage-deflate"],
            [
                ("permessage-deflate", [("server_max_window_bits", "10")]),
                ("permessage-deflate", []),
            ],
        ),
        # A quoted value is unquoted, and may hold the separators (RFC 6455 9.1).
        (['x; a="10"'], [("x", [("a", "10")])]),
        (['x; a="1,2;3", y'], [("x", [("a", "1,2;3")]), ("y", [])]),
        ([r'x; a="q\"uo\\te"'], [("x", [("a", 'q"uo\\te')])]),
        # Whitespace around every token; empty list elements are ignored (RFC 7230 7).
        (["  x ;  a = 1 ;b  ,  y  "], [("x", [("a", "1"), ("b", None)]), ("y", [])]),
        ([", ,x,, "], [("x", [])]),
        ([""], []),
        ([], []),
    ],
)
def test_parse_extension_header(values: list[str], expected: list[Extension]) -> None:
    assert parse_extension_header(values) == expected


def test_repeated_header_lines_are_one_list() -> None:
    # RFC 7230 section 3.2.2: the header may be repeated; its values concatenate.
    one = parse_extension_header(["a; x=1, b", "c"])
    assert one == parse_extension_header(["a; x=1", "b, c"])
    assert [name for name, _ in one] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("; a=1", "malformed Sec-WebSocket-Extensions"),
        ("per message", "malformed Sec-WebSocket-Extensions"),
        ('"quoted"', "malformed Sec-WebSocket-Extensions"),
        ("x; =1", "malformed extension parameter"),
        ("x; a=", "malformed extension parameter"),
        ("x; a=b c", "malformed extension parameter"),
        ("x; a b", "malformed extension parameter"),
        ('x; a="unterminated', "malformed extension parameter"),
        ("x;", "malformed extension parameter"),
    ],
)
@pytest.mark.parametrize("status", [400, 502])
def test_malformed_extension_header(value: str, words: str, status: int) -> None:
    with pytest.raises(HandshakeError) as caught:
        parse_extension_header(["ok", value], status=status)
    assert caught.value.status == status
    assert words in caught.value.reason


def test_malformed_extension_header_is_a_400_by_default() -> None:
    with pytest.raises(HandshakeError) as caught:
        parse_extension_header(["a b"])
    assert caught.value.status == 400


def test_serialize_extension_header() -> None:
    extensions: list[Extension] = [
        (
            "permessage-deflate",
            [("client_max_window_bits", None), ("server_max_window_bits", "10")],
        ),
        ("x-other", []),
    ]
    text = serialize_extension_header(extensions)
    assert text == (
        "permessage-deflate; client_max_window_bits; server_max_window_bits=10, x-other"
    )
    assert parse_extension_header([text]) == extensions
    assert serialize_extension_header([]) == ""


TOKEN = st.text(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=12,
)
EXTENSIONS = st.lists(
    st.tuples(TOKEN, st.lists(st.tuples(TOKEN, st.none() | TOKEN), max_size=4)), max_size=4
)


@given(extensions=EXTENSIONS)
def test_serialize_then_parse_is_the_identity(extensions: list[Extension]) -> None:
    assert parse_extension_header([serialize_extension_header(extensions)]) == extensions


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["Upgrade"], ["Upgrade"]),
        (["keep-alive, Upgrade"], ["keep-alive", "Upgrade"]),
        (["  chat ,superchat  ", "v2"], ["chat", "superchat", "v2"]),
        ([",, a ,", ""], ["a"]),
        ([], []),
    ],
)
def test_parse_token_list(values: list[str], expected: list[str]) -> None:
    assert parse_token_list(values) == expected


@pytest.mark.parametrize("value", ["a b", "a, b c", 'a, "b"', "a;b", "é"])
@pytest.mark.parametrize("status", [400, 502])
def test_malformed_token_list(value: str, status: int) -> None:
    with pytest.raises(HandshakeError) as caught:
        parse_token_list(["fine", value], status)
    assert caught.value.status == status
    assert "malformed token list" in caught.value.reason
