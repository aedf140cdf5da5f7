"""Where an HTTP/1.1 body ends (RFC 7230 3.3), and its bytes passed through as they arrive.

A body is relayed in its wire encoding, so ``BodyReader`` only finds its end and never holds
it whole; the framings RFC 7230 3.3.3 calls ambiguous are refused (see ``http11`` for the
rules the three HTTP modules keep).
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

from wsproxy.sansio.errors import HandshakeError, HttpError
from wsproxy.sansio.extensions import parse_token_list
from wsproxy.sansio.http11 import FIELD_VALUE_RE, TOKEN_RE, Request, Response

__all__ = ["MAX_CHUNK_LINE", "MAX_TRAILERS", "NO_BODY", "BodyReader", "Framing", "body_framing"]


class Framing(NamedTuple):
    """How a body ends: ("none", 0), ("length", n), ("chunked", None) or ("close", None)."""

    kind: Literal["none", "length", "chunked", "close"]
    length: int | None


NO_BODY = Framing("none", 0)


def _transfer_codings(values: list[str], status: int) -> list[str]:
    try:
        codings = [coding.lower() for coding in parse_token_list(values)]
    except HandshakeError as exc:
        raise HttpError(status, f"malformed Transfer-Encoding: {values!r}") from exc
    if not codings:
        raise HttpError(status, "empty Transfer-Encoding")
    return codings


def body_framing(head: Request | Response, *, request_method: str | None = None) -> Framing:
    """Find how the body of ``head`` is delimited (RFC 7230 3.3.3), refusing ambiguity.

    ``request_method`` is the method of the request a response answers (HEAD and CONNECT
    change the answer). Ambiguous framings are how requests are smuggled past a proxy, so they
    are errors here, not guesses: 400 for a request, 502 for an upstream response.
    """
    is_response = isinstance(head, Response)
    status = 502 if is_response else 400
    if isinstance(head, Response) and (
        request_method == "HEAD"
        or 100 <= head.status < 200
        or head.status in (204, 304)
        or (request_method == "CONNECT" and 200 <= head.status < 300)
    ):
        return NO_BODY
    te_values = head.headers.get_all("Transfer-Encoding")
    cl_values = head.headers.get_all("Content-Length")
    if te_values and cl_values:
        raise HttpError(status, "both Content-Length and Transfer-Encoding")
    if te_values:
        codings = _transfer_codings(te_values, status)
        if head.version == "HTTP/1.0":
            # RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
            if is_response:
                return Framing("close", None)
            raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if codings[-1] != "chunked" or codings.count("chunked") > 1:
            if is_response:
                return Framing("close", None)  # RFC 7230 3.3.3 point 3: read until close
            raise HttpError(400, f"chunked is not the final transfer coding: {te_values!r}")
        if len(codings) > 1 and not is_response:
            # RFC 7230 3.3.1: a transfer coding we do not understand is answered with 501.
            raise HttpError(501, f"unsupported transfer coding: {te_values!r}")
        return Framing("chunked", None)
    if cl_values:
        if len(cl_values) > 1:
            raise HttpError(status, "several Content-Length headers")
        value = cl_values[0]
        if not value.isascii() or not value.isdigit() or len(value) > 18:
            raise HttpError(status, f"invalid Content-Length: {value[:40]!r}")
        length = int(value)
        return NO_BODY if length == 0 else Framing("length", length)
    return Framing("close", None) if is_response else NO_BODY


# Chunk-size lines (with extensions) and trailer sections are held until they are complete and
# checked, so the proxy never forwards a line it would refuse. 4 KiB per line is generous
# (Go's net/http allows 4 KiB of chunk extensions); trailers share the 64 KiB head limit.
MAX_CHUNK_LINE = 4096
MAX_TRAILERS = 65536

# RFC 7230 4.1: chunk = chunk-size [ chunk-ext ] CRLF; chunk-ext = *( ";" name [ "=" val ] ),
# with BWS around ";" and "=" (RFC 7230 4.1.1 and its errata).
_CHUNK_LINE_RE = re.compile(
    rb"([0-9A-Fa-f]+)"
    rb"(?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
    rb"(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|\"(?:[^\"\\\x00-\x08\x0a-\x1f\x7f]"
    rb"|\\[\t\x20-\x7e\x80-\xff])*\"))?)*[ \t]*"
)


class BodyReader:
    """Find the end of one body and pass its bytes through in their wire encoding.

    ``feed`` returns (bytes of this body, finished). The bytes are the ones fed, unchanged
    (chunk lines and trailers included), so the proxy forwards them as they are; memory stays
    constant because only an incomplete chunk line or trailer line is held back. Once finished,
    ``leftover`` holds what came after the body (a pipelined request). ``feed_eof`` tells the
    reader the peer closed: that ends a close-delimited body and is an error for the others.
    """

    def __init__(self, framing: Framing, *, error_status: int = 400, content: bool = False) -> None:
        self.framing = framing
        # With ``content``: the body's content (chunk framing removed) of each feed, for a
        # capture to record; taken by ``take_content``, so it never holds more than one feed.
        self._content: list[bytes] | None = [] if content else None
        self._status = error_status
        self._finished = framing.kind == "none"
        self._remaining = framing.length or 0  # body bytes (length) or chunk bytes (chunked)
        # chunked states: "size" line, "data", "crlf" after data, "trailer" lines
        self._state = "size"
        self._line = bytearray()
        self._trailer_size = 0
        self._leftover = b""

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def leftover(self) -> bytes:
        return self._leftover

    def take_content(self) -> bytes:
        """The content the feeds since the last call passed (only with ``content=True``)."""
        if not self._content:
            return b""
        content = b"".join(self._content)
        self._content.clear()
        return content

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        if self._finished:
            self._leftover += data
            return b"", True
        kind = self.framing.kind
        if kind == "close":
            if self._content is not None:
                self._content.append(data)
            return data, False
        if kind == "length":
            body = data[: self._remaining]
            if self._content is not None:
                self._content.append(body)
            self._remaining -= len(body)
            if self._remaining == 0:
                self._finished = True
                self._leftover = data[len(body) :]
            return body, self._finished
        return self._feed_chunked(data)

    def feed_eof(self) -> None:
        """The peer closed the connection: fine for a close-delimited body, else an error."""
        if self.framing.kind == "close":
            self._finished = True
        elif not self._finished:
            raise HttpError(self._status, "connection closed before the end of the body")

    def _feed_chunked(self, data: bytes) -> tuple[bytes, bool]:
        # A loop over states: each pass consumes a piece of ``data`` and appends the bytes that
        # are known to be part of the body to ``out``.
        out = bytearray()
        pos = 0
        while pos < len(data) and not self._finished:
            if self._state == "data":
                take = min(self._remaining, len(data) - pos)
                out += data[pos : pos + take]
                if self._content is not None:
                    self._content.append(data[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = "crlf"
                continue
            newline = data.find(b"\n", pos)
            end = len(data) if newline < 0 else newline + 1
            self._line += data[pos:end]
            pos = end
            limit = MAX_CHUNK_LINE if self._state != "trailer" else MAX_TRAILERS
            if len(self._line) > limit:
                raise HttpError(self._status, f"chunk {self._state} line too long")
            if newline < 0:
                if self._state == "crlf" and bytes(self._line) not in (b"", b"\r"):
                    raise HttpError(self._status, "missing CRLF after chunk data")
                break
            line = bytes(self._line)
            self._line.clear()
            out += line
            if not line.endswith(b"\r\n"):
                raise HttpError(self._status, "chunk line not ended by CRLF")
            self._chunk_line(line[:-2])
        if self._finished:
            self._leftover = data[pos:]
        return bytes(out), self._finished

    def _chunk_line(self, line: bytes) -> None:
        if self._state == "crlf":
            if line:
                raise HttpError(self._status, "missing CRLF after chunk data")
            self._state = "size"
        elif self._state == "size":
            match = _CHUNK_LINE_RE.fullmatch(line)
            if match is None:
                raise HttpError(self._status, f"invalid chunk size line: {line[:40]!r}")
            digits = match.group(1).lstrip(b"0")
            if len(digits) > 15:
                raise HttpError(self._status, "chunk size too large")
            self._remaining = int(digits or b"0", 16)
            self._state = "data" if self._remaining else "trailer"
        else:  # trailer section (RFC 7230 4.1.2), ended by an empty line
            if not line:
                self._finished = True
                return
            self._trailer_size += len(line) + 2
            name, colon, value = line.partition(b":")
            if (
                self._trailer_size > MAX_TRAILERS
                or not colon
                or TOKEN_RE.fullmatch(name) is None
                or FIELD_VALUE_RE.fullmatch(value) is None
            ):
                raise HttpError(self._status, f"invalid trailer line: {line[:40]!r}")
