"""The server side of a SOCKS5 negotiation (RFC 1928) with username/password authentication
(RFC 1929), sans-I/O: bytes in, commands out.

The shell feeds what the client sent (``receive_data``), its EOF (``receive_eof``) and the end
of the handshake time (``timed_out``), and carries out the commands it gets back, in order:

* ``Send(data)``: write these bytes to the client;
* ``Authenticate(username, password)``: check them, answer with ``authenticated(ok)``;
* ``Connect(host, port, address_type)``: connect there, answer with ``connected(bound host,
  bound port)`` (the upstream socket's own address, which the success reply names) or
  ``connect_failed(reply, reason)``;
* ``Fail(reply, reason)``: log the reason and close (its reply, if any, was in a ``Send``
  before it); ``client_gone`` says the client ended it, not a protocol error;
* ``Established(data)``: the tunnel is up; ``data`` is what the client sent past its request.

The negotiation is one ``State``, changed only through the table ``TRANSITIONS``::

    GREETING --no authentication chosen--> REQUEST
    GREETING --username/password chosen--> AUTH --credentials--> AUTHENTICATING
    AUTHENTICATING --accepted--> REQUEST --CONNECT--> CONNECTING --connected--> ESTABLISHED
    any state before ESTABLISHED --refused--> CLOSED

The rules of this file:

* **Byte by byte.** Each reading state has a parser that looks at the bytes so far and says
  "need more", hands back the message, or refuses as soon as a byte is wrong (a wrong version
  byte is refused alone, without waiting for the rest). The longest message is 515 bytes
  (RFC 1929 credentials), so parsing again from the start of a message costs nothing, and
  nothing else is ever buffered: the shell stops feeding once it has a ``Connect``.
* **A refusal answers where the client waits for an answer**: ``05 FF`` when no offered
  method is acceptable (RFC 1928 3), status ``01`` for failed authentication (RFC 1929 2),
  a reply with its code for a bad request (RFC 1928 6: 01 general failure, 07 command not
  supported, 08 address type not supported). A greeting that is not SOCKS5 gets nothing, but
  SOCKS4's "request rejected" (91) for a SOCKS4 client, which then says so instead of
  "connection closed".
* **Credentials are data, never text of a reason**: ``Authenticate`` leaves the password out
  of its repr, and no reason names the username or the password.
"""

from __future__ import annotations

import enum
import errno
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = [
    "TRANSITIONS",
    "AddressType",
    "Authenticate",
    "Connect",
    "Established",
    "Fail",
    "Method",
    "Negotiation",
    "Output",
    "Reply",
    "RequestCommand",
    "Send",
    "State",
    "Step",
    "reply",
    "reply_for_errno",
]

VERSION = 5
AUTH_VERSION = 1  # RFC 1929 2: the username/password subnegotiation's own version
SOCKS4_REJECTED = bytes([0, 91, 0, 0, 0, 0, 0, 0])  # SOCKS4: VN 0, CD 91, port and IP zero

T = TypeVar("T")


class Method(enum.IntEnum):
    """RFC 1928 3: authentication methods."""

    NO_AUTHENTICATION = 0x00
    GSSAPI = 0x01
    USERNAME_PASSWORD = 0x02
    NO_ACCEPTABLE = 0xFF


class RequestCommand(enum.IntEnum):
    """RFC 1928 4: what a request asks for; only CONNECT is served."""

    CONNECT = 0x01
    BIND = 0x02
    UDP_ASSOCIATE = 0x03


class AddressType(enum.IntEnum):
    """RFC 1928 5: how the destination is written."""

    IPV4 = 0x01
    DOMAIN = 0x03
    IPV6 = 0x04


