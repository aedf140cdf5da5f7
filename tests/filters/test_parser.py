"""The syntax: tokens, precedence, quoting, printing back, and every error with its column."""

from __future__ import annotations

import pytest

from wsproxy.filters import FilterError, compile_filter
from wsproxy.filters.lexer import Lexer, quote
from wsproxy.filters.nodes import And, Not, Or
from wsproxy.filters.operators import Body, Event, From, Url
from wsproxy.filters.parser import MAX_DEPTH, parse


def tree(expression: str) -> object:
    return parse(expression)


# -- tokens --------------------------------------------------------------------------------


def kinds(expression: str) -> list[tuple[str, str]]:
    lexer = Lexer(expression)
    out = []
    while (token := lexer.next()).kind != "end":
        out.append((token.kind, token.text))
    return out


def test_tokens() -> None:
    assert kinds(" ( ~u  a|b ) & !x|y ") == [
        ("(", "("),
        ("op", "u"),
        ("word", "a|b"),
        (")", ")"),
        ("&", "&"),
        ("!", "!"),
        ("word", "x|y"),
    ]


def test_words_stop_where_mitmproxy_stops_them() -> None:
    assert kinds("a(b)c'd'~u") == [
        ("word", "a"),
        ("(", "("),
        ("word", "b"),
        (")", ")"),
        ("word", "c"),
        ("word", "d"),
        ("op", "u"),
    ]


def test_token_columns() -> None:
    lexer = Lexer("  ~bq 'x y'")
    op = lexer.next()
    assert (op.start, op.end) == (2, 5)
    word = lexer.argument()
    assert (word.text, word.start, word.end, word.quoted) == ("x y", 6, 11, True)


@pytest.mark.parametrize(
    ("source", "value"),
    [
        (r"'a b'", "a b"),
        (r'"a b"', "a b"),
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'back\\slash'", "back\\slash"),
        (r"'\d+\.\w'", r"\d+\.\w"),  # regex escapes need no doubling
        (r"""'"'""", '"'),
        (r'''"'"''', "'"),
        ("''", ""),
        ("'é ü'", "é ü"),
    ],
)
def test_quoted_strings(source: str, value: str) -> None:
    node = parse(f"~u {source}")
    assert node == Url(value)
    assert parse(source) == Url(value)  # a quoted word alone is ~u too


def test_an_argument_may_start_with_operator_characters() -> None:
    assert parse("~b !important") == Body("!important")
    assert parse("~b |") == Body("|")
    assert parse("~b &&") == Body("&&")


def test_operator_names_are_case_sensitive() -> None:
    with pytest.raises(FilterError, match="unknown operator ~U"):
        parse("~U x")


# -- precedence ----------------------------------------------------------------------------


def test_bare_word_is_url() -> None:
    assert parse("chat") == Url("chat")
    assert parse("a|b") == Url("a|b")  # one word: a regex alternation


def test_not_binds_tighter_than_and_than_or() -> None:
    assert parse("!a & b | c") == Or((And((Not(Url("a")), Url("b"))), Url("c")))
    assert parse("a | b & c") == Or((Url("a"), And((Url("b"), Url("c")))))
    assert parse("a | !b & c") == Or((Url("a"), And((Not(Url("b")), Url("c")))))


def test_side_by_side_is_and_at_its_precedence() -> None:
    assert parse("a b | c") == parse("a & b | c") == Or((And((Url("a"), Url("b"))), Url("c")))
    assert parse("a | b c") == Or((Url("a"), And((Url("b"), Url("c")))))
    assert parse("(a)(b)") == And((Url("a"), Url("b")))
    assert parse("~from client ~b x") == And((From("client"), Body("x")))


def test_chains_are_flat_and_left_to_right() -> None:
    assert parse("a & b & c") == And((Url("a"), Url("b"), Url("c")))
    assert parse("a | b | c") == Or((Url("a"), Url("b"), Url("c")))


def test_parentheses_group() -> None:
    assert parse("(a | b) & c") == And((Or((Url("a"), Url("b"))), Url("c")))
    assert parse("!(a | b)") == Not(Or((Url("a"), Url("b"))))
    assert parse("((a))") == Url("a")


def test_double_negation_is_kept() -> None:
    assert parse("!!a") == Not(Not(Url("a")))


def test_whitespace_is_free() -> None:
    assert parse("  ~u\ta \n&\n~d   b ") == parse("~u a & ~d b")
    assert parse("!~u a") == parse("! ~u a")


# -- printing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "printed"),
    [
        ("chat", "~u chat"),
        ("a b | c", "~u a & ~u b | ~u c"),
        ("a (b | c)", "~u a & (~u b | ~u c)"),
        ("!(a & b)", "!(~u a & ~u b)"),
        ("!!~websocket", "!!~websocket"),
        ("~b 'hi there'", "~b 'hi there'"),
        ('~b "it\'s"', "~b 'it\\'s'"),
        ("(a | b) | c", "(~u a | ~u b) | ~u c"),
        ("~json 'a[\"x y\"]=1'", "~json 'a[\"x y\"]=1'"),
    ],
)
def test_str_is_canonical_and_parses_back(source: str, printed: str) -> None:
    node = parse(source)
    assert str(node) == printed
    assert parse(printed) == node


