"""STOMP 1.0, 1.1 and 1.2 over WebSocket (subprotocols ``v10.stomp``, ``v11.stomp``,
``v12.stomp``): frames as command, headers and body.

The grammar is STOMP 1.2's "Augmented BNF" section::

    frame  = command EOL *( header EOL ) EOL *OCTET NULL *( EOL )
    EOL    = [CR] LF
    header = header-name ":" header-value

A body ends at the ``content-length`` header's count (then a NUL must follow) or else at the
first NUL. Header escapes (``\\r \\n \\c \\\\``) are those of the connection's version: 1.2 has
all four, 1.1 all but ``\\r``, 1.0 none, and CONNECT/CONNECTED frames never escape ("Value
Encoding"); an undefined escape makes the frame malformed. The first of repeated headers is
the one that counts ("Repeated Header Entries"). A WebSocket message of EOLs alone is a
heart-beat. One message may carry several frames, and a frame split over messages is joined
(per direction, bounded by ``MAX_PENDING``).

Round trip: encode gives back the bytes decoded, line endings and trailing EOLs included,
except that a 1.1/1.2 header value written with a raw ``:`` keeps it raw only where the
frame had one (``raw_colons``), and a frame joined from several messages cannot be re-encoded
into one of them (encode says None).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wsproxy.decoders.base import Decoded, Decoder, DecoderFactory, Hints
from wsproxy.decoders.preview import REDACTED, clip, size

__all__ = ["StompDecoder", "StompFactory"]

SUBPROTOCOLS = {"v10.stomp": "1.0", "v11.stomp": "1.1", "v12.stomp": "1.2"}
CLIENT_COMMANDS = frozenset(
    {"CONNECT", "STOMP", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "BEGIN", "COMMIT", "ABORT", "ACK",
     "NACK", "DISCONNECT"}
)  # fmt: skip
SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
COMMANDS = CLIENT_COMMANDS | SERVER_COMMANDS
UNESCAPED_FRAMES = frozenset({"CONNECT", "CONNECTED"})  # 1.2 "Value Encoding"
SECRET_HEADERS = frozenset({"passcode"})

# A frame split across WebSocket messages is held until its NUL, up to this much; past it
# the connection's pending bytes are dropped (memory bounded, the messages still pass).
MAX_PENDING = 1 << 20

_ESCAPES = {"1.0": {}, "1.1": {"n": "\n", "c": ":", "\\": "\\"}}
_ESCAPES["1.2"] = {**_ESCAPES["1.1"], "r": "\r"}
_ESCAPE_RE = re.compile(r"\\(.?)", re.DOTALL)
_HEARTBEAT_RE = re.compile(rb"(?:\r?\n)+")


class Malformed(Exception):
    """Inside this module only: the bytes are not a STOMP frame (decode says None)."""


class Incomplete(Exception):
    """Inside this module only: the bytes are the start of a frame, the rest yet to come."""


@dataclass
class Frame:
    """One STOMP frame as it was on the wire."""

    command: str
    headers: list[tuple[str, str]]
    body: bytes
    eol: str  # "\n" or "\r\n": the frame's line ending ("mixed" writes "\n")
    trailer: bytes  # the EOLs after the NUL
    raw_colons: bool  # a header value held an unescaped ':'
    has_length: bool  # the frame carried content-length

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


def _unescape(text: str, escapes: dict[str, str]) -> str:
    if not escapes or "\\" not in text:
        return text

    def one(match: re.Match[str]) -> str:
        try:
            return escapes[match.group(1)]
        except KeyError:
            raise Malformed(f"undefined escape \\{match.group(1)}") from None

    return _ESCAPE_RE.sub(one, text)


def _escape(text: str, version: str, colons: bool) -> str:
    if version == "1.0":
        return text
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    if version == "1.2":
        text = text.replace("\r", "\\r")
    return text.replace(":", "\\c") if colons else text


def _line(data: bytes, pos: int) -> tuple[bytes, bytes, int]:
    """The line at ``pos`` without its EOL, the EOL, and where the next line starts."""
    end = data.find(b"\n", pos)
    if end < 0:
        raise Incomplete
    if end > pos and data[end - 1] == 0x0D:
        return data[pos : end - 1], b"\r\n", end + 1
    return data[pos:end], b"\n", end + 1


def parse_frame(data: bytes, pos: int, version: str) -> tuple[Frame, int]:
    """The frame starting at ``pos`` and where the next one starts."""
    if data.find(b"\n", pos) < 0:
        rest = data[pos:].rstrip(b"\r")
        if not any(command.encode().startswith(rest) for command in COMMANDS):
            raise Malformed("not the start of a STOMP command")
    raw, eol, pos = _line(data, pos)
    command = raw.decode("ascii", "replace")
    if command not in COMMANDS:
        raise Malformed(f"not a STOMP command: {clip(command, 20)!r}")
    escapes = {} if command in UNESCAPED_FRAMES else _ESCAPES[version]
    eols = {eol}
    headers: list[tuple[str, str]] = []
    raw_colons = False
    while True:
        raw, eol, pos = _line(data, pos)
        eols.add(eol)
        if not raw:
            break
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed("a header is not UTF-8") from None
        name, colon, value = text.partition(":")
        if not colon:
            raise Malformed("a header line without ':'")
        raw_colons |= ":" in value and bool(escapes)
        headers.append((_unescape(name, escapes), _unescape(value, escapes)))
    frame = Frame(command, headers, b"", eols.pop().decode() if len(eols) == 1 else "mixed", b"",
                  raw_colons, False)  # fmt: skip
    length = frame.header("content-length")
    if length is not None:
        if not length.isdigit() or not length.isascii():
            raise Malformed(f"content-length is not a number: {clip(length, 20)!r}")
        end = pos + int(length)
        if len(data) <= end:
            raise Incomplete
        if data[end] != 0:
            raise Malformed("no NUL after content-length bytes")
        frame.has_length = True
    else:
        end = data.find(b"\0", pos)
        if end < 0:
            raise Incomplete
    frame.body = data[pos:end]
    trailer = _HEARTBEAT_RE.match(data, end + 1)
    next_pos = trailer.end() if trailer else end + 1
    frame.trailer = data[end + 1 : next_pos]
    return frame, next_pos


def serialize_frame(frame: Frame, version: str) -> bytes:
    """The frame's bytes (content-length set to the body's length when the frame had one,
    or added when the body holds a NUL)."""
    escaped = frame.command not in UNESCAPED_FRAMES
    eol = "\n" if frame.eol == "mixed" else frame.eol
    headers = list(frame.headers)
    has_length = frame.has_length or b"\0" in frame.body
    if has_length:
        index = next((i for i, (k, _) in enumerate(headers) if k == "content-length"), None)
        if index is None:
            headers.append(("content-length", str(len(frame.body))))
        else:
            headers[index] = ("content-length", str(len(frame.body)))
    lines = [frame.command]
    for name, value in headers:
        if escaped:
            name = _escape(name, version, True)
            value = _escape(value, version, not frame.raw_colons)
        lines.append(f"{name}:{value}")
    head = eol.join(lines) + eol + eol
    return head.encode("utf-8") + frame.body + b"\0" + frame.trailer


def _body_value(body: bytes) -> str | bytes:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body


_ID_HEADERS = ("id", "message-id", "receipt-id", "receipt")
_SHOWN = {  # headers a summary names beside the command and destination
    "CONNECT": ("accept-version", "host"),
    "STOMP": ("accept-version", "host"),
    "CONNECTED": ("version",),
    "SUBSCRIBE": ("id",),
    "UNSUBSCRIBE": ("id",),
    "ACK": ("id",),
    "NACK": ("id",),
    "RECEIPT": ("receipt-id",),
    "ERROR": ("message",),
    "BEGIN": ("transaction",),
    "COMMIT": ("transaction",),
    "ABORT": ("transaction",),
}
_WITH_BODY = frozenset({"SEND", "MESSAGE", "ERROR"})


def _summary(frame: Frame) -> str:
    parts = ["stomp", frame.command]
    destination = frame.header("destination")
    if destination is not None:
        parts.append(clip(destination, 60))
    for name in _SHOWN.get(frame.command, ()):
        value = frame.header(name)
        if value is not None:
            parts.append(f"{name}={clip(value, 40)}")
    if frame.body or frame.command in _WITH_BODY:
        parts.append(size(len(frame.body)))
    return " ".join(parts)


class StompDecoder:
    """The STOMP decoder of one connection: its version (from the subprotocol, then the
    CONNECTED frame) and, per direction, the start of a frame still to be completed."""

    protocol = "stomp"

    def __init__(self, version: str = "1.2") -> None:
        self.version = version
        self._pending: dict[bool, bytes] = {True: b"", False: b""}
        self._passcode: str | None = None

    def decode(self, payload: bytes, *, text: bool, from_client: bool) -> Decoded | None:
        pending = self._pending[from_client]
        self._pending[from_client] = b""
        if not pending and _HEARTBEAT_RE.fullmatch(payload):
            return Decoded("stomp", "HEARTBEAT", summary="stomp heart-beat",
                           fields={"eols": payload.decode("ascii")})  # fmt: skip
        frames = self._frames(pending + payload, from_client)
        if frames is None and pending:  # what was pending was no frame's start after all
            pending = b""
            frames = self._frames(payload, from_client)
        if not frames:
            return None
        decoded = [self._decoded(frame) for frame in frames]
        decoded[0].fields["joined"] = bool(pending)
        if len(decoded) > 1:
            decoded[0].fields["more"] = decoded[1:]
            decoded[0].summary += f" (+{len(decoded) - 1} frames)"
        return decoded[0]

    def _frames(self, data: bytes, from_client: bool) -> list[Frame] | None:
        """The whole frames in ``data`` (the rest kept pending), None if it is no STOMP."""
        frames: list[Frame] = []
        pos = 0
        try:
            while pos < len(data):
                frame, pos = parse_frame(data, pos, self.version)
                frames.append(frame)
                version = frame.header("version")
                if frame.command == "CONNECTED" and version in _ESCAPES:
                    self.version = version
        except Malformed:
            return None
        except Incomplete:
            if len(data) - pos <= MAX_PENDING:
                self._pending[from_client] = data[pos:]
        return frames

    def _decoded(self, frame: Frame) -> Decoded:
        headers = []
        for name, value in frame.headers:
            if name in SECRET_HEADERS:
                self._passcode = value
                value = REDACTED
            headers.append([name, value])
        return Decoded(
            "stomp",
            frame.command,
            value=_body_value(frame.body),
            topic=frame.header("destination"),
            id=next((v for v in map(frame.header, _ID_HEADERS) if v is not None), None),
            fields={
                "headers": headers,
                "version": self.version,
                "eol": frame.eol,
                "trailer": frame.trailer.decode("ascii"),
                "raw_colons": frame.raw_colons,
                "content_length": frame.has_length,
            },
            summary=_summary(frame),
        )

    def encode(self, decoded: Decoded) -> bytes | None:
        if decoded.kind == "HEARTBEAT":
            eols = decoded.fields.get("eols", "\n")
            return eols.encode("ascii") if _HEARTBEAT_RE.fullmatch(eols.encode()) else None
        if decoded.fields.get("joined"):
            return None
        try:
            return b"".join(self._encode_one(d) for d in [decoded, *decoded.fields.get("more", [])])
        except (KeyError, TypeError, ValueError, UnicodeError):
            return None  # an edit this protocol cannot write (a header that is not a pair)

    def _encode_one(self, decoded: Decoded) -> bytes:
        fields = decoded.fields
        headers = []
        destination = decoded.topic  # the first destination header is the one that counts
        for name, value in fields["headers"]:
            if name in SECRET_HEADERS and value == REDACTED and self._passcode is not None:
                value = self._passcode
            if name == "destination" and destination is not None:
                value, destination = destination, None
            headers.append((str(name), str(value)))
        body = decoded.value
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif body is None:
            body = b""
        if not isinstance(body, bytes):
            raise TypeError("a STOMP body is bytes or text")
        frame = Frame(decoded.kind, headers, body, fields["eol"], fields["trailer"].encode(),
                      fields["raw_colons"], fields["content_length"])  # fmt: skip
        if frame.command not in COMMANDS or not _HEARTBEAT_RE.fullmatch(b"\n" + frame.trailer):
            raise ValueError("not a STOMP frame")
        return serialize_frame(frame, fields.get("version", self.version))


class StompFactory:
    """STOMP: chosen by its subprotocols, or a first message that is whole STOMP frames."""

    protocol = "stomp"

    def claims(self, hints: Hints) -> bool:
        return (hints.subprotocol or "").lower() in SUBPROTOCOLS

    def sniff(self, payload: bytes, *, text: bool) -> bool:
        pos = 0
        try:
            while pos < len(payload):
                _frame, pos = parse_frame(payload, pos, "1.2")
        except (Malformed, Incomplete):
            return False
        return pos > 0

    def new(self, hints: Hints) -> Decoder:
        return StompDecoder(SUBPROTOCOLS.get((hints.subprotocol or "").lower(), "1.2"))


_check_factory: DecoderFactory = StompFactory()