class Reply(enum.IntEnum):
    """RFC 1928 6: the REP field of a reply."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


# -- commands to the shell -------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Authenticate:
    """RFC 1929 credentials as sent (bytes: the RFC names no encoding)."""

    username: bytes
    password: bytes = field(repr=False)


@dataclass(frozen=True)
class Connect:
    """A CONNECT request: ``host`` is a domain name or an IP address in text form."""

    host: str
    port: int
    address_type: AddressType


@dataclass(frozen=True)
class Fail:
    """The negotiation is over: log ``reason`` and close. ``reply`` is the REP code the
    client was sent, None when no reply went out (or it was not a request's reply)."""

    reply: Reply | None
    reason: str
    client_gone: bool = False


@dataclass(frozen=True)
class Established:
    """The tunnel is up; ``data`` is what the client sent past its request (its first bytes)."""

    data: bytes


Output = Send | Authenticate | Connect | Fail | Established


def reply(code: Reply, host: str = "0.0.0.0", port: int = 0) -> bytes:
    """A reply (RFC 1928 6) naming ``host:port`` (an IP address: the bound address)."""
    ip = ipaddress.ip_address(host.split("%", 1)[0])  # a scope id is no part of the address
    atyp = AddressType.IPV4 if ip.version == 4 else AddressType.IPV6
    return bytes([VERSION, code, 0, atyp]) + ip.packed + port.to_bytes(2, "big")


# RFC 1928 6: the reply for each way a TCP connection to the destination fails (the errno
# the shell's connect raised); anything else is a general failure.
_ERRNO_REPLIES: dict[int, Reply] = {
    errno.ECONNREFUSED: Reply.CONNECTION_REFUSED,
    errno.ENETUNREACH: Reply.NETWORK_UNREACHABLE,
    errno.EHOSTUNREACH: Reply.HOST_UNREACHABLE,
    errno.EHOSTDOWN: Reply.HOST_UNREACHABLE,
    errno.EADDRNOTAVAIL: Reply.HOST_UNREACHABLE,
    errno.ETIMEDOUT: Reply.TTL_EXPIRED,  # the kernel gave up: what SOCKS servers answer
    errno.EACCES: Reply.NOT_ALLOWED,  # a local firewall rule refused it
    errno.EPERM: Reply.NOT_ALLOWED,
}


def reply_for_errno(number: int | None) -> Reply:
    """The reply for a connect that failed with ``number`` (None: no errno, as when several
    addresses of a name failed differently)."""
    return _ERRNO_REPLIES.get(number or 0, Reply.GENERAL_FAILURE)


# -- states ----------------------------------------------------------------------------------


class State(enum.Enum):
    GREETING = "greeting"
    AUTH = "username/password"
    AUTHENTICATING = "authenticating"
    REQUEST = "request"
    CONNECTING = "connecting"
    ESTABLISHED = "established"
    CLOSED = "closed"


class Step(enum.Enum):
    CHOSE_NO_AUTHENTICATION = "chose no authentication"
    CHOSE_PASSWORD = "chose username/password"
    CREDENTIALS = "credentials"
    ACCEPTED = "accepted"
    REQUESTED = "requested"
    CONNECTED = "connected"
    REFUSED = "refused"


_READING = (State.GREETING, State.AUTH, State.REQUEST)
_WAITING = (State.AUTHENTICATING, State.CONNECTING)

TRANSITIONS: dict[tuple[State, Step], State] = {
    (State.GREETING, Step.CHOSE_NO_AUTHENTICATION): State.REQUEST,
    (State.GREETING, Step.CHOSE_PASSWORD): State.AUTH,
    (State.AUTH, Step.CREDENTIALS): State.AUTHENTICATING,
    (State.AUTHENTICATING, Step.ACCEPTED): State.REQUEST,
    (State.REQUEST, Step.REQUESTED): State.CONNECTING,
    (State.CONNECTING, Step.CONNECTED): State.ESTABLISHED,
    **{(state, Step.REFUSED): State.CLOSED for state in (*_READING, *_WAITING)},
}

# What a client waiting in each reading state is told when its message cannot be served:
# nothing before a method was chosen, then the subnegotiation's failure status, then a reply.
_FAILURE_ANSWERS: dict[State, bytes] = {
    State.GREETING: b"",
    State.AUTH: bytes([AUTH_VERSION, 0x01]),
    State.REQUEST: reply(Reply.GENERAL_FAILURE),
}


class _Refused(Exception):
    """Raised by a parser: the answer to send, the reply code it holds, the reason to log."""

    def __init__(self, answer: bytes, code: Reply | None, reason: str) -> None:
        super().__init__(reason)
        self.answer = answer
        self.code = code
        self.reason = reason


def _request_refused(code: Reply, reason: str) -> _Refused:
    return _Refused(reply(code), code, reason)


# -- parsers: None until the message is complete, then (its length, its content) -------------


def _parse_greeting(buf: bytes) -> tuple[int, frozenset[int]] | None:
    """RFC 1928 3: VER NMETHODS METHODS."""
    if not buf:
        return None
    if buf[0] != VERSION:
        raise _not_socks5(buf[0])
    if len(buf) < 2 or len(buf) < 2 + buf[1]:
        return None
    end = 2 + buf[1]
    return end, frozenset(buf[2:end])


def _not_socks5(version: int) -> _Refused:
    """A first byte that is not 5, with a guess at what the client speaks instead."""
    if version == 4:
        return _Refused(SOCKS4_REJECTED, None, "greeting: SOCKS4 is not supported, use SOCKS5")
    if 0x41 <= version <= 0x5A:  # an upper-case letter: GET, CONNECT, POST ...
        return _Refused(
            b"", None, "greeting: an HTTP request, not SOCKS5 (this listener is --mode socks5)"
        )
    if version == 0x16:  # RFC 8446 5.1: ContentType handshake
        return _Refused(b"", None, "greeting: a TLS ClientHello, not SOCKS5")
    return _Refused(b"", None, f"greeting: version {version:#04x}, not 5")


def _parse_credentials(buf: bytes) -> tuple[int, Authenticate] | None:
    """RFC 1929 2: VER ULEN UNAME PLEN PASSWD (lengths 0-255; an empty one is compared too)."""
    if not buf:
        return None
    if buf[0] != AUTH_VERSION:
        raise _Refused(
            _FAILURE_ANSWERS[State.AUTH],
            None,
            f"username/password: version {buf[0]:#04x}, not 1 (RFC 1929)",
        )
    if len(buf) < 2 or len(buf) < 3 + buf[1]:
        return None
    plen_at = 2 + buf[1]
    end = plen_at + 1 + buf[plen_at]
    if len(buf) < end:
        return None
    return end, Authenticate(bytes(buf[2:plen_at]), bytes(buf[plen_at + 1 : end]))


# RFC 1123 2.1 host names, with "_" (seen in real names) and an optional final dot.
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")
_ADDRESS_LENGTHS = {AddressType.IPV4: 4, AddressType.IPV6: 16}
_ADDRESS_TYPES = frozenset(AddressType)
_COMMAND_NAMES: dict[int, str] = {
    RequestCommand.BIND: "BIND",
    RequestCommand.UDP_ASSOCIATE: "UDP ASSOCIATE",
}


def _parse_request(buf: bytes) -> tuple[int, Connect] | None:
    """RFC 1928 4: VER CMD RSV ATYP DST.ADDR DST.PORT."""
    if not buf:
        return None
    if buf[0] != VERSION:
        raise _request_refused(Reply.GENERAL_FAILURE, f"request: version {buf[0]:#04x}, not 5")
    if len(buf) < 4:
        return None
    command, reserved, atyp = buf[1], buf[2], buf[3]
    if reserved != 0:
        raise _request_refused(
            Reply.GENERAL_FAILURE, f"request: reserved byte {reserved:#04x}, not 0"
        )
    if atyp not in _ADDRESS_TYPES:
        raise _request_refused(
            Reply.ADDRESS_TYPE_NOT_SUPPORTED, f"request: unknown address type {atyp:#04x}"
        )
    address_type = AddressType(atyp)
    start = 4
    if address_type is AddressType.DOMAIN:
        if len(buf) < 5:
            return None
        start, length = 5, buf[4]
    else:
        length = _ADDRESS_LENGTHS[address_type]
    end = start + length
    if len(buf) < end + 2:
        return None
    host = _host(address_type, bytes(buf[start:end]))
    port = int.from_bytes(buf[end : end + 2], "big")
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if command != RequestCommand.CONNECT:
        name = _COMMAND_NAMES.get(command, f"command {command:#04x}")
        raise _request_refused(
            Reply.COMMAND_NOT_SUPPORTED, f"request: {name} {where} is not supported, only CONNECT"
        )
    if port == 0:
        raise _request_refused(Reply.GENERAL_FAILURE, f"request: CONNECT {where}: port 0")
    return end + 2, Connect(host, port, address_type)


def _host(address_type: AddressType, raw: bytes) -> str:
    """DST.ADDR as text; a domain name must be a host name (or an IP address written out)."""
    if address_type is not AddressType.DOMAIN:
        return str(ipaddress.ip_address(raw))
    if not raw:
        raise _request_refused(Reply.GENERAL_FAILURE, "request: an empty domain name")
    name = raw.decode("ascii", "replace")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    if not all(_HOST_NAME.fullmatch(label) for label in labels):
        raise _request_refused(Reply.HOST_UNREACHABLE, f"request: {name!r} is not a host name")
    return name


# -- the negotiation -------------------------------------------------------------------------


class Negotiation:
    """One client's SOCKS5 negotiation. ``require_password``: only RFC 1929 username/password
    is accepted (``--proxyauth``), and no authentication is no longer offered."""

    def __init__(self, *, require_password: bool) -> None:
        self.state = State.GREETING
        self._method = Method.USERNAME_PASSWORD if require_password else Method.NO_AUTHENTICATION
        self._buffer = bytearray()

    # -- inputs --------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Output]:
        """Bytes from the client. While the shell authenticates or connects, they wait (they
        are what comes next: the request, or the tunnel's first bytes)."""
        self._refuse_in(State.ESTABLISHED, "data after the tunnel is up belongs to the tunnel")
        if self.state is State.CLOSED:
            return []
        self._buffer += data
        return self._parse()

    def receive_eof(self) -> list[Output]:
        """The client closed its side before the tunnel was up."""
        self._refuse_in(State.ESTABLISHED, "EOF after the tunnel is up belongs to the tunnel")
        if self.state is State.CLOSED:
            return []
        if self.state in _WAITING:
            return self._fail(None, f"closed the connection while {self.state.value}", True)
        if self.state is State.GREETING and not self._buffer:
            return self._fail(None, "closed the connection before its greeting", True)
        return self._abandon(f"closed the connection mid-{self.state.value}", client_gone=True)

    def timed_out(self) -> list[Output]:
        """The handshake time ran out while a message was still being read."""
        if self.state not in _READING:
            raise RuntimeError(f"timed_out() in state {self.state.name}: nothing was being read")
        return self._abandon(f"no complete {self.state.value} in time")

    def authenticated(self, ok: bool) -> list[Output]:
        """The shell's verdict on ``Authenticate``."""
        self._expect(State.AUTHENTICATING, "authenticated()")
        if not ok:
            answer = Send(_FAILURE_ANSWERS[State.AUTH])
            return [answer, *self._fail(None, "username/password: wrong username or password")]
        self._step(Step.ACCEPTED)
        return [Send(bytes([AUTH_VERSION, 0x00])), *self._parse()]

    def connected(self, host: str, port: int) -> list[Output]:
        """The upstream connection is up; ``host:port`` is its local address."""
        self._expect(State.CONNECTING, "connected()")
        self._step(Step.CONNECTED)
        data = bytes(self._buffer)
        self._buffer.clear()
        return [Send(reply(Reply.SUCCEEDED, host, port)), Established(data)]

    def connect_failed(self, code: Reply, reason: str) -> list[Output]:
        """The upstream connection could not be had: ``code`` says why to the client."""
        self._expect(State.CONNECTING, "connect_failed()")
        if code is Reply.SUCCEEDED:
            raise ValueError("connect_failed() needs a failure code")
        return [Send(reply(code)), *self._fail(code, reason)]

    # -- inside ----------------------------------------------------------------------------

    def _parse(self) -> list[Output]:
        """Every complete message in the buffer, as far as the state lets parsing go."""
        out: list[Output] = []
        while (read := _READERS.get(self.state)) is not None:
            try:
                outputs = read(self)
            except _Refused as refused:
                if refused.answer:
                    out.append(Send(refused.answer))
                return out + self._fail(refused.code, refused.reason)
            if outputs is None:  # the message is not complete yet
                break
            out += outputs
        return out

    def _take(self, parsed: tuple[int, T] | None) -> T | None:
        """A parser's message, its bytes taken off the buffer; None while incomplete."""
        if parsed is None:
            return None
        length, message = parsed
        del self._buffer[:length]
        return message

    def _read_greeting(self) -> list[Output] | None:
        offered = self._take(_parse_greeting(bytes(self._buffer)))
        return None if offered is None else self._choose(offered)

    def _read_credentials(self) -> list[Output] | None:
        credentials = self._take(_parse_credentials(bytes(self._buffer)))
        if credentials is None:
            return None
        self._step(Step.CREDENTIALS)
        return [credentials]

    def _read_request(self) -> list[Output] | None:
        request = self._take(_parse_request(bytes(self._buffer)))
        if request is None:
            return None
        self._step(Step.REQUESTED)
        return [request]

    def _choose(self, offered: frozenset[int]) -> list[Output]:
        """RFC 1928 3: the one method this proxy takes, or X'FF' if the client lacks it."""
        if self._method in offered:
            chosen = Step.CHOSE_PASSWORD
            if self._method is Method.NO_AUTHENTICATION:
                chosen = Step.CHOSE_NO_AUTHENTICATION
            self._step(chosen)
            return [Send(bytes([VERSION, self._method]))]
        names = ", ".join(_method_name(m) for m in sorted(offered)) or "none"
        wanted = "username/password (--proxyauth is set)"
        if self._method is Method.NO_AUTHENTICATION:
            wanted = "no authentication (no --proxyauth is set)"
        answer = Send(bytes([VERSION, Method.NO_ACCEPTABLE]))
        return [answer, *self._fail(None, f"greeting: offers {names}; this proxy takes {wanted}")]

    def _abandon(self, reason: str, *, client_gone: bool = False) -> list[Output]:
        """Give up mid-message, telling the client where it waits for an answer."""
        answer = _FAILURE_ANSWERS[self.state]
        code = Reply.GENERAL_FAILURE if self.state is State.REQUEST else None
        got = len(self._buffer)
        detail = f"{reason} ({got} byte{'s' if got != 1 else ''} of it)"
        sent: list[Output] = [Send(answer)] if answer else []
        return [*sent, *self._fail(code, detail, client_gone)]

    def _fail(self, code: Reply | None, reason: str, client_gone: bool = False) -> list[Output]:
        self._step(Step.REFUSED)
        self._buffer.clear()
        return [Fail(code, reason, client_gone)]

    def _step(self, step: Step) -> None:
        self.state = TRANSITIONS[(self.state, step)]

    def _expect(self, state: State, call: str) -> None:
        if self.state is not state:
            raise RuntimeError(f"{call} in state {self.state.name}, not {state.name}")

    def _refuse_in(self, state: State, why: str) -> None:
        if self.state is state:
            raise RuntimeError(f"in state {state.name}: {why}")


# The reading states and what reads each one's message.
_READERS: dict[State, Callable[[Negotiation], list[Output] | None]] = {
    State.GREETING: Negotiation._read_greeting,
    State.AUTH: Negotiation._read_credentials,
    State.REQUEST: Negotiation._read_request,
}

_METHOD_NAMES: dict[int, str] = {
    Method.NO_AUTHENTICATION: "no authentication",
    Method.GSSAPI: "GSSAPI",
    Method.USERNAME_PASSWORD: "username/password",
}


def _method_name(method: int) -> str:
    return _METHOD_NAMES.get(method, f"method {method:#04x}")
