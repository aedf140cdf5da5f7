"""Tests of wsproxy.sansio.persistence: when an upstream connection is reused, when a request
is sent again. Each test is a playbook: the events of one exchange, then the two answers."""

from __future__ import annotations

import pytest

from wsproxy.sansio.bodies import NO_BODY, Framing, body_framing
from wsproxy.sansio.http11 import Headers, HeadParser, Request, Response
from wsproxy.sansio.persistence import (
    IDEMPOTENT_METHODS,
    REPLAY_LIMIT,
    Exchange,
    binds_connection,
    keeps_alive,
)

LENGTH = Framing("length", 5)
CHUNKED = Framing("chunked", None)
UNTIL_CLOSE = Framing("close", None)


def fields(**named: str) -> Headers:
    return Headers((name.replace("_", "-"), value) for name, value in named.items())


def response(status: int = 200, version: str = "HTTP/1.1", **named: str) -> Response:
    return Response(version, status, "", fields(**named))


def request(method: str = "GET", **named: str) -> Request:
    return Request(method, "/", "HTTP/1.1", fields(**named))


def exchange(method: str = "GET", *, reused: bool = True, framing: Framing = NO_BODY) -> Exchange:
    return Exchange(request(method), reused=reused, request_framing=framing)


def answered(
    method: str = "GET",
    resp: Response | None = None,
    *,
    reused: bool = True,
    request_framing: Framing = NO_BODY,
    framing: Framing | None = None,
    leftover: bytes = b"",
) -> Exchange:
    """An exchange whose request went out whole and whose response ended."""
    resp = resp or response(Content_Length="5")
    state = exchange(method, reused=reused, framing=request_framing)
    if request_framing.kind != "none":
        state.request_body(b"hello")
        state.request_finished()
    state.response_head(resp)
    framing = framing or body_framing(resp, request_method=method)
    state.response_finished(framing, leftover)
    return state


# -- keeps_alive: RFC 9112 9.3 ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("resp", "expected"),
    [
        (response(), True),
        (response(Connection="close"), False),
        (response(Connection="Keep-Alive, CLOSE"), False),
        (response(Connection="x-custom"), True),
        (response(version="HTTP/1.0"), False),
        (response(version="HTTP/1.0", Connection="keep-alive"), True),
        (response(version="HTTP/1.0", Connection="keep-alive, close"), False),
        (response(version="HTTP/0.9"), False),
        (response(version="HTTP/2.0", Connection="keep-alive"), False),
    ],
)
def test_keeps_alive(resp: Response, expected: bool) -> None:
    assert keeps_alive(resp) is expected


def test_keeps_alive_reads_every_connection_field() -> None:
    resp = HeadParser(is_response=True).feed(
        b"HTTP/1.1 200 OK\r\nConnection: foo\r\nConnection: close\r\n\r\n"
    )
    assert isinstance(resp, Response)
    assert not keeps_alive(resp)


# -- reusable ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "resp"),
    [
        ("GET", response(Content_Length="5")),
        ("GET", response(Transfer_Encoding="chunked")),
        ("GET", response(Content_Length="0")),
        ("HEAD", response(Content_Length="500")),  # a HEAD answer has no body (RFC 9110 9.3.2)
        ("GET", response(204)),
        ("GET", response(304, Content_Length="500")),
        ("POST", response(201, Content_Length="5")),
        ("GET", response(version="HTTP/1.0", Connection="keep-alive", Content_Length="5")),
    ],
)
def test_reusable_after_a_framed_response(method: str, resp: Response) -> None:
    assert answered(method, resp).reusable


def test_reusable_on_a_new_connection_too() -> None:
    assert answered(reused=False).reusable


def test_not_reusable_when_the_server_closes() -> None:
    assert not answered(resp=response(Connection="close", Content_Length="5")).reusable


def test_not_reusable_after_a_body_read_until_close() -> None:
    resp = response()  # no length, not chunked: the body ends when the server closes
    assert body_framing(resp, request_method="GET") == UNTIL_CLOSE
    assert not answered(resp=resp).reusable


def test_not_reusable_after_http10_without_keep_alive() -> None:
    assert not answered(resp=response(version="HTTP/1.0", Content_Length="5")).reusable


def test_not_reusable_with_bytes_after_the_body() -> None:
    """A server that sent more than its framing says is out of step: never reuse."""
    assert not answered(leftover=b"HTTP/1.1 200 OK\r\n").reusable


def test_not_reusable_before_the_response_ended() -> None:
    state = exchange("GET", reused=True, framing=NO_BODY)
    assert not state.reusable
    state.response_head(response(Content_Length="5"))
    assert not state.reusable  # body not read yet
    state.response_finished(LENGTH, b"")
    assert state.reusable


def test_not_reusable_when_answered_before_the_request_body_ended() -> None:
    """The server answered (a 413, say) while the client was still sending: the rest of that
    body would reach the server as the next request."""
    state = exchange("POST", reused=False, framing=CHUNKED)
    state.request_body(b"5\r\nhello\r\n")
    state.response_head(response(413, Content_Length="5"))
    state.response_finished(LENGTH, b"")
    assert not state.reusable
    state.request_finished()
    assert state.reusable


