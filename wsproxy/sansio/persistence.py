"""Whether an upstream connection outlives its exchange (RFC 9112 9.3), and when a request
that met a stale kept-alive connection may be sent again (RFC 9112 9.3.1, RFC 9110 9.2.2).

The proxy keeps idle upstream connections for the next plain HTTP request to the same server
(``wsproxy.proxy.pool``). A connection goes back to the pool only when both messages ended by
their own framing and the server did not say it will close: anything else leaves the next
response's start unknown, and a wrong guess would hand one client another client's answer.

A kept-alive connection may have been closed by the server while it sat idle, and the request
sent on it then meets an EOF before any answer byte. RFC 9112 9.3.1 lets a client retry an
idempotent request automatically, and only those (RFC 9110 9.2.2): a POST that may have been
processed is never sent twice. A retry also needs the request body again; the proxy streams
bodies, so it keeps a copy only up to ``REPLAY_LIMIT`` (a request with a larger body is not
retried). ``Exchange`` is fed what happened, by the I/O layer, and answers both questions.

The pool is shared by every client, so a connection that carries state of one client must not
serve another: NTLM and Negotiate authenticate the connection, not the request (RFC 4559 6),
so an exchange that uses either never returns its connection to the pool.
"""

from __future__ import annotations

from wsproxy.sansio.bodies import Framing
from wsproxy.sansio.http11 import Request, Response

__all__ = [
    "CONNECTION_AUTH",
    "IDEMPOTENT_METHODS",
    "REPLAY_LIMIT",
    "Exchange",
    "binds_connection",
    "keeps_alive",
]

# RFC 9110 9.2.2: PUT, DELETE and the safe methods (9.2.1: GET, HEAD, OPTIONS, TRACE).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

# The largest request body kept to send again on a retry. Browsers retry only bodies they
# hold whole (Chromium's upload data streams are rewindable); 64 KiB covers form-sized PUTs
# and keeps a proxy with many such requests in flight small.
REPLAY_LIMIT = 64 * 1024

# Authentication schemes that authenticate the connection rather than each request.
CONNECTION_AUTH = frozenset({"ntlm", "negotiate"})


def _connection_tokens(response: Response) -> set[str]:
    """Lower-case options of every Connection field (RFC 9110 7.6.1), read loosely: a
    malformed list still says "close" if it names it."""
    values = response.headers.get_all("Connection")
    return {item.strip().lower() for value in values for item in value.split(",")}


def _schemes(values: list[str]) -> set[str]:
    """Lower-case first words of each comma item (loosely: a quoted comma in a parameter
    only adds words that name no scheme)."""
    return {
        item.split()[0].lower() for value in values for item in value.split(",") if item.strip()
    }


def binds_connection(request: Request, response: Response | None = None) -> bool:
    """Whether the exchange authenticates the connection itself (NTLM, Negotiate)."""
    schemes = _schemes(request.headers.get_all("Authorization"))
    if response is not None:
        schemes |= _schemes(response.headers.get_all("WWW-Authenticate"))
    return not schemes.isdisjoint(CONNECTION_AUTH)


def keeps_alive(response: Response) -> bool:
    """Whether the server lets the connection persist after ``response`` (RFC 9112 9.3):
    HTTP/1.1 unless it sent ``Connection: close``; HTTP/1.0 only with ``keep-alive``."""
    tokens = _connection_tokens(response)
    if "close" in tokens:
        return False
    if response.version == "HTTP/1.1":
        return True
    return response.version == "HTTP/1.0" and "keep-alive" in tokens


class Exchange:
    """One request and its response on one upstream connection, as the proxy relays them.

    Events in: ``request_body`` (wire bytes of the request body as they are sent upstream),
    ``request_finished``, ``response_head`` (each head, interim ones included) and
    ``response_finished`` (with the bytes that followed the body). Answers: ``reusable``
    (return the connection to the pool) and ``replay()`` (the body to send again on a new
    connection, or None when the request must not or cannot be retried).
    """

    def __init__(self, request: Request, *, reused: bool, request_framing: Framing) -> None:
        self.request = request
        self.method = request.method
        self.reused = reused
        self._request_done = request_framing.kind == "none"
        # A copy of the body for a retry: only where a retry may happen at all.
        self._replay: bytearray | None = (
            bytearray() if reused and self.method in IDEMPOTENT_METHODS else None
        )
        self._answered = False  # a response byte arrived: the request reached the server
        self._persists = False  # the final head allows the connection to persist
        self._switched = False  # a 101: the connection speaks another protocol from now on
        self._response_done = False

    def request_body(self, data: bytes) -> None:
        if self._replay is None:
            return
        if len(self._replay) + len(data) > REPLAY_LIMIT:
            self._replay = None  # too large to keep: this request will not be retried
        else:
            self._replay += data

    def request_finished(self) -> None:
        self._request_done = True

    def response_head(self, response: Response) -> None:
        self._answered = True
        if response.status == 101:
            self._switched = True
        elif response.status >= 200:
            self._persists = keeps_alive(response) and not binds_connection(self.request, response)

    def response_finished(self, framing: Framing, leftover: bytes) -> None:
        """The response body ended by ``framing``; ``leftover`` came after it, unasked."""
        self._response_done = True
        if framing.kind == "close" or leftover:
            self._persists = False

    @property
    def reusable(self) -> bool:
        """The connection may carry the next request: both messages ended by their framing
        (a request body the server answered early was not read to its end), the server
        keeps the connection (``keeps_alive``) and it holds no client's authentication."""
        return self._persists and self._response_done and self._request_done and not self._switched

    @property
    def no_retry(self) -> str:
        """Why ``replay()`` is None, for the log and the client's 502."""
        if self._answered:
            return "it had begun to answer"
        if not self.reused:
            return "a new connection"
        if self.method not in IDEMPOTENT_METHODS:
            return f"{self.method} is not idempotent (RFC 9110 9.2.2), so it is not sent twice"
        if self._replay is None:
            return f"the request body was over {REPLAY_LIMIT // 1024} KiB, too large to keep"
        if not self._request_done:
            return "the client was still sending the request body"
        return "it could have been sent again"

    def replay(self) -> bytes | None:
        """What to send again after the connection closed before any response byte: the
        request body (b"" for none), or None when the request must not be retried (a fresh
        connection, a method that is not idempotent) or cannot be (the body was too large
        to keep, or the client was still sending it)."""
        if self._answered or self._replay is None or not self._request_done:
            return None
        return bytes(self._replay)
