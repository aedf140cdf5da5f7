"""Every operator against flows and messages, three-valued logic, binding and what is needed."""

from __future__ import annotations

import pytest

from tests.filters.helpers import FLOW, OTHER, binary, evaluate, matches, text
from wsproxy.decoders.base import Decoded
from wsproxy.filters import FlowInfo, MessageInfo, Subject, compile_filter, compile_url_filter
from wsproxy.filters.operators import Url, topic_matches

# -- flow operators ------------------------------------------------------------------------


def test_all_websocket_http() -> None:
    assert matches("~all") and matches("~websocket") and not matches("~http")
    plain = FlowInfo("http://example.com/app.js", "example.com", is_websocket=False)
    assert matches("~http", flow=plain) and not matches("~websocket", flow=plain)


def test_url_is_searched_ignoring_case() -> None:
    assert matches("~u socket\\.io") and matches("~u SOCKET.IO") and matches("socket.io")
    assert matches("~u ^wss://chat") and not matches("~u ^ws://chat")
    assert not matches("~u chat", flow=OTHER)
    assert matches("'EIO=4&transport'")


def test_domain_searches_the_host_and_the_host_header() -> None:
    assert matches("~d example\\.com$") and matches("~d CHAT.EXAMPLE")
    assert not matches("~d other")
    headers = (("Origin", "x"), ("host", "api.test:8080"))
    behind = FlowInfo("ws://10.0.0.1/x", "10.0.0.1", request_headers=headers)
    assert matches("~d ^api\\.test$", flow=behind) and matches("~d 10\\.0", flow=behind)
    v6 = FlowInfo("ws://[::1]:80/", "::1", request_headers=(("Host", "[::1]:80"),))
    assert matches("~d ^::1$", flow=v6)
    bare = FlowInfo("ws://x/", "x", request_headers=(("Host", "[fe80::1]"),))
    assert matches("~d ^fe80::1$", flow=bare) and not matches("~d nothing", flow=bare)


def test_method_and_code() -> None:
    assert matches("~m get") and matches("~m ^GET$") and not matches("~m post")
    assert matches("~c 101") and not matches("~c 200")
    waiting = FlowInfo("ws://x/", "x", status=None, response_headers=None)
    assert not matches("~c 101", flow=waiting)


def test_headers_are_name_value_lines_case_sensitive() -> None:
    assert matches("~hq '^Origin: https://chat'")
    assert matches("~h '^Sec-WebSocket-Protocol: graphql'")
    assert not matches("~hq '^origin:'")  # as mitmproxy: header regexes keep case
    assert matches("~hq '(?i)^origin:'")
    assert matches("~hs graphql-transport-ws") and not matches("~hs Origin")
    assert matches("~h Origin")  # either side
    assert matches("~hq 'example.com$'")  # $ ends each line (MULTILINE)


def test_response_headers_before_the_response() -> None:
    early = FlowInfo("ws://x/", "x", request_headers=(("A", "1"),), response_headers=None)
    assert not matches("~hs .", flow=early)
    assert matches("~h 'A: 1'", flow=early)


# -- message operators ---------------------------------------------------------------------


def test_from() -> None:
    assert matches("~from client", text("x")) and not matches("~from server", text("x"))
    assert matches("~from server", text("x", client=False))


def test_body_text_and_binary() -> None:
    assert matches("~b hel+o", text("say hello"))
    assert not matches("~b HELLO", text("say hello"))  # case kept, as mitmproxy
    assert matches("~b 'é'", text("café"))
    assert matches("~b 'a.b'", text("a\nb"))  # DOTALL
    assert matches("~b '\\x00\\xff'", binary(b"\x01\x00\xff"))
    assert matches("~b 'é'", binary("café".encode()))  # the regex as UTF-8 bytes
    assert not matches("~b x", binary(b"\x00"))
    assert matches("~b '\\N{LATIN SMALL LETTER E WITH ACUTE}'", text("é"))
    # A pattern bytes cannot take: binary payloads are then read as latin-1.
    assert matches("~b '\\N{LATIN SMALL LETTER E WITH ACUTE}'", binary(b"\xe9"))


