"""The breakpoint rules and pause actions, checked before anything acts (``wsproxy.web.rules``)."""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest

from wsproxy.filters import FilterError
from wsproxy.web.rules import (
    MAX_RULES,
    Decision,
    handshake_action,
    message_action,
    parse_rules,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- rules -------------------------------------------------------------------------------------


def test_defaults_and_round_trip() -> None:
    (rule,) = parse_rules([{"filter": "~u chat & ~b secret"}])
    assert rule.to_dict() == {
        "id": "b1",
        "filter": "~u chat & ~b secret",
        "direction": "both",
        "on": "message",
        "timeout": 60,
        "default": "forward",
        "enabled": True,
    }
    again = parse_rules([rule.to_dict()])
    assert again[0].to_dict() == rule.to_dict()


def test_every_field_kept() -> None:
    given = {
        "id": "mine",
        "filter": "~u /x",
        "direction": "client",
        "on": "handshake",
        "timeout": 2.5,
        "default": "drop",
        "enabled": False,
    }
    (rule,) = parse_rules([given])
    assert rule.to_dict() == given


def test_new_rules_get_free_ids() -> None:
    rules = parse_rules([{"filter": "~all"}, {"id": "b1", "filter": "~all"}, {"filter": "~all"}])
    assert [r.id for r in rules] == ["b2", "b1", "b3"]


def test_direction_applies() -> None:
    client, server, both = parse_rules(
        [{"filter": "~all", "direction": d} for d in ("client", "server", "both")]
    )
    assert client.applies_to(True) and not client.applies_to(False)
    assert server.applies_to(False) and not server.applies_to(True)
    assert both.applies_to(True) and both.applies_to(False)


def test_bad_filter_says_where() -> None:
    with pytest.raises(FilterError) as error:
        parse_rules([{"filter": "~u chat & (~b x"}])
    assert error.value.column == 16
    assert "missing ')'" in str(error.value)
    with pytest.raises(FilterError, match="unknown operator ~nope"):
        parse_rules([{"filter": "~nope"}])


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"filter": "~all"}, "expected a list"),
        ([["~all"]], "breakpoint 1: expected an object, got list"),
        ([{"filter": ""}], "filter: a filter expression is required"),
        ([{"filter": 7}], "filter: a filter expression is required"),
        ([{"filter": "~b " + "x" * 5000}], "at most 4096"),
        ([{"filter": "~all", "direction": "up"}], "direction: client or server or both, got 'up'"),
        ([{"filter": "~all", "on": "frame"}], "on: message or handshake, got 'frame'"),
        ([{"filter": "~all", "default": "answer"}], "default: forward or drop, got 'answer'"),
        ([{"filter": "~all", "enabled": "yes"}], "enabled: true or false"),
        ([{"filter": "~all", "timeout": "60"}], "timeout: a number of seconds"),
        ([{"filter": "~all", "timeout": True}], "timeout: a number of seconds"),
        ([{"filter": "~all", "timeout": 0}], "more than 0 and at most 86400"),
        ([{"filter": "~all", "timeout": -1}], "more than 0"),
        ([{"filter": "~all", "timeout": 86401}], "at most 86400"),
        ([{"filter": "~all", "timeout": math.nan}], "more than 0"),
        ([{"filter": "~all", "colour": "red"}], "unknown field 'colour'"),
        ([{"filter": "~all", "id": "has space"}], "id 'has space': 1 to 64 letters"),
        ([{"filter": "~all", "id": 3}], "id 3: 1 to 64"),
        ([{"filter": "~all", "id": "a"}, {"filter": "~all", "id": "a"}], "id is used twice"),
        (
            [{"filter": "~u x", "on": "handshake", "direction": "server"}],
            "pauses the client's upgrade request: direction client or both",
        ),
        ([{"filter": "~b secret", "on": "handshake"}], "looks at messages"),
        ([{"filter": "~all"}] * (MAX_RULES + 1), f"at most {MAX_RULES}"),
    ],
)
def test_bad_rules(rules: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_rules(rules)


# -- message actions ---------------------------------------------------------------------------


def test_message_actions() -> None:
    assert message_action({"action": "forward"}, text_message=True) == Decision("forward")
    assert message_action({"action": "forward", "text": "é"}, text_message=True).content == "é"
    edited = message_action({"action": "forward", "base64": b64(b"\x00\xff")}, text_message=False)
    assert edited.content == b"\x00\xff"
    utf8 = message_action({"action": "forward", "base64": b64("é".encode())}, text_message=True)
    assert utf8.content == "é".encode()
    assert message_action({"action": "drop"}, text_message=False) == Decision("drop")
    answer = message_action({"action": "answer", "text": "hi"}, text_message=False)
    assert answer == Decision("answer", "hi")
    binary = message_action({"action": "answer", "base64": b64(b"\x01")}, text_message=True)
    assert binary.content == b"\x01"


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("forward", "expected an object"),
        ({}, "forward, drop or answer, got None"),
        ({"action": "skip"}, "forward, drop or answer, got 'skip'"),
        ({"action": "refuse"}, "is for a paused handshake"),
        ({"action": "forward", "text": "a", "base64": "YQ=="}, "text or base64, not both"),
        ({"action": "forward", "text": 1}, "text: a string"),
        ({"action": "forward", "base64": 1}, "base64: a string"),
        ({"action": "forward", "base64": "!!"}, "not valid base64"),
        ({"action": "forward", "base64": b64(b"\xc3")}, "must stay UTF-8"),
        ({"action": "forward", "headers": []}, "unexpected field 'headers'"),
        ({"action": "drop", "text": "x"}, "unexpected field 'text'"),
        ({"action": "answer"}, "the text (or base64) to send back"),
    ],
)
def test_bad_message_actions(action: Any, message: str) -> None:
    with pytest.raises(ValueError) as error:
        message_action(action, text_message=True)
    assert message in str(error.value)


