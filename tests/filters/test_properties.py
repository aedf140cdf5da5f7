"""Properties: no input raises anything but FilterError, and a tree prints to text that parses
back to the same tree and gives the same answers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.filters.helpers import FLOW, OTHER, binary, text
from wsproxy.decoders.base import Decoded
from wsproxy.filters import FilterError, Subject, compile_filter
from wsproxy.filters.parser import parse

SYNTAX = "()!&|~'\"\\ =<>.[]*+#$/:0123456789"
NAMES = ["u", "d", "b", "bq", "hs", "from", "opcode", "len", "json", "topic", "event", "all"]
PIECES = [*SYNTAX, *(f"~{n} " for n in NAMES), "client", "text", "a", "é", "\t", ">3", "a.b=1"]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=20).map("".join))
def test_syntax_soup_raises_only_filter_errors(expression: str) -> None:
    try:
        parse(expression)
    except FilterError as error:
        assert 1 <= error.column <= len(expression) + 1
        assert "\n" not in str(error)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_raises_only_filter_errors(expression: str) -> None:
    try:
        parse(expression)
    except FilterError as error:
        assert 1 <= error.column <= len(expression) + 1


ARGUMENTS = {
    "u": st.sampled_from(["chat", "^wss://", "a b", "it's", "(x|y)", "\\d+", "EXAMPLE"]),
    "d": st.sampled_from(["example", "^127\\.", "nothing"]),
    "hq": st.sampled_from(["^Origin:", "graphql", "a'b\"c"]),
    "hs": st.sampled_from(["graphql", "nope"]),
    "b": st.sampled_from(["hello", "^b", "\\x00", "x y", "!"]),
    "bq": st.sampled_from(["hello", "a|b"]),
    "from": st.sampled_from(["client", "server"]),
    "opcode": st.sampled_from(["text", "binary", "ping", "continuation"]),
    "len": st.sampled_from([">3", "<=5", "=0", "2k"]),
    "proto": st.sampled_from(["socketio", "engineio", "json"]),
    "event": st.sampled_from(["chat*", "x y", "[ab]?"]),
    "topic": st.sampled_from(["a/+", "#", "a/#"]),
    "json": st.sampled_from(["a=1", "a.b", "[0]=hi", 'k="x y"', "$.ok=true"]),
}
LEAVES = st.one_of(
    st.sampled_from(["~all", "~websocket", "~http"]),
    *(arg.map(lambda a, c=code: f"~{c} {_quote(a)}") for code, arg in ARGUMENTS.items()),
)


def _quote(value: str) -> str:
    from wsproxy.filters.lexer import quote

    return quote(value)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        children.map(lambda c: f"!{c}"),
        children.map(lambda c: f"({c})"),
        st.tuples(children, st.sampled_from([" & ", " | ", " "]), children).map("".join),
    )


EXPRESSIONS = st.recursive(LEAVES, _combine, max_leaves=8)
SIO = Decoded("socketio", "EVENT", ["hi"], event="chat", layers=("engineio",))
MESSAGES = [text("hello"), text('{"a": 1}', client=False), binary(b"\x00b"), text("", decoded=SIO)]


@settings(max_examples=400, deadline=None)
@given(EXPRESSIONS)
def test_printing_round_trips_and_keeps_the_answers(expression: str) -> None:
    compiled = compile_filter(expression)
    printed = str(compiled.root)
    again = parse(printed)
    assert again == compiled.root
    assert str(again) == printed
    for flow in (FLOW, OTHER):
        bound = compiled.bind(flow)
        assert compiled.evaluate(Subject(flow)) == bound.verdict
        for message in MESSAGES:
            answer = compiled.matches(Subject(flow, message))
            assert compile_filter(printed).matches(Subject(flow, message)) is answer
            assert bound.matches(message) is answer
            if bound.verdict is not None:
                assert answer is bound.verdict