def test_body_sides() -> None:
    assert matches("~bq hi", text("hi")) and not matches("~bs hi", text("hi"))
    assert matches("~bs hi", text("hi", client=False))
    assert not matches("~bq hi", text("hi", client=False))


def test_body_of_a_cut_utf8_piece_does_not_raise() -> None:
    assert matches("~b caf", MessageInfo(True, 1, "café".encode()[:-1]))


def test_opcode() -> None:
    assert matches("~opcode text", text("x")) and matches("~opcode binary", binary(b"x"))
    cont = MessageInfo(True, 0, b"more", message_opcode=1)
    assert matches("~opcode continuation", cont) and matches("~opcode text", cont)
    assert not matches("~opcode binary", cont)
    for name, code in (("ping", 9), ("pong", 10), ("close", 8)):
        assert matches(f"~opcode {name}", MessageInfo(False, code, b""))
        assert not matches("~opcode text", MessageInfo(False, code, b"", message_opcode=1))
    assert matches("~b ^hi", MessageInfo(True, 9, b"hi"))  # a ping's payload reads as text


@pytest.mark.parametrize(
    ("argument", "size", "expected"),
    [
        (">5", 6, True),
        (">5", 5, False),
        (">=5", 5, True),
        ("<5", 4, True),
        ("<5", 5, False),
        ("<=5", 5, True),
        ("=5", 5, True),
        ("5", 5, True),
        ("5", 6, False),
        (">1k", 1025, True),
        (">1k", 1024, False),
        (">1KiB", 1025, True),
        ("<2m", 2 * 1024 * 1024 - 1, True),
        ("=1MB", 1024 * 1024, True),
        (">1g", 1024**3, False),
        ("=10b", 10, True),
    ],
)
def test_len(argument: str, size: int, expected: bool) -> None:
    message = MessageInfo(True, 2, b"", length=size)
    assert matches(f"~len {argument}", message) is expected


def test_len_defaults_to_the_payload_size() -> None:
    assert matches("~len =3", text("abc"))


SIO = Decoded("socketio", "EVENT", ["hi", {"n": 1}], event="chat message", layers=("engineio",))
GQL = Decoded("graphql", "subscribe", {"query": "{a}"}, operation="OnMessage", id="3")
MQTT = Decoded("mqtt", "PUBLISH", b"12", topic="sensors/kitchen/temp", fields={"qos": 1})


def test_proto() -> None:
    assert matches("~proto socketio", text("42[...]", decoded=SIO))
    assert matches("~proto engineio", text("42", decoded=SIO))  # a layer under it
    assert matches("~proto socket.io", text("42", decoded=SIO))  # alias
    assert matches("~proto SocketIO", text("42", decoded=SIO))
    assert not matches("~proto graphql", text("42", decoded=SIO))
    assert not matches("~proto json", text('{"a":1}'))  # no decoder: not decoded


def test_event_glob_case_sensitive() -> None:
    message = text("42", decoded=SIO)
    assert matches("~event 'chat message'", message) and matches("~event 'chat*'", message)
    assert matches("~event '?hat message'", message)
    assert not matches("~event chat", message) and not matches("~event 'Chat*'", message)
    assert not matches("~event '*'", text("{}", decoded=GQL))  # no event in it
    assert not matches("~event '*'", text("{}"))


def test_operation() -> None:
    message = text("{}", decoded=GQL)
    assert matches("~op OnMessage", message) and matches("~op 'On*'", message)
    assert not matches("~op onmessage", message) and not matches("~op '*'", text("42", decoded=SIO))


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("sensors/kitchen/temp", "sensors/kitchen/temp", True),
        ("sensors/+/temp", "sensors/kitchen/temp", True),
        ("sensors/+", "sensors/kitchen/temp", False),
        ("sensors/#", "sensors/kitchen/temp", True),
        ("sensors/#", "sensors", True),  # # includes the parent level
        ("#", "sensors/kitchen/temp", True),
        ("+/+/+", "sensors/kitchen/temp", True),
        ("+/+", "sensors/kitchen/temp", False),
        ("sensors/kitchen/temp/#", "sensors/kitchen/temp", True),
        ("sensors/kitchen", "sensors/kitchen/temp", False),
        ("sensors/+/temp", "sensors//temp", True),  # an empty level is a level
        ("#", "$SYS/uptime", False),  # $ topics are not matched by a leading wildcard
        ("+/uptime", "$SYS/uptime", False),
        ("$SYS/#", "$SYS/uptime", True),
        ("/topic/chat", "/topic/chat", True),  # STOMP destinations
        ("/topic/+", "/topic/chat", True),
        ("Sensors/#", "sensors/x", False),
    ],
)
def test_topic(pattern: str, topic: str, expected: bool) -> None:
    decoded = Decoded("mqtt", "PUBLISH", b"", topic=topic)
    assert matches(f"~topic '{pattern}'", text("", decoded=decoded)) is expected
    assert topic_matches(tuple(pattern.split("/")), topic) is expected


