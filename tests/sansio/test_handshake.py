"""Tests of wsproxy.sansio.handshake: both sides of the opening handshake (SEED-NOTES 1-2)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproxy.exceptions import HandshakeError
from wsproxy.sansio.handshake import (
    ClientHandshake,
    accept_key,
    check_client_request,
    check_upstream_response,
    generate_key,
    is_upgrade_request,
    response_to_client,
    strip_hop_by_hop,
    upstream_request_headers,
)
from wsproxy.sansio.http11 import Headers, HeadParser, Request, Response

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

BASE = [
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]


def request(
    headers: list[tuple[str, str]] | None = None,
    *,
    drop: tuple[str, ...] = (),
    method: str = "GET",
    version: str = "HTTP/1.1",
) -> Request:
    items = [(n, v) for n, v in BASE if n not in drop] + (headers or [])
    return Request(method, "/chat", version, Headers(items))


def response(
    headers: list[tuple[str, str]] | None = None, *, drop: tuple[str, ...] = ()
) -> Response:
    base = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT)]
    items = [(n, v) for n, v in base if n not in drop] + (headers or [])
    return Response("HTTP/1.1", 101, "Switching Protocols", Headers(items))


def test_rfc6455_accept_example() -> None:
    assert accept_key(KEY) == ACCEPT


def test_generate_key() -> None:
    key = generate_key()
    assert len(base64.b64decode(key, validate=True)) == 16
    assert key != generate_key()


def test_is_upgrade_request() -> None:
    assert is_upgrade_request(request())
    assert is_upgrade_request(request([("Upgrade", "h2c, WebSocket")], drop=("Upgrade",)))
    assert not is_upgrade_request(request(drop=("Upgrade",)))
    assert not is_upgrade_request(request([("Upgrade", "h2c")], drop=("Upgrade",)))
    assert is_upgrade_request(request([("Upgrade", "websocket, bad token")], drop=("Upgrade",)))


def test_valid_request_parsed_bytewise() -> None:
    data = (
        b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
        b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Protocol: v2\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    parser = HeadParser()
    head = None
    for i in range(len(data)):
        head = parser.feed(data[i : i + 1]) or head
    assert isinstance(head, Request)
    assert check_client_request(head) == ClientHandshake(
        key=KEY,
        version="13",
        protocols=["chat", "superchat", "v2"],
        extensions=["permessage-deflate; client_max_window_bits"],
        origin="http://example.com",
    )


def test_minimal_request() -> None:
    shake = check_client_request(
        request([("Upgrade", "WebSocket")], drop=("Upgrade",), version="HTTP/2.0")
    )
    assert (shake.protocols, shake.extensions, shake.origin) == ([], [], None)


@pytest.mark.parametrize(
    ("req", "status", "words"),
    [
        (request(method="POST"), 400, "GET"),
        (request(version="HTTP/1.0"), 400, "HTTP/1.1"),
        (request(drop=("Host",)), 400, "missing Host"),
        (request([("Host", "other")]), 400, "duplicate Host"),
        (request(drop=("Connection",)), 400, "Connection"),
        (request([("Connection", "keep-alive")], drop=("Connection",)), 400, "Connection"),
        (request([("Connection", "up grade")], drop=("Connection",)), 400, "token list"),
        (request([("Upgrade", "h2c")], drop=("Upgrade",)), 400, "Upgrade"),
        (request(drop=("Upgrade",)), 400, "Upgrade"),
        (request(drop=("Sec-WebSocket-Version",)), 400, "missing Sec-WebSocket-Version"),
        (request([("Sec-WebSocket-Version", "13")]), 400, "duplicate Sec-WebSocket-Version"),
        (request(drop=("Sec-WebSocket-Key",)), 400, "missing Sec-WebSocket-Key"),
        (request([("Sec-WebSocket-Key", KEY)]), 400, "duplicate Sec-WebSocket-Key"),
        (request([("Sec-WebSocket-Key", "abc")], drop=("Sec-WebSocket-Key",)), 400, "base64"),
        (
            request(
                [("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAAA")], drop=("Sec-WebSocket-Key",)
            ),
            400,
            "16 bytes",
        ),
        (
            request(
                [("Sec-WebSocket-Key", "d GhlIHNhbXBsZSBub25jZQ==")], drop=("Sec-WebSocket-Key",)
            ),
            400,
            "base64",
        ),
        (request([("Sec-WebSocket-Key", "é" * 24)], drop=("Sec-WebSocket-Key",)), 400, "base64"),
        (request([("Sec-WebSocket-Protocol", "a b")]), 400, "token list"),
        (request([("Sec-WebSocket-Extensions", "permessage-deflate; =")]), 400, "extension"),
        (request([("Origin", "a"), ("Origin", "b")]), 400, "Origin"),
    ],
)
def test_refused_requests(req: Request, status: int, words: str) -> None:
    with pytest.raises(HandshakeError) as exc:
        check_client_request(req)
    assert exc.value.status == status
    assert words in exc.value.reason


@pytest.mark.parametrize("version", ["8", "14", "", "13, 8"])
def test_other_version_is_426(version: str) -> None:
    req = request([("Sec-WebSocket-Version", version)], drop=("Sec-WebSocket-Version",))
    with pytest.raises(HandshakeError) as exc:
        check_client_request(req)
    assert exc.value.status == 426
    assert exc.value.headers == [("Sec-WebSocket-Version", "13")]


# -- upstream response -------------------------------------------------------------------------


def test_valid_upstream_response() -> None:
    assert check_upstream_response(response(), KEY, [], []) == (None, [])
    resp = response(
        [
            ("Sec-WebSocket-Protocol", "chat"),
            ("Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover"),
        ]
    )
    offered = ["permessage-deflate; client_max_window_bits", "x-other"]
    assert check_upstream_response(resp, KEY, ["superchat", "chat"], offered) == (
        "chat",
        ["permessage-deflate; server_no_context_takeover"],
    )


@pytest.mark.parametrize(
    ("resp", "words"),
    [
        (Response("HTTP/1.1", 200, "OK", response().headers), "not 101"),
        (response(drop=("Upgrade",)), "Upgrade"),
        (response([("Upgrade", "h2c")], drop=("Upgrade",)), "Upgrade"),
        (response([("Upgrade", "websocket, h2c")], drop=("Upgrade",)), "Upgrade"),
        (response(drop=("Connection",)), "Connection"),
        (response([("Connection", "close")], drop=("Connection",)), "Connection"),
        (response(drop=("Sec-WebSocket-Accept",)), "0 Sec-WebSocket-Accept"),
        (response([("Sec-WebSocket-Accept", ACCEPT)]), "2 Sec-WebSocket-Accept"),
        (
            response(
                [("Sec-WebSocket-Accept", accept_key(generate_key()))],
                drop=("Sec-WebSocket-Accept",),
            ),
            "Accept is wrong",
        ),
        (response([("Sec-WebSocket-Protocol", "chat, superchat")]), "several subprotocols"),
        (response([("Sec-WebSocket-Protocol", "other")]), "not offered"),
        (response([("Sec-WebSocket-Protocol", "a b")]), "token list"),
        (response([("Sec-WebSocket-Extensions", "x-unknown")]), "not offered"),
        (response([("Sec-WebSocket-Extensions", "permessage-deflate;;")]), "extension"),
    ],
)
def test_refused_upstream_responses(resp: Response, words: str) -> None:
    with pytest.raises(HandshakeError) as exc:
        check_upstream_response(resp, KEY, ["chat", "superchat"], ["permessage-deflate"])
    assert exc.value.status == 502
    assert words in exc.value.reason


def test_extension_names_compare_case_insensitively() -> None:
    resp = response([("Sec-WebSocket-Extensions", "permessage-deflate")])
    offered = ["PerMessage-Deflate"]
    assert check_upstream_response(resp, KEY, [], offered) == (None, ["permessage-deflate"])


def test_extension_not_offered_when_nothing_offered() -> None:
    resp = response([("Sec-WebSocket-Extensions", "permessage-deflate")])
    with pytest.raises(HandshakeError) as exc:
        check_upstream_response(resp, KEY, [], [])
    assert exc.value.status == 502


# -- relayed headers ---------------------------------------------------------------------------


def test_upstream_request_headers() -> None:
    req = request(
        [
            ("Proxy-Connection", "keep-alive"),
            ("Proxy-Authorization", "Basic eA=="),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X"),
            ("X-Hop", "1"),
            ("Sec-WebSocket-Extensions", "permessage-deflate"),
            ("Cookie", "a=b"),
        ],
        drop=("Connection",),
    )
    req.headers.add("connection", "Upgrade, X-Hop, Content-Length")
    kept = upstream_request_headers(req, extensions=None)
    assert kept.raw() == [
        ("Host", "server.example.com"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Extensions", "permessage-deflate"),
        ("Cookie", "a=b"),
        ("connection", "Upgrade"),
    ]
    replaced = upstream_request_headers(req, extensions=["a", "b; x=1"])
    assert replaced.get_all("Sec-WebSocket-Extensions") == ["a", "b; x=1"]
    assert replaced.raw()[4] == ("Sec-WebSocket-Extensions", "a")
    removed = upstream_request_headers(req, extensions=[])
    assert "Sec-WebSocket-Extensions" not in removed
    added = upstream_request_headers(request(), extensions=["permessage-deflate"])
    assert added.raw()[-1] == ("Sec-WebSocket-Extensions", "permessage-deflate")
    assert req.headers.get("Keep-Alive") == "timeout=5"  # the original is untouched
    with pytest.raises(ValueError):  # a new value is checked as ``Headers.add`` checks it
        upstream_request_headers(req, extensions=["x\r\nInjected: 1"])


@pytest.mark.parametrize(
    "extra",
    [
        [],
        [("Via", "1.1 a")],
        [("via", "1.1 a"), ("X", "1"), ("VIA", "1.1 b")],
        [("host", "second.example")],
    ],
)
def test_host_and_via_given_are_set_in_the_same_pass(extra: list[tuple[str, str]]) -> None:
    """``host`` and ``via`` give the headers ``Headers.set`` would: in the first one's place
    with its case, later ones dropped, else at the end."""
    for drop in ((), ("Host",)):
        req = request(extra, drop=drop)
        expected = upstream_request_headers(req, extensions=[])
        expected.set("Host", "up.example:8080")
        expected.set("Via", "1.1 me")
        given = upstream_request_headers(req, extensions=[], host="up.example:8080", via="1.1 me")
        assert given.raw() == expected.raw()
    resp = response(extra)
    answer = response_to_client(resp, KEY)
    answer.headers.set("Via", "1.1 me")
    assert response_to_client(resp, KEY, via="1.1 me").headers.raw() == answer.headers.raw()
    with pytest.raises(ValueError):
        upstream_request_headers(req, extensions=None, via="x\r\nInjected: 1")


def test_repeated_upgrade_headers_are_sent_once_in_the_first_ones_place() -> None:
    req = request(
        [
            ("Sec-WebSocket-Extensions", "permessage-deflate"),
            ("Connection", "keep-alive, Upgrade"),
            ("Cookie", "a=b"),
            ("Sec-WebSocket-Extensions", "x-other"),
            ("Upgrade", "websocket"),
        ]
    )
    headers = upstream_request_headers(req, extensions=["permessage-deflate; a=1"])
    assert headers.raw() == [
        ("Host", "server.example.com"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; a=1"),
        ("Cookie", "a=b"),
    ]


def test_upstream_request_headers_adds_missing_upgrade_headers() -> None:
    headers = upstream_request_headers(request(drop=("Connection", "Upgrade")), extensions=None)
    assert headers.raw()[-2:] == [("Connection", "Upgrade"), ("Upgrade", "websocket")]


def test_strip_hop_by_hop() -> None:
    headers = Headers(
        [
            ("Host", "h"),
            ("Connection", "keep-alive, X-Secret, transfer-encoding, host, "),
            ("Keep-Alive", "1"),
            ("X-Secret", "s"),
            ("Proxy-Authenticate", "Basic"),
            ("Upgrade", "h2c"),
            ("TE", "trailers"),
            ("Trailer", "X"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", "text/plain"),
        ]
    )
    assert strip_hop_by_hop(headers).raw() == [
        ("Host", "h"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Type", "text/plain"),
    ]


def test_response_to_client() -> None:
    upstream = response([("Sec-WebSocket-Protocol", "chat"), ("Keep-Alive", "x"), ("Server", "up")])
    client_key = generate_key()
    resp = response_to_client(upstream, client_key)
    assert (resp.version, resp.status, resp.reason) == ("HTTP/1.1", 101, "Switching Protocols")
    assert resp.headers.raw() == [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(client_key)),
        ("Sec-WebSocket-Protocol", "chat"),
        ("Server", "up"),
    ]
    same = response_to_client(upstream, KEY)
    assert same.headers.get("Sec-WebSocket-Accept") == ACCEPT
    bare = Response("HTTP/1.1", 101, "", Headers())
    assert response_to_client(bare, KEY).headers.raw() == [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Accept", ACCEPT),
    ]
    assert response_to_client(bare, KEY).reason == "Switching Protocols"


@given(st.binary(min_size=16, max_size=16))
def test_any_key_round_trips(raw: bytes) -> None:
    key = base64.b64encode(raw).decode()
    req = request([("Sec-WebSocket-Key", key)], drop=("Sec-WebSocket-Key",))
    assert check_client_request(req).key == key
    resp = response([("Sec-WebSocket-Accept", accept_key(key))], drop=("Sec-WebSocket-Accept",))
    assert check_upstream_response(resp, key, [], []) == (None, [])