def test_interim_responses_do_not_decide() -> None:
    state = exchange("PUT", reused=True, framing=LENGTH)
    state.response_head(response(100, Connection="close"))
    state.request_body(b"hello")
    state.request_finished()
    state.response_head(response(Content_Length="5"))
    state.response_finished(LENGTH, b"")
    assert state.reusable


def test_the_final_head_decides() -> None:
    state = exchange("GET", reused=True, framing=NO_BODY)
    state.response_head(response(103))
    state.response_head(response(Connection="close", Content_Length="5"))
    state.response_finished(LENGTH, b"")
    assert not state.reusable


def test_never_reusable_after_switching_protocols() -> None:
    state = exchange("GET", reused=True, framing=NO_BODY)
    state.response_head(response(101, Upgrade="h2c"))
    state.response_head(response(Content_Length="5"))
    state.response_finished(LENGTH, b"")
    assert not state.reusable


# -- replay: sent again after a kept-alive connection closed unanswered -----------------------


@pytest.mark.parametrize("method", sorted(IDEMPOTENT_METHODS))
def test_idempotent_request_without_body_is_sent_again(method: str) -> None:
    state = exchange(method, reused=True, framing=NO_BODY)
    assert state.replay() == b""


def test_idempotent_methods_are_rfc_9110s() -> None:
    assert {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"} == IDEMPOTENT_METHODS


@pytest.mark.parametrize("method", ["POST", "PATCH", "CONNECT", "PROPFIND", "get"])
def test_other_methods_are_never_sent_again(method: str) -> None:
    state = exchange(method, reused=True, framing=NO_BODY)
    assert state.replay() is None
    assert "not idempotent" in state.no_retry
    assert method in state.no_retry


def test_put_body_is_kept_and_sent_again() -> None:
    state = exchange("PUT", reused=True, framing=CHUNKED)
    state.request_body(b"5\r\nhel")
    assert state.replay() is None  # the body is still arriving
    assert "still sending" in state.no_retry
    state.request_body(b"lo\r\n0\r\n\r\n")
    state.request_finished()
    assert state.replay() == b"5\r\nhello\r\n0\r\n\r\n"


def test_a_body_up_to_the_limit_is_kept() -> None:
    state = exchange("PUT", reused=True, framing=Framing("length", REPLAY_LIMIT))
    state.request_body(b"x" * (REPLAY_LIMIT - 1))
    state.request_body(b"y")
    state.request_finished()
    assert state.replay() == b"x" * (REPLAY_LIMIT - 1) + b"y"


def test_a_larger_body_is_not_kept_nor_sent_again() -> None:
    state = exchange("PUT", reused=True, framing=Framing("length", REPLAY_LIMIT + 1))
    state.request_body(b"x" * REPLAY_LIMIT)
    state.request_body(b"y")
    state.request_body(b"")  # later pieces change nothing
    state.request_finished()
    assert state.replay() is None
    assert "too large" in state.no_retry


def test_a_new_connection_is_not_retried() -> None:
    """A server that closes a connection it just accepted will not do better on the next."""
    state = exchange("GET", reused=False, framing=NO_BODY)
    state.request_body(b"ignored")
    assert state.replay() is None
    assert state.no_retry == "a new connection"


def test_not_sent_again_once_the_server_began_to_answer() -> None:
    state = exchange("GET", reused=True, framing=NO_BODY)
    state.response_head(response(100))
    assert state.replay() is None
    assert "begun" in state.no_retry


def test_no_retry_reason_when_a_retry_is_allowed() -> None:
    state = exchange("DELETE", reused=True, framing=NO_BODY)
    assert state.replay() == b""
    assert state.no_retry == "it could have been sent again"


# -- connection-bound authentication ----------------------------------------------------------


@pytest.mark.parametrize(
    ("req", "resp", "bound"),
    [
        (request(Authorization="NTLM TlRMTVNTUAABAAAA"), response(), True),
        (request(Authorization="negotiate YIIFyg=="), response(), True),
        (request(), response(401, WWW_Authenticate="NTLM"), True),
        (request(), response(401, WWW_Authenticate='Basic realm="a, b", Negotiate'), True),
        (request(Authorization="Basic dTpw"), response(), False),
        (request(Authorization="Bearer x"), response(401, WWW_Authenticate="Bearer"), False),
        (request(Authorization=""), response(WWW_Authenticate=" , "), False),
        (request(), response(), False),
    ],
)
def test_binds_connection(req: Request, resp: Response, bound: bool) -> None:
    assert binds_connection(req, resp) is bound


def test_binds_connection_by_the_request_alone() -> None:
    assert binds_connection(request(Authorization="NTLM abc"))
    assert not binds_connection(request())


def test_connection_authenticated_for_one_client_is_never_pooled() -> None:
    """The pool serves every client: an NTLM or Negotiate connection would carry one
    client's login to the next."""
    for req, resp in [
        (request(Authorization="NTLM abc"), response(Content_Length="5")),
        (request(), response(401, WWW_Authenticate="Negotiate", Content_Length="5")),
    ]:
        state = Exchange(req, reused=False, request_framing=NO_BODY)
        state.response_head(resp)
        state.response_finished(LENGTH, b"")
        assert not state.reusable