def test_topic_without_a_topic() -> None:
    assert not matches("~topic '#'", text("42", decoded=SIO))
    assert not matches("~topic '#'", text("42"))


def test_json_on_the_payload() -> None:
    message = text('{"user": {"name": "bob", "age": 42, "tags": ["a", "b"]}, "ok": true}')
    assert matches("~json user.name=bob", message)
    assert matches("~json 'user.name=\"bob\"'", message)
    assert matches("~json $.user.age=42", message) and matches("~json user.age=42.0", message)
    assert not matches("~json user.age='\"42\"'", message)  # a string is not a number
    assert matches("~json user.tags[1]=b", message) and matches("~json user.tags[-1]=b", message)
    assert not matches("~json user.tags[2]=b", message)
    assert matches('~json \'user.tags=["a", "b"]\'', message)
    assert matches("~json ok=true", message) and not matches("~json ok=1", message)
    assert matches("~json user.name", message)  # exists
    assert not matches("~json user.email", message)
    assert matches("~json $.ok", message) and matches("~json '$[\"ok\"]=true'", message)
    assert not matches("~json user.name.first", message)
    assert not matches("~json a=1", text("not json")) and not matches("~json a=1", binary(b"\xff"))
    assert matches("~json [0].id=7", text('[{"id": 7}]'))
    assert matches("~json 'a[\"x.y\"]=null'", text('{"a": {"x.y": null}}'))
    assert matches('~json \'a=1\' | ~json "a={\\"b\\": 1}"', text('{"a": {"b": 1}}'))
    assert matches("~json n=1", text('{"n": 1.0}')) and not matches(
        "~json n=true", text('{"n": 1}')
    )
    assert matches("~json '\\'k\\'=v'", text('{"\'k\'": "v"}'))
    assert matches("~json a[0]=1", text('{"a": {"0": 1}}'))  # [N] of an object: the key "N"
    assert matches("~json x=s", binary(b'{"x": "s"}'))  # binary JSON too


def test_json_prefers_the_decoded_value() -> None:
    message = text('42["chat message","hi",{"n":1}]', decoded=SIO)
    assert matches("~json [0]=hi", message) and matches("~json [1].n=1", message)
    cbor = Decoded("cbor", "map", {1: "one"})
    assert matches("~json 1=one", binary(b"\xa1\x01cone", decoded=cbor))  # int keys


# -- three-valued logic and binding --------------------------------------------------------


def test_message_operators_are_unknown_without_a_message() -> None:
    assert evaluate("~from client") is None
    assert evaluate("~u chat & ~from client") is None
    assert evaluate("~u nothing & ~from client") is False
    assert evaluate("~u chat | ~from client") is True
    assert evaluate("~u nothing | ~from client") is None
    assert evaluate("!~from client") is None
    assert evaluate("!(~u nothing & ~b x)") is True
    assert not matches("~from client")  # unknown is not a match


def test_flow_operators_are_unknown_without_a_flow() -> None:
    compiled = compile_filter("~u chat & ~from client")
    assert compiled.evaluate(Subject(None, text("x"))) is None
    assert compiled.evaluate(Subject(None, text("x", client=False))) is False