# -- handshake actions -------------------------------------------------------------------------


def test_handshake_actions() -> None:
    assert handshake_action({"action": "forward"}) == Decision("forward")
    forward = handshake_action(
        {"action": "forward", "headers": [["Host", "h"], ["X-A", "1"], ["x-a", "2"]]}
    )
    assert forward.headers is not None
    assert forward.headers.items() == [("Host", "h"), ("X-A", "1"), ("x-a", "2")]
    assert handshake_action({"action": "refuse"}) == Decision("refuse", status=403)
    refused = handshake_action({"action": "refuse", "status": 451, "reason": "not here"})
    assert (refused.status, refused.reason) == (451, "not here")


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ([], "expected an object"),
        ({"action": "drop"}, "is for a paused message"),
        ({"action": "answer", "text": "x"}, "is for a paused message"),
        ({"action": "later"}, "forward or refuse, got 'later'"),
        ({"action": "forward", "headers": {"Host": "h"}}, "a list of [name, value] pairs"),
        ({"action": "forward", "headers": [["Host"]]}, "each one a [name, value] pair"),
        ({"action": "forward", "headers": [["Host", 1]]}, "each one a [name, value] pair"),
        ({"action": "forward", "headers": [["Bad Name", "x"]]}, "invalid header name"),
        ({"action": "forward", "headers": [["X", "a\r\nInjected: 1"]]}, "invalid header value"),
        ({"action": "forward", "headers": [["X-A", "1"]]}, "needs its Host header"),
        ({"action": "forward", "text": "x"}, "unexpected field 'text'"),
        ({"action": "refuse", "status": 200}, "a 4xx or 5xx HTTP status, got 200"),
        ({"action": "refuse", "status": "403"}, "a 4xx or 5xx HTTP status"),
        ({"action": "refuse", "status": True}, "a 4xx or 5xx HTTP status"),
        ({"action": "refuse", "reason": "a\nb"}, "printable ASCII"),
        ({"action": "refuse", "reason": 5}, "printable ASCII"),
    ],
)
def test_bad_handshake_actions(action: Any, message: str) -> None:
    with pytest.raises(ValueError) as error:
        handshake_action(action)
    assert message in str(error.value)
