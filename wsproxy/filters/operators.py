"""Every ``~name`` operator: what it takes, what it looks at, how it prints.

Flow operators (mitmproxy's, where they overlap): ``~all ~websocket ~http ~u ~d ~m ~c ~h ~hq
~hs``. Message operators: ``~b ~bq ~bs ~from ~opcode ~len ~json`` and, needing a decoder,
``~proto ~event ~op ~topic``. Case as mitmproxy: ``~u``, ``~d`` and ``~m`` ignore case;
header and body regexes do not (write ``(?i)`` for that).
"""

from __future__ import annotations

import fnmatch
import json
import operator
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, AnyStr, ClassVar

from wsproxy.filters.jsonpath import MISSING, JsonPathError, json_equal, lookup, parse_json_test
from wsproxy.filters.lexer import quote
from wsproxy.filters.nodes import FlowTest, Leaf, MessageTest
from wsproxy.filters.subject import FlowFacts, MessageFacts

__all__ = ["OPERATORS", "PROTOCOLS", "ArgumentError"]

# The protocols ``~proto`` knows: the names ``Decoded.protocol`` and ``Decoded.layers`` use
# (wsproxy.decoders.base). A typo is an error at start, not a filter that never matches.
PROTOCOLS = (
    "socketio",
    "engineio",
    "graphql",
    "stomp",
    "mqtt",
    "jsonrpc",
    "json",
    "msgpack",
    "cbor",
    "protobuf",
)
_PROTOCOL_ALIASES = {"socket.io": "socketio", "engine.io": "engineio", "json-rpc": "jsonrpc"}

OPCODES = {"continuation": 0x0, "text": 0x1, "binary": 0x2, "close": 0x8, "ping": 0x9, "pong": 0xA}
_CONTROL = 0x8


class ArgumentError(ValueError):
    """An operator's argument that cannot be used; ``offset`` points into the argument."""

    def __init__(self, problem: str, offset: int = 0) -> None:
        super().__init__(problem)
        self.offset = offset