def test_bind() -> None:
    compiled = compile_filter("~u chat & ~from client | ~d other")
    bound = compiled.bind(FLOW)
    assert bound.verdict is None
    assert bound.matches(text("x")) and not bound.matches(text("x", client=False))
    assert str(bound.node) == "~from client"
    assert compiled.bind(OTHER).verdict is False
    assert compile_filter("~u chat | ~from client").bind(FLOW).verdict is True
    assert compile_filter("!~u chat").bind(FLOW).verdict is False
    assert compile_filter("!~u nothing").bind(FLOW).verdict is True
    assert str(compile_filter("!(~u chat & ~b x)").bind(FLOW).node) == "!~b x"
    assert compile_filter("~u chat & ~d example").bind(FLOW).verdict is True
    assert compile_filter("~u nothing | ~d nothing").bind(FLOW).verdict is False
    kept = compile_filter("~b a & ~b b | ~b c").bind(FLOW)
    assert str(kept.node) == "~b a & ~b b | ~b c"
    assert str(compile_filter("~b a | ~u chat").bind(OTHER).node) == "~b a"
    assert str(compile_filter("~b a & ~u chat").bind(FLOW).node) == "~b a"


def test_constants_of_a_bound_filter() -> None:
    bound = compile_filter("~u chat").bind(FLOW).node
    assert bound.evaluate(Subject(None)) is True and bound.bind(OTHER) is bound
    assert str(bound) == "~all" and str(compile_filter("~u nothing").bind(FLOW).node) == "!~all"


def test_bound_answers_agree_with_full_evaluation() -> None:
    messages = [text("hello"), text("bye", client=False), binary(b"\x00"), text("42", decoded=SIO)]
    for expression in [
        "~u chat & ~from client",
        "!(~d example | ~b hello) | ~opcode binary",
        "~proto socketio | ~hs graphql & ~bs bye",
        "~websocket !~len >3",
    ]:
        compiled = compile_filter(expression)
        for flow in (FLOW, OTHER):
            bound = compiled.bind(flow)
            for message in messages:
                full = compiled.matches(Subject(flow, message))
                assert bound.matches(message) is full, (expression, flow.url, message)
            if bound.verdict is not None:
                assert all(compiled.matches(Subject(flow, m)) is bound.verdict for m in messages)


def test_bound_needs() -> None:
    assert compile_filter("~u chat & ~b x").bind(FLOW).needs_payload
    assert not compile_filter("~u nothing & ~b x").bind(FLOW).needs_payload
    assert not compile_filter("~b x | ~u chat").bind(FLOW).needs_payload


def test_needs() -> None:
    assert not compile_filter("~u a & ~hq b").needs_message
    flags = compile_filter("~from client & ~opcode text")
    assert flags.needs_message and not flags.needs_payload and not flags.needs_decoding
    assert compile_filter("~len >3").needs_payload
    body = compile_filter("~u x | !~b y")
    assert body.needs_payload and not body.needs_decoding
    for op in ("~proto json", "~event x", "~op x", "~topic x", "~json a=1"):
        compiled = compile_filter(f"~u x & !({op} | ~from client)")
        assert compiled.needs_decoding and compiled.needs_payload and compiled.needs_message


def test_decoding_is_lazy_and_once() -> None:
    calls = []

    def decode() -> Decoded:
        calls.append(1)
        return SIO

    message = MessageInfo(True, 1, b"42", decode=decode)
    assert not matches("~from server & ~proto socketio", message)
    assert calls == []  # & stops at the first false
    assert matches("~proto socketio & ~event chat* & ~json [0]=hi", message)
    assert calls == [1]


def test_compile_is_cached_and_equal() -> None:
    assert compile_filter("a & b") is compile_filter("a & b")
    assert compile_filter("a b").root == compile_filter("~u a & ~u b").root


# -- --capture-filter: old plain regexes -----------------------------------------------------


@pytest.mark.parametrize(
    "regex", ["^wss://chat\\.example\\.com/(socket|feed)", "(chat|echo)$", "a|b", "x{2}"]
)
def test_a_plain_regex_is_a_url_regex_as_a_whole(regex: str) -> None:
    assert compile_url_filter(regex).root == Url(regex)


def test_capture_filter_expressions() -> None:
    assert (
        compile_url_filter("~u chat & ~from client").root
        == compile_filter("~u chat & ~from client").root
    )
    assert compile_url_filter("!chat").root == compile_filter("!chat").root
    assert compile_url_filter("chat echo").root == compile_filter("chat echo").root
    with pytest.raises(ValueError, match="column"):
        compile_url_filter("(unclosed")  # neither: the expression's error
