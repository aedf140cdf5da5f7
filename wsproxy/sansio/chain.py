"""Chaining to the next HTTP proxy (``--mode upstream:http[s]://HOST:PORT``), sans-I/O.

Two ways through a next proxy, as every HTTP client speaks to one:

* **A tunnel** (RFC 9110 9.3.6) for everything that is not plain ``http``: wss, ws, https and
  ``--ignore-hosts`` pipes. ``ConnectHandshake`` writes the ``CONNECT host:port`` request and
  reads the proxy's answer head: a 2xx opens the tunnel (what follows the head is already the
  origin's), 1xx heads before it are skipped (RFC 9110 15.2; a 101 switches to nothing a
  tunnel can use, so it is refused), anything else is a ``Refused`` that says why in words
  a user can act on.
* **Absolute form** (RFC 9112 3.2.2) for plain ``http``: ``forwarded_request`` turns the head
  the proxy would send a server into the one a next proxy expects, with the proxy's own
  ``Proxy-Authorization``; ``refused_forward`` reads the next proxy's 407 to such a request.

Credentials are RFC 7617 Basic, ``user:pass`` as ``--upstream-auth`` gives them. They are sent
and never written into a reason: reasons end up in log lines and error pages.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from wsproxy.sansio.errors import HttpError
from wsproxy.sansio.http11 import (
    STATUS_REASONS,
    Headers,
    HeadParser,
    Limits,
    Request,
    Response,
    serialize_request,
)
from wsproxy.sansio.targets import format_authority, host_port

__all__ = [
    "ConnectHandshake",
    "Established",
    "Refused",
    "basic_credentials",
    "forwarded_request",
    "refused_forward",
]

# The status the client gets when the next proxy refuses: the proxy it spoke to is a gateway
# that got a bad answer from the next hop (RFC 9110 15.6.3).
BAD_GATEWAY = 502
REASON_WIDTH = 80  # characters of the next proxy's reason phrase quoted in a reason


def basic_credentials(user_pass: str) -> str:
    """The ``Proxy-Authorization`` value for ``user:pass`` (RFC 7617 2, UTF-8 as its 2.1
    ``charset`` allows: a next proxy that knows only ASCII sees the same bytes for ASCII)."""
    return "Basic " + base64.b64encode(user_pass.encode("utf-8")).decode("ascii")


@dataclass(frozen=True)
class Established:
    """The next proxy opened the tunnel; ``leftover`` came after its answer (origin bytes)."""

    leftover: bytes


@dataclass(frozen=True)
class Refused:
    """The next proxy did not open the tunnel: answer the client ``status`` with ``reason``."""

    status: int
    reason: str


def _status_line(resp: Response) -> str:
    """``403 Forbidden`` as the next proxy sent it, its phrase cut to ``REASON_WIDTH``."""
    phrase = resp.reason or STATUS_REASONS.get(resp.status, "")
    if len(phrase) > REASON_WIDTH:
        phrase = phrase[:REASON_WIDTH] + "…"
    return f"{resp.status} {phrase}".rstrip()


def _auth_refusal(proxy: str, resp: Response, *, sent_credentials: bool) -> Refused:
    """A 407 from the next proxy, worded by whether --upstream-auth was given."""
    if sent_credentials:
        reason = (
            f"upstream proxy {proxy} refused the --upstream-auth credentials ({_status_line(resp)})"
        )
    else:
        reason = f"upstream proxy {proxy} requires authentication (use --upstream-auth)"
    return Refused(BAD_GATEWAY, reason)


class ConnectHandshake:
    """One ``CONNECT`` to the next proxy: ``request()`` to send, then ``receive`` its answer.

    ``proxy`` is the next proxy's ``host:port`` as log lines name it; ``credentials`` the
    ``user:pass`` of ``--upstream-auth``, or None. The answer's head is held to ``limits``
    (a garbage answer is refused as soon as it cannot be HTTP, not at a timeout).
    """

    def __init__(
        self,
        proxy: str,
        host: str,
        port: int,
        *,
        credentials: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.proxy = proxy
        self.target = host_port(host, port)
        self.credentials = credentials
        self.limits = limits or Limits()
        self._parser = HeadParser(self.limits, is_response=True)

    def request(self) -> bytes:
        """The CONNECT request head: authority-form target and the same Host (RFC 9110
        9.3.6, 7.2), ``Proxy-Authorization`` when credentials were given."""
        headers = Headers([("Host", self.target)])
        if self.credentials is not None:
            headers.add("Proxy-Authorization", basic_credentials(self.credentials))
        return serialize_request(Request("CONNECT", self.target, "HTTP/1.1", headers))

    def receive(self, data: bytes) -> Established | Refused | None:
        """Bytes from the next proxy; the outcome once its final answer head is complete."""
        while True:
            try:
                resp = self._parser.feed(data)
            except HttpError as error:
                return Refused(
                    BAD_GATEWAY,
                    f"upstream proxy {self.proxy} sent a malformed answer to CONNECT "
                    f"{self.target}: {error.reason}",
                )
            if resp is None:
                return None
            assert isinstance(resp, Response)
            leftover = self._parser.leftover
            if 100 <= resp.status < 200 and resp.status != 101:  # interim: a final one follows
                self._parser = HeadParser(self.limits, is_response=True)
                data = leftover
                continue
            return self._final(resp, leftover)

    def receive_eof(self) -> Refused:
        """The next proxy closed before its answer head was complete."""
        return Refused(
            BAD_GATEWAY,
            f"upstream proxy {self.proxy} closed the connection without answering "
            f"CONNECT {self.target}",
        )

    def _final(self, resp: Response, leftover: bytes) -> Established | Refused:
        if 200 <= resp.status < 300:
            # RFC 9110 9.3.6: a 2xx to CONNECT has no content; Content-Length or
            # Transfer-Encoding in it are to be ignored, and the tunnel starts after the head.
            return Established(leftover)
        if resp.status in (401, 407):
            # 407 is the standard answer (RFC 9110 15.5.8); a 401 to CONNECT can only be the
            # proxy's own too (no origin was reached), and tinyproxy sends one for wrong
            # credentials.
            return _auth_refusal(self.proxy, resp, sent_credentials=self.credentials is not None)
        return Refused(
            BAD_GATEWAY,
            f"upstream proxy {self.proxy} refused CONNECT {self.target}: {_status_line(resp)}",
        )


def forwarded_request(
    req: Request, scheme: str, host: str, port: int, *, credentials: str | None = None
) -> Request:
    """``req`` (origin-form, as it would go to the server) in the absolute form a next proxy
    takes (RFC 9112 3.2.2), with ``Proxy-Authorization`` for ``credentials``. An asterisk
    target (``OPTIONS *``) becomes the bare authority: the last proxy turns it back into
    ``*`` (RFC 9112 3.2.4)."""
    authority = format_authority(host, port, scheme)
    path = "" if req.target == "*" else req.target
    headers = req.headers.copy()
    if credentials is not None:
        headers.set("Proxy-Authorization", basic_credentials(credentials))
    return Request(req.method, f"{scheme}://{authority}{path}", req.version, headers)


def refused_forward(resp: Response, proxy: str, *, sent_credentials: bool) -> Refused | None:
    """The next proxy's answer to an absolute-form request: a 407 is its own refusal (for
    the client it would read as this proxy's), anything else is the origin's answer (a 401
    too: here it may be the origin's, unlike a 401 to CONNECT)."""
    if resp.status != 407:
        return None
    return _auth_refusal(proxy, resp, sent_credentials=sent_credentials)
