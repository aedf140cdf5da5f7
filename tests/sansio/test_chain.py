"""Tests of wsproxy.sansio.chain: the CONNECT to a next proxy, its answers, absolute form."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproxy.sansio.chain import (
    REASON_WIDTH,
    ConnectHandshake,
    Established,
    Refused,
    basic_credentials,
    forwarded_request,
    refused_forward,
)
from wsproxy.sansio.http11 import Headers, HeadParser, Limits, Request, Response

PROXY = "127.0.0.1:3128"


def handshake(credentials: str | None = None, limits: Limits | None = None) -> ConnectHandshake:
    return ConnectHandshake(PROXY, "example.com", 443, credentials=credentials, limits=limits)


def answer(data: bytes, credentials: str | None = None) -> Established | Refused | None:
    return handshake(credentials).receive(data)


def bytewise(hs: ConnectHandshake, data: bytes) -> Established | Refused | None:
    """Feed one byte at a time; the outcome must come with the last byte of its head."""
    outcome = None
    for i in range(len(data)):
        outcome = hs.receive(data[i : i + 1])
        if outcome is not None:
            return outcome
    return outcome


def parsed_request(data: bytes) -> Request:
    head = HeadParser(Limits()).feed(data)
    assert isinstance(head, Request)
    return head


# -- the request -------------------------------------------------------------------------------


def test_request_without_credentials() -> None:
    data = handshake().request()
    assert data == b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"


def test_request_with_credentials() -> None:
    req = parsed_request(handshake("alice:s3cr:et").request())
    assert (req.method, req.target) == ("CONNECT", "example.com:443")
    assert req.headers.get("Proxy-Authorization") == "Basic " + base64.b64encode(
        b"alice:s3cr:et"
    ).decode("ascii")


def test_request_ipv6_target_is_bracketed() -> None:
    data = ConnectHandshake(PROXY, "::1", 8443).request()
    assert data.startswith(b"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n")


def test_basic_credentials_utf8() -> None:
    assert basic_credentials("jürgen:pä") == "Basic " + base64.b64encode(
        "jürgen:pä".encode()
    ).decode("ascii")


# -- the answer --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 Connection established\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nProxy-Agent: tinyproxy/1.11.1\r\n\r\n",
        b"HTTP/1.1 204 \r\n\r\n",
        # RFC 9110 9.3.6: framing headers of a 2xx to CONNECT are ignored, no body is read.
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n",
    ],
)
def test_established(head: bytes) -> None:
    assert answer(head) == Established(b"")
    assert bytewise(handshake(), head) == Established(b"")


def test_established_keeps_the_bytes_after_the_head() -> None:
    outcome = answer(b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x01origin")
    assert outcome == Established(b"\x16\x03\x01origin")


def test_incomplete_head_waits() -> None:
    hs = handshake()
    assert hs.receive(b"HTTP/1.1 200 Connection") is None
    assert hs.receive(b" established\r\n") is None
    assert hs.receive(b"\r\nrest") == Established(b"rest")


def test_interim_answers_are_skipped() -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\n\r\ntail"
    )
    assert answer(data) == Established(b"tail")
    assert bytewise(handshake(), data) == Established(b"")


def test_interim_then_final_in_later_reads() -> None:
    hs = handshake()
    assert hs.receive(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2") is None
    assert hs.receive(b"00 OK\r\n\r\n") == Established(b"")


def test_switching_protocols_is_refused() -> None:
    outcome = answer(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    assert outcome == Refused(
        502,
        f"upstream proxy {PROXY} refused CONNECT example.com:443: 101 Switching Protocols",
    )


def test_401_to_connect_is_the_proxys_credential_refusal() -> None:
    outcome = answer(b"HTTP/1.0 401 Unauthorized\r\n\r\n", credentials="alice:wrong")
    assert outcome == Refused(
        502, f"upstream proxy {PROXY} refused the --upstream-auth credentials (401 Unauthorized)"
    )


def test_407_without_credentials() -> None:
    outcome = answer(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
    assert outcome == Refused(
        502, f"upstream proxy {PROXY} requires authentication (use --upstream-auth)"
    )


def test_407_with_credentials_says_they_were_refused_without_them() -> None:
    outcome = answer(b"HTTP/1.1 407 Denied\r\n\r\n", credentials="alice:wrong")
    assert isinstance(outcome, Refused)
    assert outcome.status == 502
    assert outcome.reason == (
        f"upstream proxy {PROXY} refused the --upstream-auth credentials (407 Denied)"
    )
    assert "wrong" not in outcome.reason and "alice" not in outcome.reason


@pytest.mark.parametrize(
    ("head", "line"),
    [
        (b"HTTP/1.1 403 Forbidden\r\n\r\n", "403 Forbidden"),
        (
            b"HTTP/1.1 500 Unable to connect\r\nContent-Length: 3\r\n\r\nbad",
            "500 Unable to connect",
        ),
        (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", "503 Service Unavailable"),
        (b"HTTP/1.1 504\r\n\r\n", "504 Gateway Timeout"),  # no phrase: the standard one
        (b"HTTP/1.1 599\r\n\r\n", "599"),  # no phrase known either
        (b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n", "302 Found"),
    ],
)
def test_refusal_names_the_status_line(head: bytes, line: str) -> None:
    assert answer(head) == Refused(
        502, f"upstream proxy {PROXY} refused CONNECT example.com:443: {line}"
    )


def test_long_reason_phrase_is_cut() -> None:
    outcome = answer(b"HTTP/1.1 403 " + b"x" * 500 + b"\r\n\r\n")
    assert isinstance(outcome, Refused)
    assert outcome.reason.endswith("403 " + "x" * REASON_WIDTH + "…")


@pytest.mark.parametrize(
    "garbage",
    [
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"\x16\x03\x01\x02\x00",  # a TLS record: the next proxy speaks TLS (use https://)
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    ],
)
def test_garbage_is_refused_as_malformed(garbage: bytes) -> None:
    outcome = answer(garbage)
    assert isinstance(outcome, Refused)
    assert outcome.status == 502
    assert outcome.reason.startswith(
        f"upstream proxy {PROXY} sent a malformed answer to CONNECT example.com:443: "
    )


def test_answer_over_the_head_limit_is_refused() -> None:
    hs = handshake(limits=Limits(max_head_size=64))
    outcome = hs.receive(b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 100)
    assert isinstance(outcome, Refused)
    assert "malformed answer" in outcome.reason and "too large" in outcome.reason


def test_eof_before_the_answer() -> None:
    hs = handshake()
    assert hs.receive(b"HTTP/1.1 2") is None
    assert hs.receive_eof() == Refused(
        502,
        f"upstream proxy {PROXY} closed the connection without answering CONNECT example.com:443",
    )


@given(st.binary(max_size=200))
def test_any_bytes_give_an_outcome_or_wait_never_an_exception(data: bytes) -> None:
    outcome = handshake().receive(data)
    assert outcome is None or isinstance(outcome, Established | Refused)


# -- absolute form -----------------------------------------------------------------------------


def origin_request(target: str = "/path?q=1") -> Request:
    headers = Headers([("Host", "example.com:8080"), ("Via", "1.1 wsproxy-x")])
    return Request("GET", target, "HTTP/1.1", headers)


def test_forwarded_request_is_absolute_form_with_the_headers_kept() -> None:
    req = forwarded_request(origin_request(), "http", "example.com", 8080)
    assert req.target == "http://example.com:8080/path?q=1"
    assert (req.method, req.version) == ("GET", "HTTP/1.1")
    assert req.headers.items() == [("Host", "example.com:8080"), ("Via", "1.1 wsproxy-x")]


def test_forwarded_request_default_port_and_ipv6() -> None:
    assert forwarded_request(origin_request("/"), "http", "example.com", 80).target == (
        "http://example.com/"
    )
    assert forwarded_request(origin_request("/"), "http", "::1", 81).target == "http://[::1]:81/"


def test_forwarded_request_adds_proxy_authorization() -> None:
    original = origin_request()
    req = forwarded_request(original, "http", "example.com", 8080, credentials="u:p")
    assert req.headers.get("Proxy-Authorization") == "Basic dTpw"
    assert "Proxy-Authorization" not in original.headers  # the caller's head is unchanged


def test_forwarded_asterisk_is_the_bare_authority() -> None:
    req = Request("OPTIONS", "*", "HTTP/1.1", Headers([("Host", "example.com")]))
    assert forwarded_request(req, "http", "example.com", 80).target == "http://example.com"


def test_refused_forward_407() -> None:
    resp = Response("HTTP/1.1", 407, "Proxy Authentication Required")
    assert refused_forward(resp, PROXY, sent_credentials=False) == Refused(
        502, f"upstream proxy {PROXY} requires authentication (use --upstream-auth)"
    )
    refused = refused_forward(resp, PROXY, sent_credentials=True)
    assert refused is not None and "refused the --upstream-auth credentials" in refused.reason


@pytest.mark.parametrize("status", [200, 401, 403, 404, 502, 504])
def test_refused_forward_leaves_other_answers_to_the_client(status: int) -> None:
    resp = Response("HTTP/1.1", status, "x")
    assert refused_forward(resp, PROXY, sent_credentials=True) is None
