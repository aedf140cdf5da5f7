"""HTTP/1.1 heads, as a man-in-the-middle proxy needs them (RFC 7230): parse, limit, serialize.

Request targets are in ``targets``, body framing in ``bodies``. The rules of the three:

* **Sans-I/O.** ``HeadParser`` and ``bodies.BodyReader`` take bytes through ``feed`` and hand
  back results; they work the same fed a whole buffer or one byte at a time, and never block.
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

from wsproxy.sansio.errors import HttpError

__all__ = [
    "FIELD_VALUE_RE",
    "STATUS_REASONS",
    "TOKEN_RE",
    "HeadParser",
    "Headers",
    "Limits",
    "Request",
    "Response",
    "serialize_request",
    "serialize_response",
    "simple_response",
]

STATUS_REASONS: dict[int, str] = {status.value: status.phrase for status in HTTPStatus}

# RFC 7230 3.2.6: token = 1*tchar.
TOKEN_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN_STR_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 7230 3.2: field-value = *( field-content / obs-fold ); HTAB, SP, VCHAR and obs-text.
# NUL, CR, LF and the other controls are refused (h11 does the same).
FIELD_VALUE_RE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
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
# A whole field line of a well-formed head: the name, then the value without the whitespace
# around it (RFC 7230 3.2). Used by ``HeadParser``'s fast path only: a line it does not match
# goes to the line-by-line parser, which says what is wrong with it.
# The fast path reads every field line at once, from the head decoded as latin-1 (a token is
# ASCII, so its name reads the same): the block of fields after the start line must be
# nothing but such lines, each after its CRLF, and one ``findall`` then gives the pairs.
_NAME = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE = r"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?"
_FIELD_BLOCK_RE = re.compile(rf"(?:\r\n{_NAME}:[ \t]*{_VALUE}[ \t]*)*")
_FIELDS_RE = re.compile(rf"\r\n({_NAME}):[ \t]*({_VALUE})[ \t]*")


class Headers:
    """An ordered multi-map of header fields, keeping the original name case and order.

    Lookups are case-insensitive (RFC 7230 3.2). Values are ``str`` decoded as latin-1: header
    bytes are opaque to HTTP and latin-1 maps each byte to one code point, so they round-trip.
    ``add`` and ``set`` refuse names that are not tokens and values with CR, LF or NUL, so a
    plugin cannot split a head by setting a header (response splitting).
    """

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        # Values by lower-case name, built at the first lookup and dropped by every change:
        # a handshake looks up a dozen names in the same few heads.
        self._index: dict[str, list[str]] | None = None
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _valid(cls, items: list[tuple[str, str]]) -> Headers:
        """Headers from fields already checked (a parsed head's, or another ``Headers``'):
        no second look at each name and value."""
        headers = cls()
        headers._items = items
        return headers

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            items = self._items
            keys = [name.lower() for name, _ in items]
            index = {key: [value] for key, (_, value) in zip(keys, items, strict=True)}
            if len(index) < len(items):  # a repeated name: its values, in order, in one list
                index = {}
                for key, (_, value) in zip(keys, items, strict=True):
                    index.setdefault(key, []).append(value)
            self._index = index
        return index

    @staticmethod
    def _check(name: str, value: str) -> None:
        if _TOKEN_STR_RE.fullmatch(name) is None:
            raise ValueError(f"invalid header name: {name!r}")
        if _VALUE_STR_RE.fullmatch(value) is None:
            raise ValueError(f"invalid header value for {name}: {value!r}")

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        values = (self._index or self._lookup()).get(name.lower())
        return default if values is None else values[0]

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        values = (self._index or self._lookup()).get(name.lower())
        return [] if values is None else list(values)

    def add(self, name: str, value: str) -> None:
        """Append a field, after any with the same name."""
        self._check(name, value)
        self._append(name, value)

    def _append(self, name: str, value: str) -> None:
        """Append a checked field; an index built already is kept up to date (a handshake
        adds Via and looks names up again in the same head)."""
        self._items.append((name, value))
        index = self._index
        if index is not None:
            values = index.get(name.lower())
            if values is None:
                index[name.lower()] = [value]
            else:
                values.append(value)

    def set(self, name: str, value: str) -> None:
        """Replace every field named ``name`` with one, at the place of the first."""
        self._check(name, value)
        key = name.lower()
        if key not in self._lookup():  # a new name goes at the end: no pass over the fields
            self._append(name, value)
            return
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
        self._index = None

    def remove(self, name: str) -> None:
        """Remove every field named ``name`` (no error when there is none)."""
        key = name.lower()
        if key not in self._lookup():
            return
        self._items = [item for item in self._items if item[0].lower() != key]
        self._index = None

    def names(self) -> list[str]:
        """The lower-case names of the fields, each once, in the order they first appear."""
        return list(self._lookup())

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name.lower() in self._lookup()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def raw(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> Headers:
        return Headers._valid(list(self._items))

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
        if not self._buf and self._start is None and not self._size:
            head = self._whole(data)
            if head is not None:
                return head
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

    def _whole(self, data: bytes) -> Request | Response | None:
        """The fast path: a head that came whole in one piece with CRLF line ends and
        nothing wrong with it (what clients and servers send) is taken in one pass over its
        lines. None when it is not that simple: the line-by-line parser then takes the same
        bytes, and finds the head's end or says what is wrong."""
        end = data.find(b"\r\n\r\n")
        limits = self.limits
        if end <= 0 or end + 4 > limits.max_head_size:
            return None
        first_end = data.find(b"\r\n")
        first = data[:first_end]
        block = data[first_end:end].decode("latin-1")  # "\r\nName: value" per field
        if block.count("\r\n") > limits.max_headers or _FIELD_BLOCK_RE.fullmatch(block) is None:
            return None
        if self.is_response:
            match = _STATUS_LINE_RE.fullmatch(first)
            if match is None:
                return None
            version, status, reason = match.groups()
            start = (version.decode(), status.decode(), (reason or b"").decode("latin-1"))
        else:
            match = _REQUEST_LINE_RE.fullmatch(first)
            if match is None or len(first) > limits.max_line:
                return None
            method, target, version = match.groups()
            start = (method.decode(), target.decode("latin-1"), version.decode())
        self._fields = _FIELDS_RE.findall(block)
        self._start = start
        self._result = self._build()
        self._leftover = data[end + 4 :]
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
                if method and TOKEN_RE.fullmatch(method) is None:
                    raise self._error(
                        _foreign_protocol(method) or f"malformed request line: {method[:20]!r}"
                    )
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
        if TOKEN_RE.fullmatch(name) is None:
            if name.rstrip(b" \t") != name:
                # RFC 7230 3.2.4: whitespace before the colon must be answered with 400.
                raise self._error(f"whitespace between header name and colon: {name!r}")
            raise self._error(f"invalid header name: {name[:40]!r}")
        value = value.strip(b" \t")
        if FIELD_VALUE_RE.fullmatch(value) is None:
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
            foreign = _foreign_protocol(line)
            if foreign is not None:  # before the other checks: its bytes may look like anything
                raise self._error(foreign)
            parts = line.split(b" ")
            if len(parts) == 3 and _VERSION_RE.fullmatch(parts[2]) is None:
                raise self._error(f"unknown HTTP version: {parts[2][:20]!r}")
            raise self._error(f"malformed request line: {line[:60]!r}")
        method, target, version = match.groups()
        return method.decode(), target.decode("latin-1"), version.decode()

    def _build(self) -> Request | Response:
        assert self._start is not None
        first, second, third = self._start
        headers = Headers._valid(self._fields)
        if self.is_response:
            return Response(first, int(second), third, headers)
        return Request(first, second, third, headers)