@pytest.mark.parametrize("value", ["", "a b", "(x)", "it's", "a\\", "\\'", "~u", '"', "\\\\'"])
def test_quote_round_trips(value: str) -> None:
    assert parse(f"~event {quote(value)}") == Event(value)  # any string is a glob


def test_filter_keeps_its_text() -> None:
    compiled = compile_filter("a   b")
    assert compiled.text == "a   b"
    assert str(compiled) == "~u a & ~u b"


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "column", "problem"),
    [
        ("", 1, "empty filter expression"),
        ("   ", 4, "empty filter expression"),
        ("(~u foo", 8, "missing ')'"),
        ("((a) | b", 9, "missing ')'"),
        ("a)", 2, "unexpected ')'"),
        ("()", 2, "'(' needs an expression after it, found ')'"),
        ("a &", 4, "'&' needs an expression after it, found the end"),
        ("a & & b", 5, "'&' needs an expression after it, found '&'"),
        ("a | | b", 5, "'|' needs an expression after it, found '|'"),
        ("a |", 4, "'|' needs an expression after it"),
        ("& a", 1, "'&' needs an expression before it"),
        ("| a", 1, "'|' needs an expression before it"),
        ("!", 2, "'!' needs an expression after it, found the end"),
        ("a & !)", 6, "'!' needs an expression after it, found ')'"),
        ("~", 1, "'~' must be followed by an operator name"),
        ("a ~ b", 3, "'~' must be followed by an operator name"),
        ("~nope x", 1, "unknown operator ~nope (known: ~all, ~websocket"),
        ("a & ~foo", 5, "unknown operator ~foo"),
        ("~u", 3, "~u needs REGEX, found the end"),
        ("~u (foo)", 4, "~u needs REGEX, found '('"),
        ("~u ~d x", 4, "~u needs REGEX, found '~'"),
        ("(~u)", 4, "~u needs REGEX, found ')'"),
        ("~from", 6, "~from needs client|server"),
        ("'abc", 1, "unterminated string: no closing '"),
        ('x & "a\\"', 5, 'unterminated string: no closing "'),
        ("~u ab[", 6, "bad regex 'ab[': unterminated character set"),
        ("~u 'a('", 6, "bad regex 'a(': missing )"),
        ("~u 'a\\'('", 4, "bad regex"),  # escapes: the argument's start
        ("x & *y", 5, "bad regex '*y': nothing to repeat"),
        ("~d (", 4, "~d needs REGEX"),
        ("~c 2000", 4, "~c takes a 3-digit status"),
        ("~from both", 7, "~from takes client or server, not 'both'"),
        ("~opcode text2", 9, "~opcode takes continuation, text, binary, close, ping, pong"),
        ("~len big", 6, "~len takes >N, <N, =N"),
        ("~len >-1", 6, "~len takes"),
        ("~proto soap", 8, "~proto takes socketio, engineio, graphql"),
        ("~topic a/b+", 10, "'+' must be a whole level"),
        ("~topic a/#/c", 10, "'#' the whole last one"),
        ("~topic #x", 8, "'#' the whole last one"),
        ("~json =1", 7, "needs a path before '='"),
        ("~json .a", 7, "a path starts with a key"),
        ("~json a..b=1", 9, "a key must follow '.'"),
        ("~json a[x]=1", 8, "'[' starts [N]"),
        ("~json a[0]b", 11, "expected '.', '[' or '='"),
    ],
)
def test_errors_say_what_and_where(source: str, column: int, problem: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse(source)
    error = caught.value
    assert problem in error.problem
    assert error.column == column, str(error)
    assert error.expression == source
    assert str(error).startswith(f"{source!r}: ")
    assert f"at column {column}" in str(error)
    assert "\n" not in str(error)  # one line for a command line
    assert error.pointer() == f"{source}\n{' ' * (column - 1)}^"
    assert isinstance(error, ValueError)


def test_missing_paren_names_the_open_one() -> None:
    with pytest.raises(FilterError) as caught:
        parse("a & (b | (c)")
    assert str(caught.value) == (
        "'a & (b | (c)': missing ')' at column 13 (to close the '(' at column 5)"
    )


def test_missing_argument_says_how_to_quote() -> None:
    with pytest.raises(FilterError, match="quote an argument"):
        parse("~u (a|b)")


def test_unknown_operator_lists_every_known_one() -> None:
    with pytest.raises(FilterError) as caught:
        parse("~x")
    for code in ("~u", "~d", "~b", "~bq", "~bs", "~h", "~hq", "~hs", "~from", "~opcode"):
        assert f"{code}," in str(caught.value) or f"{code})" in str(caught.value)
    for code in ("~len", "~proto", "~event", "~op", "~topic", "~json", "~websocket", "~m"):
        assert code in str(caught.value)


def test_nesting_is_bounded() -> None:
    deep = "(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(FilterError, match="nested more than"):
        parse(deep)
    with pytest.raises(FilterError, match="nested more than"):
        parse("!" * (MAX_DEPTH + 1) + "a")
    assert parse("(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH) == Url("a")
