"""Tests of wsproxy.sansio.http11, targets and bodies: heads, targets, framing, serializing."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproxy.exceptions import HttpError
from wsproxy.sansio.bodies import BodyReader, Framing, body_framing
from wsproxy.sansio.http11 import (
    STATUS_REASONS,
    Headers,
    HeadParser,
    Limits,
    Request,
    Response,
    serialize_request,
    serialize_response,
    simple_response,
)
from wsproxy.sansio.targets import (
    Target,
    check_request,
    default_port,
    format_authority,
    host_port,
    parse_host_header,
    parse_target,
)

UPGRADE = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)


def parse(data: bytes, *, is_response: bool = False, limits: Limits | None = None) -> Request:
    parser = HeadParser(limits or Limits(), is_response=is_response)
    head = parser.feed(data)
    assert isinstance(head, Request)
    return head


def parse_bytewise(
    data: bytes, *, is_response: bool = False, limits: Limits | None = None
) -> tuple[Request | Response | None, bytes]:
    parser = HeadParser(limits or Limits(), is_response=is_response)
    result: Request | Response | None = None
    for i in range(len(data)):
        got = parser.feed(data[i : i + 1])
        if got is not None:
            assert result is None
            result = got
    return result, parser.leftover


def refused(data: bytes, *, is_response: bool = False, limits: Limits | None = None) -> HttpError:
    """Both whole and byte-at-a-time feeding refuse ``data``; returns the error."""
    with pytest.raises(HttpError) as whole:
        HeadParser(limits or Limits(), is_response=is_response).feed(data)
    with pytest.raises(HttpError) as bytewise:
        parse_bytewise(data, is_response=is_response, limits=limits)
    assert whole.value.status == bytewise.value.status
    return whole.value


def req(
    target: str = "/", method: str = "GET", version: str = "HTTP/1.1", **headers: str
) -> Request:
    return Request(
        method, target, version, Headers([(k.replace("_", "-"), v) for k, v in headers.items()])
    )


# -- Headers -----------------------------------------------------------------------------------


def test_headers_multimap() -> None:
    h = Headers([("Host", "a"), ("X-A", "1"), ("x-a", "2")])
    assert h.get("HOST") == "a"
    assert h.get("missing") is None
    assert h.get("missing", "d") == "d"
    assert h.get_all("X-a") == ["1", "2"]
    assert "x-A" in h and "nope" not in h and 3 not in h
    assert len(h) == 3
    assert list(h) == h.items() == h.raw() == [("Host", "a"), ("X-A", "1"), ("x-a", "2")]
    h.set("X-A", "3")
    assert h.raw() == [("Host", "a"), ("X-A", "3")]
    h.set("New", "n")
    assert h.raw()[-1] == ("New", "n")
    c = h.copy()
    c.remove("host")
    assert "Host" in h and "Host" not in c
    assert h != c and h == h.copy()
    assert h.__eq__(1) is NotImplemented
    assert "X-A" in repr(h)


def test_headers_lookups_follow_every_change() -> None:
    """Lookups go through an index built at the first one: each change must drop it."""
    h = Headers([("A", "1")])
    assert h.get_all("a") == ["1"] and "a" in h  # the index exists now
    h.add("a", "2")
    assert h.get_all("A") == ["1", "2"]
    h.set("A", "3")
    assert h.get("a") == "3" and h.get_all("a") == ["3"]
    h.remove("A")
    assert h.get("a") is None and "a" not in h and h.get_all("a") == []
    h.add("B", "x")
    values = h.get_all("b")
    values.append("not a header")  # a copy: the headers keep theirs
    assert h.get_all("B") == ["x"]
    copy = h.copy()
    copy.add("B", "y")
    assert h.get_all("B") == ["x"] and copy.get_all("B") == ["x", "y"]


_NAMES = st.sampled_from(["A", "a", "B", "Via", "via", "Host"])
_OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "set", "remove", "get_all"]), _NAMES, st.text("xy", max_size=2)
    ),
    max_size=12,
)


@given(st.lists(st.tuples(_NAMES, st.text("xy", max_size=2)), max_size=5), _OPS)
def test_headers_match_a_plain_list_under_any_changes(
    start: list[tuple[str, str]], ops: list[tuple[str, str, str]]
) -> None:
    """The index is kept up to date by ``add`` and a ``set`` of a new name, and lets a
    ``remove`` of an absent name skip its pass: whatever the order of changes and lookups,
    the fields are those of a plain list changed the naive way."""
    h = Headers(start)
    model = list(start)
    for op, name, value in ops:
        key = name.lower()
        if op == "add":
            h.add(name, value)
            model.append((name, value))
        elif op == "set":
            h.set(name, value)
            at = [i for i, (n, _) in enumerate(model) if n.lower() == key]
            if at:
                first = at[0]
                model = [
                    (n, value) if i == first else (n, v)
                    for i, (n, v) in enumerate(model)
                    if i == first or n.lower() != key
                ]
            else:
                model.append((name, value))
        elif op == "remove":
            h.remove(name)
            model = [(n, v) for n, v in model if n.lower() != key]
        else:
            assert h.get_all(name) == [v for n, v in model if n.lower() == key]
        assert h.raw() == model
    assert h.names() == list(dict.fromkeys(n.lower() for n, _ in model))


@pytest.mark.parametrize(
    ("name", "value"), [("Bad Name", "v"), ("", "v"), ("X", "a\r\nInjected: 1"), ("X", "\x00")]
)
def test_headers_refuse_splitting(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        Headers().add(name, value)
    with pytest.raises(ValueError):
        Headers().set(name, value)


# -- HeadParser --------------------------------------------------------------------------------


def test_parse_upgrade_request_bytewise() -> None:
    head, leftover = parse_bytewise(UPGRADE + b"\x81\x85frame")
    assert isinstance(head, Request)
    assert (head.method, head.target, head.version) == ("GET", "/chat", "HTTP/1.1")
    assert head.headers.raw()[0] == ("Host", "server.example.com")
    assert head.headers.get("sec-websocket-key") == "dGhlIHNhbXBsZSBub25jZQ=="
    assert leftover == b"\x81\x85frame"
    assert head == parse(UPGRADE)


def test_leftover_and_feed_after_done() -> None:
    parser = HeadParser(Limits())
    assert parser.feed(UPGRADE[:10]) is None
    assert not parser.done
    assert parser.feed(UPGRADE[10:] + b"GET /next") is not None
    assert parser.done
    assert parser.leftover == b"GET /next"
    assert parser.feed(b" HTTP/1.1\r\n") is None
    assert parser.leftover == b"GET /next HTTP/1.1\r\n"


def test_pipelined_requests() -> None:
    data = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
    first = HeadParser()
    head = first.feed(data)
    assert isinstance(head, Request) and head.target == "/a"
    second = HeadParser()
    head = second.feed(first.leftover)
    assert isinstance(head, Request) and head.target == "/b"
    assert second.leftover == b""


def test_header_values_and_lf_line_ends() -> None:
    head = parse(b"\r\n\nGET / HTTP/1.1\nHost:   h  \r\nX-Empty:\nX-Latin: caf\xe9\t1\n\n")
    assert head.headers.raw() == [("Host", "h"), ("X-Empty", ""), ("X-Latin", "caf\xe9\t1")]
    assert head.headers.get("x-latin", "").encode("latin-1") == b"caf\xe9\t1"


def test_target_with_obs_text() -> None:
    assert parse(b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n").target == "/caf\xc3\xa9"


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET /\r\n\r\n",
        b"G@T / HTTP/1.1\r\n\r\n",
        b"GET /a\x01b HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\n\tX: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX\xe9: a\r\n\r\n",
        b"GET / HTTP/1.1\r\n: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\r\n\r\n",
    ],
)
def test_malformed_request_heads(data: bytes) -> None:
    assert refused(data).status == 400


@pytest.mark.parametrize(
    ("opening", "named"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "TLS handshake"),
        (b"\x16\x03\x01\x00\x0a\x01\x00", "TLS handshake"),  # a line end inside it
        (b"\x16\x03\x01 a b\x0a\x01\x00", "TLS handshake"),  # three "words" before it
        (b"\x05\x01\x00\r\n\r\n", "SOCKS5 greeting"),
        (b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00", "SOCKS4"),
    ],
)
def test_another_protocol_on_the_http_port_is_named(opening: bytes, named: str) -> None:
    """A client pointed at the wrong kind of port is told so at its first bytes, not with a
    "malformed request line" (nor left waiting for a line end that never comes)."""
    for start in range(1, len(opening) + 1):  # whatever arrives first
        err = refused(opening[:start])
        assert err.status == 400 and named in err.reason, (start, err.reason)


def test_other_bad_first_bytes_are_a_malformed_request_line() -> None:
    assert "malformed request line" in refused(b"\x17\x03\x03").reason


@pytest.mark.parametrize(
    "version", [b"HTTP/1", b"HTTP/1.1.1", b"http/1.1", b"HTTP/11.0", b"FTP/1.0"]
)
def test_unknown_version_format(version: bytes) -> None:
    err = refused(b"GET / " + version + b"\r\n\r\n")
    assert err.status == 400
    assert "version" in err.reason


def test_limits_are_enforced_early() -> None:
    limits = Limits(max_line=20, max_head_size=100, max_headers=2)
    parser = HeadParser(limits)
    with pytest.raises(HttpError) as exc:
        parser.feed(b"GET /" + b"a" * 30)  # no line end yet
    assert exc.value.status == 414
    assert refused(b"GET /" + b"a" * 30 + b" HTTP/1.1\r\n\r\n", limits=limits).status == 414
    parser = HeadParser(limits)
    with pytest.raises(HttpError) as exc:
        parser.feed(b"GET / HTTP/1.1\r\nX: " + b"v" * 100)  # no end of head yet
    assert exc.value.status == 431
    big = b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 30 + b"\r\n"
    assert refused(big, limits=limits).status == 431
    three = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"
    assert refused(three, limits=limits).status == 431
    assert refused(b"\r\n" * 60, limits=limits).status == 431


def test_default_limits() -> None:
    assert Limits() == Limits(max_line=8192, max_head_size=65536, max_headers=100)
    assert refused(b"GET /" + b"a" * 8200).status == 414
    assert refused(b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 101 + b"\r\n").status == 431


def test_parse_response_bytewise() -> None:
    data = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00"
    head, leftover = parse_bytewise(data, is_response=True)
    assert head == Response(
        "HTTP/1.1", 101, "Switching Protocols", Headers([("Upgrade", "websocket")])
    )
    assert leftover == b"\x81\x00"


@pytest.mark.parametrize(
    ("line", "reason"),
    [(b"HTTP/1.1 200 ", ""), (b"HTTP/1.1 200", ""), (b"HTTP/1.0 404 Not  Here", "Not  Here")],
)
def test_response_reason(line: bytes, reason: str) -> None:
    head = HeadParser(is_response=True).feed(line + b"\r\n\r\n")
    assert isinstance(head, Response) and head.reason == reason


@pytest.mark.parametrize(
    "line",
    [b"HTTP/1.1 20 OK", b"HTTP/1.1 2000 OK", b"HTTP/1.1 OK", b"\r\nHTTP/1.1 200 OK", b"ICY 200 OK"],
)
def test_malformed_response_is_502(line: bytes) -> None:
    assert refused(line + b"\r\n\r\n", is_response=True).status == 502


def test_response_head_limit_is_502() -> None:
    limits = Limits(max_head_size=50)
    assert (
        refused(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 60, is_response=True, limits=limits).status
        == 502
    )


# -- targets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("ws://example.com/chat?x=1", Target("absolute", "ws", "example.com", 80, "/chat?x=1")),
        ("WSS://example.com", Target("absolute", "wss", "example.com", 443, "/")),
        ("http://example.com:8080/a", Target("absolute", "http", "example.com", 8080, "/a")),
        ("https://[::1]/", Target("absolute", "https", "::1", 443, "/")),
        ("https://[::1]:8443?q", Target("absolute", "https", "::1", 8443, "/?q")),
        ("Http://h:/", Target("absolute", "http", "h", 80, "/")),
    ],
)
def test_absolute_form(target: str, expected: Target) -> None:
    assert parse_target(req(target, Host="ignored")) == expected


@pytest.mark.parametrize(
    "target",
    [
        "ftp://example.com/",
        "ws://user:pw@example.com/",
        "ws://example.com:99999/",
        "ws://example.com:0/",
        "ws://example.com:8x/",
        "ws:///path",
        "ws://[::1/",
        "ws://[zz]/",
        "ws://[::1]x/",
        "example.com/path",
    ],
)
def test_bad_absolute_form(target: str) -> None:
    with pytest.raises(HttpError) as exc:
        parse_target(req(target))
    assert exc.value.status == 400


@pytest.mark.parametrize(
    ("target", "host", "port"),
    [
        ("example.com:443", "example.com", 443),
        ("[::1]:443", "::1", 443),
        ("10.0.0.1:8080", "10.0.0.1", 8080),
    ],
)
def test_connect_authority(target: str, host: str, port: int) -> None:
    assert parse_target(req(target, "CONNECT")) == Target("authority", None, host, port, "")


@pytest.mark.parametrize("target", ["example.com", "[::1]", "/path", "example.com:", "u@h:443"])
def test_connect_needs_host_and_port(target: str) -> None:
    with pytest.raises(HttpError) as exc:
        parse_target(req(target, "CONNECT"))
    assert exc.value.status == 400


def test_origin_and_asterisk_forms() -> None:
    assert parse_target(req("/a?b", Host="h:81")) == Target("origin", None, "h", 81, "/a?b")
    assert parse_target(req("/", Host="[::1]"), default_port=443) == Target(
        "origin", None, "::1", 443, "/"
    )
    assert parse_target(req("/", version="HTTP/1.0")) == Target("origin", None, None, None, "/")
    assert parse_target(req("*", "OPTIONS", Host="h")) == Target("asterisk", None, "h", 80, "*")
    with pytest.raises(HttpError):
        parse_target(req("*", "GET", Host="h"))


@pytest.mark.parametrize("value", ["", "a b", "h:x", "h:70000", "[::1", "u@h"])
def test_bad_host_header(value: str) -> None:
    with pytest.raises(HttpError) as exc:
        parse_host_header(value, 80)
    assert exc.value.status == 400


def test_check_request() -> None:
    check_request(req(Host="h"))
    check_request(req(version="HTTP/1.0"))
    check_request(req("ws://h/", Host=""))
    for bad, status in [
        (req(), 400),
        (Request("GET", "/", "HTTP/1.1", Headers([("Host", "a"), ("host", "b")])), 400),
        (req(Host="bad host"), 400),
        (req(version="HTTP/2.0", Host="h"), 505),
        (req(version="HTTP/0.9", Host="h"), 505),
        (req("*", "PRI", "HTTP/2.0"), 400),
    ]:
        with pytest.raises(HttpError) as exc:
            check_request(bad)
        assert exc.value.status == status
    with pytest.raises(HttpError, match="HTTP/2"):
        check_request(parse(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))


# -- body framing ------------------------------------------------------------------------------


def resp(status: int = 200, version: str = "HTTP/1.1", **headers: str) -> Response:
    return Response(
        version, status, "", Headers([(k.replace("_", "-"), v) for k, v in headers.items()])
    )


def test_request_framing() -> None:
    assert body_framing(req()) == ("none", 0)
    assert body_framing(req(Content_Length="0")) == ("none", 0)
    assert body_framing(req(Content_Length="12")) == Framing("length", 12)
    assert body_framing(req(Transfer_Encoding="Chunked")) == ("chunked", None)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([("Content-Length", "5"), ("Transfer-Encoding", "chunked")], 400),
        ([("Content-Length", "5"), ("Content-Length", "5")], 400),
        ([("Content-Length", "5, 5")], 400),
        ([("Content-Length", "+5")], 400),
        ([("Content-Length", "-1")], 400),
        ([("Content-Length", "0x10")], 400),
        ([("Content-Length", "9" * 30)], 400),
        ([("Content-Length", "")], 400),
        ([("Transfer-Encoding", "chunked, identity")], 400),
        ([("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "identity")], 400),
        ([("Transfer-Encoding", "chunked, chunked")], 400),
        ([("Transfer-Encoding", "gzip")], 400),
        ([("Transfer-Encoding", "")], 400),
        ([("Transfer-Encoding", "chun ked")], 400),
        ([("Transfer-Encoding", "gzip, chunked")], 501),
    ],
)
def test_request_smuggling_refused(headers: list[tuple[str, str]], status: int) -> None:
    with pytest.raises(HttpError) as exc:
        body_framing(Request("POST", "/", "HTTP/1.1", Headers(headers)))
    assert exc.value.status == status


def test_http10_request_with_transfer_encoding() -> None:
    with pytest.raises(HttpError) as exc:
        body_framing(req(version="HTTP/1.0", Transfer_Encoding="chunked"))
    assert exc.value.status == 400


def test_response_framing() -> None:
    assert body_framing(resp()) == ("close", None)
    assert body_framing(resp(Content_Length="3")) == ("length", 3)
    assert body_framing(resp(Transfer_Encoding="gzip, chunked")) == ("chunked", None)
    assert body_framing(resp(Transfer_Encoding="chunked, gzip")) == ("close", None)
    assert body_framing(resp(version="HTTP/1.0", Transfer_Encoding="chunked")) == ("close", None)
    for status in (101, 100, 204, 304):
        assert body_framing(resp(status, Content_Length="3")) == ("none", 0)
    assert body_framing(resp(Content_Length="3"), request_method="HEAD") == ("none", 0)
    assert body_framing(resp(200), request_method="CONNECT") == ("none", 0)
    assert body_framing(resp(407, Content_Length="3"), request_method="CONNECT") == ("length", 3)
    for bad in (
        resp(Content_Length="1", Transfer_Encoding="chunked"),
        resp(Content_Length="1, 1"),
        Response("HTTP/1.1", 200, "", Headers([("Content-Length", "1"), ("Content-Length", "1")])),
    ):
        with pytest.raises(HttpError) as exc:
            body_framing(bad)
        assert exc.value.status == 502


# -- BodyReader --------------------------------------------------------------------------------


def read_bytewise(reader: BodyReader, data: bytes) -> tuple[bytes, bool, bytes]:
    out = b""
    finished = False
    for i in range(len(data)):
        got, finished_now = reader.feed(data[i : i + 1])
        out += got
        finished = finished or finished_now
    return out, finished, reader.leftover


CHUNKED = b'5\r\nhello\r\n6;name=val;q="a b"\r\n world\r\nA \r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n'


def test_chunked_whole_and_bytewise() -> None:
    reader = BodyReader(Framing("chunked", None))
    assert reader.feed(CHUNKED + b"GET /next") == (CHUNKED, True)
    assert reader.finished and reader.leftover == b"GET /next"
    assert read_bytewise(BodyReader(Framing("chunked", None)), CHUNKED + b"NEXT") == (
        CHUNKED,
        True,
        b"NEXT",
    )


def test_content_without_the_chunk_framing() -> None:
    """What a capture records: the content, fed whole or byte by byte; the bytes passed on
    stay the wire bytes."""
    for step in (len(CHUNKED), 1):
        reader = BodyReader(Framing("chunked", None), content=True)
        content = b""
        for i in range(0, len(CHUNKED), step):
            reader.feed(CHUNKED[i : i + step])
            content += reader.take_content()
        assert content == b"hello world0123456789" and reader.finished
    for framing, wire in ((Framing("length", 3), b"abcdef"), (Framing("close", None), b"xy")):
        reader = BodyReader(framing, content=True)
        assert reader.feed(wire)[0] == reader.take_content() == wire[:3]
        assert reader.take_content() == b""
    assert BodyReader(Framing("length", 3)).take_content() == b""


def test_chunked_streams_data_without_buffering() -> None:
    reader = BodyReader(Framing("chunked", None))
    assert reader.feed(b"10") == (b"", False)  # an incomplete size line is held
    assert reader.feed(b"\r\nabc") == (b"10\r\nabc", False)  # data passes through
    assert reader.feed(b"d" * 13) == (b"d" * 13, False)
    assert reader.feed(b"\r") == (b"", False)
    assert reader.feed(b"\n0\r\n\r\n") == (b"\r\n0\r\n\r\n", True)
    assert reader.feed(b"more") == (b"", True)
    assert reader.leftover == b"more"


def test_chunked_leading_zeros_and_last_chunk_without_trailers() -> None:
    body = b"0005\r\nhello\r\n000\r\n\r\n"
    assert BodyReader(Framing("chunked", None)).feed(body) == (body, True)


@pytest.mark.parametrize(
    "data",
    [
        b"x\r\n",
        b"\r\n",
        b"5 5\r\n",
        b"-5\r\n",
        b"5;\r\n",
        b'5;a="unterminated\r\n',
        b"5\n",
        b"5\r\nhelloX\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\r\r\n",
        b"1" * 20 + b"\r\n",
        b"5" + b";a=b" * 2000 + b"\r\n",
        b"0\r\nbad trailer\r\n\r\n",
        b"0\r\nX: \x00\r\n\r\n",
    ],
)
def test_bad_chunked(data: bytes) -> None:
    with pytest.raises(HttpError) as exc:
        BodyReader(Framing("chunked", None)).feed(data)
    assert exc.value.status == 400
    with pytest.raises(HttpError):
        read_bytewise(BodyReader(Framing("chunked", None)), data)


def test_chunk_trailers_limit() -> None:
    reader = BodyReader(Framing("chunked", None), error_status=502)
    reader.feed(b"0\r\n")
    with pytest.raises(HttpError) as exc:
        for _ in range(20000):
            reader.feed(b"X-Trailer: value\r\n")
    assert exc.value.status == 502


def test_length_body() -> None:
    reader = BodyReader(Framing("length", 5))
    assert reader.feed(b"hel") == (b"hel", False)
    assert reader.feed(b"loGET") == (b"lo", True)
    assert reader.leftover == b"GET"
    assert read_bytewise(BodyReader(Framing("length", 3)), b"abcdef") == (b"abc", True, b"def")


def test_none_and_close_bodies() -> None:
    reader = BodyReader(Framing("none", 0))
    assert reader.finished
    assert reader.feed(b"next") == (b"", True)
    assert reader.leftover == b"next"
    reader.feed_eof()
    reader = BodyReader(Framing("close", None))
    assert reader.feed(b"abc") == (b"abc", False)
    reader.feed_eof()
    assert reader.finished


def test_eof_before_end_of_body() -> None:
    for framing in (Framing("length", 3), Framing("chunked", None)):
        reader = BodyReader(framing)
        reader.feed(b"1")
        with pytest.raises(HttpError):
            reader.feed_eof()


# -- serializing -------------------------------------------------------------------------------


def test_serialize_round_trip() -> None:
    head = parse(UPGRADE)
    assert serialize_request(head) == UPGRADE
    response = Response("HTTP/1.1", 101, "Switching Protocols", Headers([("Upgrade", "websocket")]))
    data = serialize_response(response)
    assert data == b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    assert HeadParser(is_response=True).feed(data) == response


def test_simple_response() -> None:
    data = simple_response(426, "bad\r\nversion", headers=[("Sec-WebSocket-Version", "13")])
    _, _, body = data.partition(b"\r\n\r\n")
    parser = HeadParser(is_response=True)
    head = parser.feed(data)
    assert isinstance(head, Response)
    assert (head.status, head.reason) == (426, "Upgrade Required")
    assert head.headers.get("Sec-WebSocket-Version") == "13"
    assert head.headers.get("Connection") == "close"
    assert head.headers.get("Content-Type") == "text/plain; charset=utf-8"
    assert body == parser.leftover == b"bad version\n"
    assert head.headers.get("Content-Length") == str(len(body))
    assert simple_response(599, "x", b"custom").startswith(b"HTTP/1.1 599 Unknown\r\n")
    assert simple_response(599, "x", b"custom").endswith(b"\r\n\r\ncustom")
    assert STATUS_REASONS[502] == "Bad Gateway"
    page = simple_response(200, "", b"<p>hi</p>", headers=[("Content-Type", "text/html")])
    head = HeadParser(is_response=True).feed(page)
    assert isinstance(head, Response)
    assert head.headers.get_all("content-type") == ["text/html"]


# -- properties --------------------------------------------------------------------------------


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5), st.booleans())
def test_arbitrary_bytes_only_raise_http_error(
    data: bytes, cuts: list[int], is_response: bool
) -> None:
    parser = HeadParser(
        Limits(max_line=64, max_head_size=200, max_headers=5), is_response=is_response
    )
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    try:
        for start, end in itertools.pairwise(points):
            head = parser.feed(data[start:end])
            if head is not None:
                body_framing(head)
                if isinstance(head, Request):
                    check_request(head)
                    parse_target(head)
    except HttpError:
        pass


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5))
def test_arbitrary_chunked_bytes_only_raise_http_error(data: bytes, cuts: list[int]) -> None:
    reader = BodyReader(Framing("chunked", None))
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    out = b""
    try:
        for start, end in itertools.pairwise(points):
            got, _ = reader.feed(data[start:end])
            out += got
    except HttpError:
        return
    assert data.startswith(out)  # passed-through bytes are the fed bytes, unchanged


_token = st.text(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=12,
)
_value = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=20
).map(str.strip)
_target = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0xFF, blacklist_characters="\x7f"),
    min_size=1,
    max_size=30,
)


@given(
    _token,
    _target,
    st.sampled_from(["HTTP/1.0", "HTTP/1.1"]),
    st.lists(st.tuples(_token, _value), max_size=10),
)
def test_request_round_trip(
    method: str, target: str, version: str, headers: list[tuple[str, str]]
) -> None:
    request = Request(method, target, version, Headers(headers))
    data = serialize_request(request)
    assert HeadParser().feed(data) == request
    assert parse_bytewise(data)[0] == request


def test_other_protocols_are_refused_before_a_line_end() -> None:
    client_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
    with pytest.raises(HttpError) as exc:
        HeadParser().feed(client_hello)
    assert exc.value.status == 400
    with pytest.raises(HttpError) as exc:
        HeadParser(is_response=True).feed(b"SSH-2.0-OpenSSH")
    assert exc.value.status == 502
    parser = HeadParser()
    assert parser.feed(b"\r") is None
    assert parser.feed(b"\nGET\r") is None  # a CR may be the start of a CRLF
    assert HeadParser(is_response=True).feed(b"HTTP/1") is None
    with pytest.raises(HttpError):
        parser.feed(b"\n")  # but a request line is more than a method


# -- default ports and authorities -------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "port"), [("http", 80), ("ws", 80), ("https", 443), ("WSS", 443), ("tcp", 80)]
)
def test_default_port(scheme: str, port: int) -> None:
    assert default_port(scheme) == port


@pytest.mark.parametrize(
    ("host", "port", "scheme", "expected"),
    [
        ("example.com", 80, "ws", "example.com"),
        ("example.com", 443, "wss", "example.com"),
        ("example.com", 443, "ws", "example.com:443"),
        ("example.com", 80, "https", "example.com:80"),
        ("::1", 8080, "http", "[::1]:8080"),
        ("::1", 443, "https", "[::1]"),
    ],
)
def test_format_authority(host: str, port: int, scheme: str, expected: str) -> None:
    assert format_authority(host, port, scheme) == expected


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("127.0.0.1", 8080, "127.0.0.1:8080"),
        ("example.com", 80, "example.com:80"),  # the port always shows, unlike an authority
        ("::1", 47801, "[::1]:47801"),
        ("fe80::1%eth0", 443, "[fe80::1%eth0]:443"),
    ],
)
def test_host_port_brackets_ipv6(host: str, port: int, expected: str) -> None:
    assert host_port(host, port) == expected


# A head-like alphabet: the bytes where the fast path and the line-by-line parser could part.
_head_bytes = st.lists(
    st.sampled_from(
        [b"a", b"Z", b"1", b"-", b":", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\x7f", b"\x80", b"/"]
    ),
    max_size=40,
).map(b"".join)


def _outcome(feed: Callable[[bytes], tuple[object, bytes]], data: bytes) -> object:
    try:
        return feed(data)
    except HttpError as error:
        return (error.status, error.reason)


@given(
    st.sampled_from([b"GET / HTTP/1.1", b"HTTP/1.1 101 Switching", b"HTTP/1.1 200", b"", b"G T"]),
    st.lists(
        st.one_of(
            st.sampled_from([b"Host: a", b"X:  v \t", b"Y:", b"Up: web socket"]), _head_bytes
        ),
        max_size=6,
    ),
    st.sampled_from([b"\r\n\r\n", b"\r\n\r\nrest", b"\n\n", b"\r\n"]),
    st.booleans(),
)
def test_a_whole_head_parses_as_it_does_line_by_line(
    start: bytes, lines: list[bytes], end: bytes, is_response: bool
) -> None:
    """``HeadParser`` takes a head fed whole by a fast path; whatever the bytes, its answer
    (the head and what follows it, or the error) is the line-by-line parser's."""
    data = b"\r\n".join([start, *lines]) + end
    limits = Limits(max_line=30, max_head_size=120, max_headers=4)

    def whole(parser_type: type[HeadParser]) -> Callable[[bytes], tuple[object, bytes]]:
        def feed(data: bytes) -> tuple[object, bytes]:
            parser = parser_type(limits, is_response=is_response)
            return parser.feed(data), parser.leftover

        return feed

    assert _outcome(whole(HeadParser), data) == _outcome(whole(_LineByLine), data)


class _LineByLine(HeadParser):
    """The parser without its fast path."""

    def _whole(self, data: bytes) -> None:
        return None


def test_the_fast_path_takes_a_whole_well_formed_head() -> None:
    parser = HeadParser()
    head = parser.feed(b"GET /x HTTP/1.1\r\nHost: a\r\nX-E:\r\nX-S:  v  w \t\r\n\r\n\x81\x00")
    assert isinstance(head, Request) and parser.leftover == b"\x81\x00"
    assert head.headers.raw() == [("Host", "a"), ("X-E", ""), ("X-S", "v  w")]
    response = HeadParser(is_response=True).feed(b"HTTP/1.1 101\r\nUpgrade: websocket\r\n\r\n")
    assert isinstance(response, Response) and (response.status, response.reason) == (101, "")