# -- serializing -------------------------------------------------------------------------------


def _serialize(start: str, headers: Headers) -> bytes:
    fields = "".join([f"{name}: {value}\r\n" for name, value in headers.raw()])
    return f"{start}\r\n{fields}\r\n".encode("latin-1")


def serialize_request(req: Request) -> bytes:
    """The request head, CRLF line ends, header case and order preserved."""
    return _serialize(f"{req.method} {req.target} {req.version}", req.headers)


def serialize_response(resp: Response) -> bytes:
    """The response head, CRLF line ends, header case and order preserved."""
    return _serialize(f"{resp.version} {resp.status:03d} {resp.reason}", resp.headers)


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


# The first byte of another protocol's opening sent to a plain HTTP port, and what to say.
_FOREIGN_OPENINGS = {
    0x16: "a TLS handshake on a port that serves plain HTTP (no TLS here: use http:// or ws://)",
    0x05: "a SOCKS5 greeting on a port that serves HTTP (not a --mode socks5 listener)",
    0x04: "a SOCKS4 request on a port that serves HTTP (wsproxy speaks SOCKS5 only)",
}


def _foreign_protocol(start: bytes) -> str | None:
    """Why a request that starts with ``start`` is not HTTP, when its first byte names the
    protocol it is (a client pointed at the wrong kind of port), else None."""
    return _FOREIGN_OPENINGS.get(start[0]) if start else None