def _quiet(pattern: AnyStr, flags: int) -> re.Pattern[AnyStr]:
    """``re.compile`` without its FutureWarnings (``[[``: "possible nested set"), which would
    print a line of their own at start."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return re.compile(pattern, flags)


def _compile(arg: str, flags: int) -> re.Pattern[str]:
    try:
        return _quiet(arg, flags)
    except re.error as error:
        raise ArgumentError(f"bad regex {arg!r}: {error.msg}", error.pos or 0) from None


def _headers_text(headers: Any) -> str:
    return "\n".join(f"{name}: {value}" for name, value in headers)


class _Arg(Leaf):
    """An operator with one argument, printed back as it was given (quoted when needed)."""

    arg: str

    def __str__(self) -> str:
        return f"~{self.code} {quote(self.arg)}"


class _Bare(Leaf):
    def __str__(self) -> str:
        return f"~{self.code}"


# -- flow operators ------------------------------------------------------------------------


@dataclass(frozen=True)
class All(_Bare, FlowTest):
    code = "all"
    help = "every flow and message"

    def test_flow(self, flow: FlowFacts) -> bool:
        return True


@dataclass(frozen=True)
class WebSocket(_Bare, FlowTest):
    code = "websocket"
    help = "a WebSocket (not a plain HTTP exchange)"

    def test_flow(self, flow: FlowFacts) -> bool:
        return flow.is_websocket


@dataclass(frozen=True)
class Http(_Bare, FlowTest):
    code = "http"
    help = "a plain HTTP exchange (captures with --capture-http)"

    def test_flow(self, flow: FlowFacts) -> bool:
        return not flow.is_websocket


@dataclass(frozen=True)
class _FlowRegex(_Arg, FlowTest):
    arg: str
    regex: re.Pattern[str] = field(init=False, compare=False, repr=False)
    flags: ClassVar[int] = 0
    metavar = "REGEX"

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", _compile(self.arg, self.flags))


@dataclass(frozen=True)
class Url(_FlowRegex):
    code = "u"
    help = "the URL (ws://host:port/path?query) matches REGEX (a bare word is ~u too)"
    flags = re.IGNORECASE

    def test_flow(self, flow: FlowFacts) -> bool:
        return self.regex.search(flow.url) is not None


@dataclass(frozen=True)
class Domain(_FlowRegex):
    code = "d"
    help = "the server's host name (or the Host header's) matches REGEX"
    flags = re.IGNORECASE

    def test_flow(self, flow: FlowFacts) -> bool:
        if self.regex.search(flow.host):
            return True
        for name, value in flow.request_headers:
            if name.lower() == "host":
                host = value.rsplit(":", 1)[0] if not value.endswith("]") else value
                return self.regex.search(host.strip("[]")) is not None
        return False


@dataclass(frozen=True)
class Method(_FlowRegex):
    code = "m"
    help = "the request method matches REGEX (GET for every WebSocket)"
    flags = re.IGNORECASE

    def test_flow(self, flow: FlowFacts) -> bool:
        return self.regex.search(flow.method) is not None


@dataclass(frozen=True)
class Header(_FlowRegex):
    code = "h"
    help = "a request or response header line ('Name: value') matches REGEX"
    flags = re.MULTILINE

    def test_flow(self, flow: FlowFacts) -> bool:
        return self._search(flow.request_headers) or self._search(flow.response_headers)

    def _search(self, headers: Any) -> bool:
        return headers is not None and self.regex.search(_headers_text(headers)) is not None


@dataclass(frozen=True)
class RequestHeader(Header):
    code = "hq"
    help = "a request header line matches REGEX"

    def test_flow(self, flow: FlowFacts) -> bool:
        return self._search(flow.request_headers)


@dataclass(frozen=True)
class ResponseHeader(Header):
    code = "hs"
    help = "a response header line matches REGEX (false before the response)"

    def test_flow(self, flow: FlowFacts) -> bool:
        return self._search(flow.response_headers)


@dataclass(frozen=True)
class Code(_Arg, FlowTest):
    arg: str
    code = "c"
    metavar = "STATUS"
    help = "the response status is STATUS (101 for an accepted WebSocket)"

    def __post_init__(self) -> None:
        if not (self.arg.isascii() and self.arg.isdigit() and len(self.arg) == 3):
            raise ArgumentError(f"~c takes a 3-digit status, not {self.arg!r}")

    def test_flow(self, flow: FlowFacts) -> bool:
        return flow.status == int(self.arg)


# -- message operators ---------------------------------------------------------------------


@dataclass(frozen=True)
class Body(_Arg, MessageTest):
    """Text messages are searched as text (UTF-8), binary ones as bytes (the regex encoded as
    UTF-8, so ``\\x00`` and ``é`` both mean bytes); ``.`` matches newlines (mitmproxy's)."""

    arg: str
    text: re.Pattern[str] = field(init=False, compare=False, repr=False)
    binary: re.Pattern[bytes] | None = field(init=False, compare=False, repr=False)
    code = "b"
    metavar = "REGEX"
    help = "the message's payload matches REGEX (text as text, binary as bytes)"
    needs = frozenset({"message", "payload"})
    side: ClassVar[bool | None] = None  # from_client required, None for either

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", _compile(self.arg, re.DOTALL))
        try:
            binary: re.Pattern[bytes] | None = _quiet(self.arg.encode("utf-8"), re.DOTALL)
        except re.error:  # a pattern only text can take (\N{...}, (?u)): binary via latin-1
            binary = None
        object.__setattr__(self, "binary", binary)

    def test_message(self, message: MessageFacts) -> bool:
        if self.side is not None and message.from_client is not self.side:
            return False
        payload = message.payload
        if _kind(message) != OPCODES["binary"]:
            return self.text.search(payload.decode("utf-8", "replace")) is not None
        if self.binary is not None:
            return self.binary.search(payload) is not None
        return self.text.search(payload.decode("latin-1")) is not None


@dataclass(frozen=True)
class ClientBody(Body):
    code = "bq"
    help = "a message from the client whose payload matches REGEX"
    side = True


@dataclass(frozen=True)
class ServerBody(Body):
    code = "bs"
    help = "a message from the server whose payload matches REGEX"
    side = False


def _kind(message: MessageFacts) -> int:
    """What the payload reads as: a continuation frame's is its message's."""
    return message.message_opcode if message.opcode == 0 else message.opcode


@dataclass(frozen=True)
class From(_Arg, MessageTest):
    arg: str
    code = "from"
    metavar = "client|server"
    help = "the message was sent by the client or by the server"

    def __post_init__(self) -> None:
        if self.arg not in ("client", "server"):
            raise ArgumentError(f"~from takes client or server, not {self.arg!r}")

    def test_message(self, message: MessageFacts) -> bool:
        return message.from_client is (self.arg == "client")


@dataclass(frozen=True)
class OpcodeIs(_Arg, MessageTest):
    arg: str
    code = "opcode"
    metavar = "NAME"
    help = "text, binary (a message and its continuation frames), continuation, ping, pong, close"

    def __post_init__(self) -> None:
        if self.arg not in OPCODES:
            raise ArgumentError(f"~opcode takes {', '.join(OPCODES)}, not {self.arg!r}")

    def test_message(self, message: MessageFacts) -> bool:
        wanted = OPCODES[self.arg]
        if wanted == 0 or wanted >= _CONTROL:
            return message.opcode == wanted
        return _kind(message) == wanted


_SIZE = re.compile(r"(<=|>=|<|>|=)?(\d+)([kmg]i?b?|b)?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_COMPARE: dict[str, Callable[[int, int], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
}


@dataclass(frozen=True)
class Length(_Arg, MessageTest):
    arg: str
    limit: int = field(init=False, compare=False, repr=False)
    compare: Callable[[int, int], bool] = field(init=False, compare=False, repr=False)
    code = "len"
    metavar = ">N|<N|=N"
    needs = frozenset({"message", "payload"})  # a compressed frame's size in the clear
    help = "the payload's size: >N, <N, >=N, <=N, =N (or N) bytes; k/KiB, m/MiB, g/GiB"

    def __post_init__(self) -> None:
        found = _SIZE.fullmatch(self.arg)
        if found is None:
            raise ArgumentError(f"~len takes >N, <N, =N (e.g. >1k, <=512), not {self.arg!r}")
        sign, number, unit = found.groups()
        object.__setattr__(self, "limit", int(number) * _UNITS[(unit or "").lower()[:1]])
        object.__setattr__(self, "compare", _COMPARE[sign or "="])

    def test_message(self, message: MessageFacts) -> bool:
        return self.compare(message.length, self.limit)


@dataclass(frozen=True)
class Json(_Arg, MessageTest):
    arg: str
    path: tuple[str | int, ...] = field(init=False, compare=False, repr=False)
    has_value: bool = field(init=False, compare=False, repr=False)
    value: Any = field(init=False, compare=False, repr=False)
    code = "json"
    metavar = "PATH=VALUE"
    help = "the JSON text's (else decoded) value at PATH (a.b[0].c) is VALUE; PATH alone: exists"
    needs = frozenset({"message", "payload", "decoding"})

    def __post_init__(self) -> None:
        try:
            path, has_value, value = parse_json_test(self.arg)
        except JsonPathError as error:
            raise ArgumentError(f"~json {self.arg!r}: {error}", error.offset) from None
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "has_value", has_value)
        object.__setattr__(self, "value", value)

    def test_message(self, message: MessageFacts) -> bool:
        """The message's JSON as written when it is a JSON object or array (a JSON-RPC call,
        a GraphQL message: paths name what one reads on the wire), else its decoded value
        (Socket.IO arguments, a msgpack or CBOR value), else whatever JSON it is."""
        try:
            document = json.loads(message.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            document = MISSING
        if not isinstance(document, dict | list):
            decoded = message.decoded()
            if decoded is not None:
                document = decoded.value
            elif document is MISSING:
                return False
        found = lookup(document, self.path)
        if found is MISSING:
            return False
        return not self.has_value or json_equal(found, self.value)


class _DecodedTest(_Arg, MessageTest):
    needs = frozenset({"message", "payload", "decoding"})


@dataclass(frozen=True)
class Proto(_DecodedTest):
    arg: str
    code = "proto"
    metavar = "NAME"
    help = f"the message decodes as NAME ({', '.join(PROTOCOLS)}), or NAME is a layer under it"

    def __post_init__(self) -> None:
        name = _PROTOCOL_ALIASES.get(self.arg.lower(), self.arg.lower())
        if name not in PROTOCOLS:
            raise ArgumentError(f"~proto takes {', '.join(PROTOCOLS)}, not {self.arg!r}")

    def test_message(self, message: MessageFacts) -> bool:
        decoded = message.decoded()
        if decoded is None:
            return False
        name = _PROTOCOL_ALIASES.get(self.arg.lower(), self.arg.lower())
        return decoded.protocol == name or name in decoded.layers


@dataclass(frozen=True)
class _Glob(_DecodedTest):
    """A name matched whole and case-sensitively; ``*``, ``?`` and ``[...]`` as in a shell."""

    arg: str
    pattern: re.Pattern[str] = field(init=False, compare=False, repr=False)
    metavar = "NAME"

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", _quiet(fnmatch.translate(self.arg), 0))

    def _test(self, value: str | None) -> bool:
        return value is not None and self.pattern.match(value) is not None


@dataclass(frozen=True)
class Event(_Glob):
    code = "event"
    help = "a Socket.IO event named NAME (glob: chat*, ?ing)"

    def test_message(self, message: MessageFacts) -> bool:
        decoded = message.decoded()
        return decoded is not None and self._test(decoded.event)


@dataclass(frozen=True)
class Operation(_Glob):
    code = "op"
    help = "a GraphQL operation named NAME (glob)"

    def test_message(self, message: MessageFacts) -> bool:
        decoded = message.decoded()
        return decoded is not None and self._test(decoded.operation)


@dataclass(frozen=True)
class Topic(_DecodedTest):
    """MQTT's topic filter rules (MQTT 3.1.1 section 4.7): levels split at ``/``, ``+`` is one
    whole level, ``#`` (last) the rest including none; a topic starting with ``$`` is not
    matched by a wildcard in the first level. STOMP destinations match the same way."""

    arg: str
    levels: tuple[str, ...] = field(init=False, compare=False, repr=False)
    code = "topic"
    metavar = "PATTERN"
    help = "an MQTT topic or STOMP destination matching PATTERN (+ one level, # the rest)"

    def __post_init__(self) -> None:
        levels = tuple(self.arg.split("/"))
        offset = 0
        for number, level in enumerate(levels):
            if ("#" in level and (level != "#" or number != len(levels) - 1)) or (
                "+" in level and level != "+"
            ):
                raise ArgumentError(
                    f"~topic {self.arg!r}: '+' must be a whole level and '#' the whole last one",
                    offset,
                )
            offset += len(level) + 1
        object.__setattr__(self, "levels", levels)

    def test_message(self, message: MessageFacts) -> bool:
        decoded = message.decoded()
        if decoded is None or decoded.topic is None:
            return False
        return topic_matches(self.levels, decoded.topic)


def topic_matches(levels: tuple[str, ...], topic: str) -> bool:
    names = topic.split("/")
    if topic.startswith("$") and levels[0] in ("+", "#"):
        return False
    for number, level in enumerate(levels):
        if level == "#":
            return True
        if number >= len(names) or (level != "+" and level != names[number]):
            return False
    return len(names) == len(levels)


OPERATORS: dict[str, type[Leaf]] = {
    cls.code: cls
    for cls in (
        All,
        WebSocket,
        Http,
        Url,
        Domain,
        Method,
        Code,
        Header,
        RequestHeader,
        ResponseHeader,
        Body,
        ClientBody,
        ServerBody,
        From,
        OpcodeIs,
        Length,
        Proto,
        Event,
        Operation,
        Topic,
        Json,
    )
}
