"""HTTP/1.1 heads and body framing, as a man-in-the-middle proxy needs them (RFC 7230).

The rules of this file:

* **Sans-I/O.** ``HeadParser`` and ``BodyReader`` take bytes through ``feed`` and hand back
  results; they work the same fed a whole buffer or one byte at a time, and never block.
* **Heads are re-serialized, bodies are relayed.** The proxy parses a head, may change it, and
  writes it out again with ``serialize_request``/``serialize_response`` (always CRLF, original
  header case and order). A body is passed through in its wire encoding: chunked stays
  chunked, so ``BodyReader`` only finds where the body ends and never buffers it whole.
* **Strict where a disagreement could smuggle.** RFC 7230 3.3.3 lists the ambiguous framings
  (Content-Length with Transfer-Encoding, several Content-Lengths, chunked not last); they are
  refused, never guessed. Chunk lines must end with CRLF because they are forwarded unchanged
  and the upstream might read a lone LF differently. In a head a lone LF is accepted as a line
  end (RFC 7230 3.5 allows it; h11 does the same) since heads are rewritten with CRLF anyway;
  a lone CR is refused.
* **Errors carry the status to answer with.** A malformed request raises ``HttpError(400)``
  (414 and 431 for the limits, 501/505 where RFC 7230 says so). A malformed *response* comes
  from the upstream, so the client is answered ``502 Bad Gateway``: parsers created for
  responses raise ``HttpError(502)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Literal, NamedTuple

from wsproxy.sansio.errors import HandshakeError, HttpError
from wsproxy.sansio.extensions import parse_token_list

__all__ = [
    "STATUS_REASONS",
    "BodyReader",
    "Framing",
    "HeadParser",
    "Headers",
    "Limits",
    "Request",
    "Response",
    "Target",
    "body_framing",
    "check_request",
    "parse_host_header",
    "parse_target",
    "serialize_request",
    "serialize_response",
    "simple_response",
]

STATUS_REASONS: dict[int, str] = {status.value: status.phrase for status in HTTPStatus}

# RFC 7230 3.2.6: token = 1*tchar.
_TOKEN_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN_STR_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 7230 3.2: field-value = *( field-content / obs-fold ); HTAB, SP, VCHAR and obs-text.
# NUL, CR, LF and the other controls are refused (h11 does the same).
_VALUE_RE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_VALUE_STR_RE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# RFC 7230 3.1.1: request-line = method SP request-target SP HTTP-version.  The target may
# contain obs-text (some clients send raw UTF-8 paths) but no space or control character.
_REQUEST_LINE_RE = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e\x80-\xff]+) (HTTP/[0-9]\.[0-9])"
)
# RFC 7230 3.1.2: status-line = HTTP-version SP status-code SP reason-phrase; the reason may
# be empty, and like h11 we accept a status line without the SP before an empty reason.
_STATUS_LINE_RE = re.compile(rb"(HTTP/[0-9]\.[0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
_VERSION_RE = re.compile(rb"HTTP/[0-9]\.[0-9]")


class Headers:
    """An ordered multi-map of header fields, keeping the original name case and order.

    Lookups are case-insensitive (RFC 7230 3.2). Values are ``str`` decoded as latin-1: header
    bytes are opaque to HTTP and latin-1 maps each byte to one code point, so they round-trip.
    ``add`` and ``set`` refuse names that are not tokens and values with CR, LF or NUL, so a
    plugin cannot split a head by setting a header (response splitting).
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in items:
            self.add(name, value)

    @staticmethod
    def _check(name: str, value: str) -> None:
        if _TOKEN_STR_RE.fullmatch(name) is None:
            raise ValueError(f"invalid header name: {name!r}")
        if _VALUE_STR_RE.fullmatch(value) is None:
            raise ValueError(f"invalid header value for {name}: {value!r}")

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        key = name.lower()
        for item_name, value in self._items:
            if item_name.lower() == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        key = name.lower()
        return [value for item_name, value in self._items if item_name.lower() == key]

    def add(self, name: str, value: str) -> None:
        """Append a field, after any with the same name."""
        self._check(name, value)
        self._items.append((name, value))

    def set(self, name: str, value: str) -> None:
        """Replace every field named ``name`` with one, at the place of the first."""
        self._check(name, value)
        key = name.lower()
        items: list[tuple[str, str]] = []
        placed = False
        for item in self._items:
            if item[0].lower() != key:
                items.append(item)
            elif not placed:
                items.append((item[0], value))
                placed = True
        if not placed:
            items.append((name, value))
        self._items = items

    def remove(self, name: str) -> None:
        """Remove every field named ``name`` (no error when there is none)."""
        key = name.lower()
        self._items = [item for item in self._items if item[0].lower() != key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(item_name.lower() == key for item_name, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def raw(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> Headers:
        new = Headers()
        new._items = list(self._items)
        return new

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: Headers = field(default_factory=Headers)


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)


@dataclass(frozen=True)
class Limits:
    """Caps on a head, checked while it arrives so a peer cannot make the proxy buffer more.

    The defaults follow common servers: 8 KiB request lines (nginx's
    ``large_client_header_buffers``, h11's 16 KiB head), 64 KiB heads (aiohttp's
    ``max_field_size`` times a few) and 100 fields (aiohttp and Python's http.client).
    """

    max_line: int = 8192  # request line, 414 URI Too Long (RFC 7231 6.5.12)
    max_head_size: int = 65536  # whole head, 431 (RFC 6585 5)
    max_headers: int = 100  # number of fields, 431


class HeadParser:
    """Incremental parser of one request or response head.

    ``feed`` returns the head once the empty line that ends it has arrived; ``leftover`` then
    holds the bytes after it (a body, WebSocket frames, a pipelined request, a TLS ClientHello).
    Empty lines before a request line are skipped (RFC 7230 3.5) but count towards the head
    size. Data fed after the head is complete is appended to ``leftover``.
    """

    def __init__(self, limits: Limits | None = None, is_response: bool = False) -> None:
        self.limits = limits or Limits()
        self.is_response = is_response
        self._status = 502 if is_response else 400
        self._buf = bytearray()
        self._scan = 0  # where to look for the next LF in _buf
        self._size = 0  # bytes of the head consumed so far (complete lines)
        self._start: tuple[str, str, str] | None = None
        self._fields: list[tuple[str, str]] = []
        self._result: Request | Response | None = None
        self._leftover = b""

    @property
    def leftover(self) -> bytes:
        return self._leftover

    @property
    def done(self) -> bool:
        return self._result is not None

    def _error(self, reason: str) -> HttpError:
        return HttpError(self._status, reason)

    def _too_large(self, reason: str) -> HttpError:
        return HttpError(self._status if self.is_response else 431, reason)

    def feed(self, data: bytes) -> Request | Response | None:
        if self._result is not None:
            self._leftover += data
            return None
        self._buf += data
        while True:
            newline = self._buf.find(b"\n", self._scan)
            if newline < 0:
                self._scan = len(self._buf)
                self._check_partial()
                return None
            line = bytes(self._buf[:newline])
            del self._buf[: newline + 1]
            self._scan = 0
            self._size += newline + 1
            if self._size > self.limits.max_head_size:
                raise self._too_large("request head too large")
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._line(line):
                self._result = self._build()
                self._leftover = bytes(self._buf)
                self._buf = bytearray()
                return self._result

    def _check_partial(self) -> None:
        """Refuse a line that is already too long or wrong, without waiting for its end.

        Checking the start of the first line early matters: a TLS ClientHello or another
        protocol sent to a plain HTTP port has no line end, and would otherwise leave the
        connection waiting until a timeout instead of being refused at once.
        """
        pending = len(self._buf)
        if self._start is None:
            if self.is_response:
                if not b"HTTP/".startswith(bytes(self._buf[:5])):
                    raise self._error(f"malformed status line: {bytes(self._buf[:20])!r}")
            else:
                if pending > self.limits.max_line:
                    raise HttpError(414, "request line too long")
                method = bytes(self._buf[:64]).split(b" ", 1)[0]
                if method == self._buf and method.endswith(b"\r"):
                    method = method[:-1]  # the CR of a CRLF still on its way
                if method and _TOKEN_RE.fullmatch(method) is None:
                    raise self._error(f"malformed request line: {method[:20]!r}")
        if self._size + pending > self.limits.max_head_size:
            raise self._too_large("request head too large")

    def _line(self, line: bytes) -> bool:
        """Take one line without its line end; True when it ends the head."""
        if self._start is None:
            if not line and not self.is_response:
                return False  # RFC 7230 3.5: ignore empty lines before a request line
            if not self.is_response and len(line) > self.limits.max_line:
                raise HttpError(414, "request line too long")
            self._start = self._parse_start_line(line)
            return False
        if not line:
            return True
        if line[0] in b" \t":
            # RFC 7230 3.2.4: obs-fold is deprecated; a server may reject it with 400.
            raise self._error("obsolete line folding in header")
        name, colon, value = line.partition(b":")
        if not colon:
            raise self._error(f"header line without colon: {line[:40]!r}")
        if _TOKEN_RE.fullmatch(name) is None:
            if name.rstrip(b" \t") != name:
                # RFC 7230 3.2.4: whitespace before the colon must be answered with 400.
                raise self._error(f"whitespace between header name and colon: {name!r}")
            raise self._error(f"invalid header name: {name[:40]!r}")
        value = value.strip(b" \t")
        if _VALUE_RE.fullmatch(value) is None:
            raise self._error(f"invalid character in header value of {name.decode()}")
        if len(self._fields) >= self.limits.max_headers:
            raise self._too_large("too many header fields")
        self._fields.append((name.decode("ascii"), value.decode("latin-1")))
        return False

    def _parse_start_line(self, line: bytes) -> tuple[str, str, str]:
        """Check the start line as soon as it is complete; (method, target, version) or
        (version, status, reason)."""
        if self.is_response:
            match = _STATUS_LINE_RE.fullmatch(line)
            if match is None:
                raise self._error(f"malformed status line: {line[:60]!r}")
            version, status, reason = match.groups()
            return version.decode(), status.decode(), (reason or b"").decode("latin-1")
        match = _REQUEST_LINE_RE.fullmatch(line)
        if match is None:
            parts = line.split(b" ")
            if len(parts) == 3 and _VERSION_RE.fullmatch(parts[2]) is None:
                raise self._error(f"unknown HTTP version: {parts[2][:20]!r}")
            raise self._error(f"malformed request line: {line[:60]!r}")
        method, target, version = match.groups()
        return method.decode(), target.decode("latin-1"), version.decode()

    def _build(self) -> Request | Response:
        assert self._start is not None
        first, second, third = self._start
        headers = Headers()
        headers._items = self._fields
        if self.is_response:
            return Response(first, int(second), third, headers)
        return Request(first, second, third, headers)


# -- request targets ---------------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
# RFC 3986 3.2.2: reg-name = *( unreserved / pct-encoded / sub-delims ).
_REG_NAME_RE = re.compile(r"[A-Za-z0-9\-._~%!$&'()*+,;=]+")
_IPV6_RE = re.compile(r"[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9\-._~%]+)?")


@dataclass(frozen=True)
class Target:
    """Where a request goes (RFC 7230 5.3).

    ``form`` is origin, absolute, authority (CONNECT) or asterisk (``OPTIONS *``). ``host`` has
    no brackets around IPv6. ``port`` defaults by scheme (80 for http/ws, 443 for https/wss).
    ``path`` includes the query: "/" when the absolute form has none, "" for the authority
    form and "*" for the asterisk form.
    """

    form: Literal["origin", "absolute", "authority", "asterisk"]
    scheme: str | None
    host: str | None
    port: int | None
    path: str


def _parse_port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5 or not 0 < int(text) < 65536:
        raise HttpError(400, f"invalid port: {text!r}")
    return int(text)


def _parse_authority(text: str, default_port: int | None) -> tuple[str, int]:
    """``host[:port]`` or ``[v6]:port``; the port is required when default_port is None."""
    if "@" in text:
        raise HttpError(400, "userinfo in request target is refused")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise HttpError(400, f"unterminated IPv6 address: {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if _IPV6_RE.fullmatch(host) is None or ":" not in host:
            raise HttpError(400, f"invalid IPv6 address: {host!r}")
        if rest and not rest.startswith(":"):
            raise HttpError(400, f"invalid authority: {text!r}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_ = text.partition(":")
        port_text = port_text_ if colon else None
        if _REG_NAME_RE.fullmatch(host) is None:
            raise HttpError(400, f"invalid host: {host!r}")
    if port_text:
        return host, _parse_port(port_text)
    if default_port is None:
        raise HttpError(400, f"port required in {text!r}")
    return host, default_port  # RFC 3986 3.2.3: an empty port means the default


def parse_host_header(value: str, default_port: int) -> tuple[str, int]:
    """Split a Host header value (RFC 7230 5.4) into (host, port); 400 when malformed."""
    if not value:
        raise HttpError(400, "empty Host header")
    return _parse_authority(value, default_port)


def parse_target(request: Request, *, default_port: int = 80) -> Target:
    """Classify and split the request-target (RFC 7230 5.3).

    For the origin and asterisk forms the host comes from the Host header, with
    ``default_port`` when it has none (pass 443 for requests that arrived over TLS).
    """
    target = request.target
    if request.method == "CONNECT":
        # RFC 7231 4.3.6: CONNECT takes the authority form only, port included.
        hostport = _parse_authority(target, None)
        return Target("authority", None, hostport[0], hostport[1], "")
    if target.startswith("/") or target == "*":
        if target == "*" and request.method != "OPTIONS":
            raise HttpError(400, "asterisk target is only valid for OPTIONS")
        host_value = request.headers.get("Host")
        host: str | None = None
        port: int | None = None
        if host_value is not None:
            host, port = parse_host_header(host_value, default_port)
        form: Literal["origin", "asterisk"] = "asterisk" if target == "*" else "origin"
        return Target(form, None, host, port, target)
    scheme, sep, rest = target.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS:
        raise HttpError(400, f"unsupported request target: {target[:60]!r}")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    host, port = _parse_authority(authority, _DEFAULT_PORTS[scheme])
    if not path.startswith("/"):
        path = "/" + path
    return Target("absolute", scheme, host, port, path)


def check_request(req: Request) -> None:
    """Refuse requests this proxy cannot relay: version (RFC 7230 2.6) and Host (5.4)."""
    if req.method == "PRI" and req.target == "*" and req.version == "HTTP/2.0":
        raise HttpError(400, "HTTP/2 connection preface: this proxy speaks HTTP/1.1 only")
    if req.version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(505, f"HTTP version not supported: {req.version}")
    hosts = req.headers.get_all("Host")
    if len(hosts) > 1:
        raise HttpError(400, "duplicate Host header")
    if not hosts:
        if req.version == "HTTP/1.1":
            raise HttpError(400, "missing Host header")
        return
    if hosts[0] or req.target.startswith("/"):
        parse_host_header(hosts[0], 80)


# -- body framing ------------------------------------------------------------------------------


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

    def __init__(self, framing: Framing, *, error_status: int = 400) -> None:
        self.framing = framing
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

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        if self._finished:
            self._leftover += data
            return b"", True
        kind = self.framing.kind
        if kind == "close":
            return data, False
        if kind == "length":
            body = data[: self._remaining]
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
                or _TOKEN_RE.fullmatch(name) is None
                or _VALUE_RE.fullmatch(value) is None
            ):
                raise HttpError(self._status, f"invalid trailer line: {line[:40]!r}")


# -- serializing -------------------------------------------------------------------------------


def _serialize_headers(headers: Headers) -> bytes:
    return b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.raw())


def serialize_request(req: Request) -> bytes:
    """The request head, CRLF line ends, header case and order preserved."""
    line = f"{req.method} {req.target} {req.version}\r\n".encode("latin-1")
    return line + _serialize_headers(req.headers) + b"\r\n"


def serialize_response(resp: Response) -> bytes:
    """The response head, CRLF line ends, header case and order preserved."""
    line = f"{resp.version} {resp.status:03d} {resp.reason}\r\n".encode("latin-1")
    return line + _serialize_headers(resp.headers) + b"\r\n"


def simple_response(
    status: int,
    reason_text: str,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] | None = None,
) -> bytes:
    """A complete answer of the proxy's own (an error page), closing the connection.

    The status line carries the standard phrase; ``reason_text`` is the one-line explanation
    sent as the body unless ``body`` is given. ``headers`` come first (for example
    ``Sec-WebSocket-Version: 13`` with a 426); a Content-Type among them replaces the
    default text/plain, while Content-Length and Connection are always the proxy's.
    """
    if not body:
        body = (" ".join(reason_text.splitlines()) + "\n").encode("utf-8")
    head = Headers(headers or ())
    if "Content-Type" not in head:  # a caller's own type wins (for example an HTML page)
        head.add("Content-Type", "text/plain; charset=utf-8")
    head.set("Content-Length", str(len(body)))
    head.set("Connection", "close")
    resp = Response("HTTP/1.1", status, STATUS_REASONS.get(status, "Unknown"), head)
    return serialize_response(resp) + body
