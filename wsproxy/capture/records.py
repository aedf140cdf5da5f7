"""What every capture reader yields, whatever the file's format: plain records in file order.

A JSONL capture maps one line to one record. A HAR file (ours, Chrome's, mitmproxy's) holds
whole messages, not frames: each message becomes a ``Frame`` with ``fin`` set and its message
opcode, so ``show`` and ``replay`` treat both formats alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from wsproxy.logformat import OPCODE_NAMES

# The JSONL ``opcode`` field: the log's opcode names (``wsproxy.logformat``), except that a
# continuation frame is "CONT", as capture files have always spelled it. The file format is
# kept so older captures read and other readers of ours keep working; both spellings read.
_FILE_NAMES = {**OPCODE_NAMES, 0x0: "CONT"}
_FILE_OPCODES = {name: code for code, name in (*OPCODE_NAMES.items(), *_FILE_NAMES.items())}


def file_opcode_name(opcode: int) -> str:
    """The opcode as a capture file writes it."""
    return _FILE_NAMES.get(opcode, f"0x{opcode:x}")


def opcode_from_name(name: str | int) -> int:
    if isinstance(name, int):
        return name
    if name in _FILE_OPCODES:
        return _FILE_OPCODES[name]
    return int(name, 0)


# The last second iso_time formatted: a capture writes many records a second, and
# ``isoformat`` was a tenth of the cost of a small frame's line. A tuple, replaced whole, so
# the writer thread and the event loop can share it.
_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def iso_time(ts: float) -> str:
    """Epoch seconds as ISO-8601 UTC with microseconds: ``2026-01-02T03:04:05.678901+00:00``,
    exactly as ``datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")``.

    A time no calendar holds (NaN, 1e300: a damaged or hostile capture) becomes the epoch, so
    that ``wsproxy har`` still writes a file instead of failing on one bad record.
    """
    global _second
    try:
        # datetime's own rounding (CPython's _PyTime_ObjectToTimeval, half to even).
        frac, whole = math.modf(ts)
        us = round(frac * 1e6)
        if us >= 1_000_000:
            us -= 1_000_000
            whole += 1
        elif us < 0:
            us += 1_000_000
            whole -= 1
        second = int(whole)
        cached = _second
        if cached[0] != second:
            cached = _second = (second, datetime.fromtimestamp(second, UTC).strftime(_SECONDS))
    except (OverflowError, OSError, ValueError):
        return datetime.fromtimestamp(0, UTC).isoformat(timespec="microseconds")
    return f"{cached[1]}.{us:06d}+00:00"


_SECONDS = "%Y-%m-%dT%H:%M:%S"


@dataclass(slots=True)
class Header:
    """The first line of a JSONL capture."""

    version: int
    time: float
    tool: str = ""
    filter: str | None = None


@dataclass(slots=True)
class Connection:
    """A WebSocket opened: its handshake (the ``handshake`` record, or a HAR entry)."""

    conn: str
    time: float
    url: str
    client: str | None = None
    upstream: str | None = None
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    status: int = 101
    reason: str = "Switching Protocols"
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    subprotocol: str | None = None
    extensions: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Frame:
    """One frame (or, from a HAR file, one whole message) in one direction.

    ``payload`` is the content in the clear (decompressed); ``length`` the payload length on
    the wire. ``direction`` is who sent it: "client" or "server" (for an injected frame, the
    side whose direction it travels in). ``original`` is the content before a plugin changed
    it, on the first frame of a modified message.

    A frame recorded in pieces (JSONL version 2) is read as one ``Frame`` per piece: ``payload``
    (and ``original``) is the piece, ``offset`` where it starts in the frame's content, and
    ``more`` is set on all pieces but the last; ``reader.join_frames`` and
    ``messages.Reassembler`` put them back together. A frame in one piece has 0 and False.
    """

    conn: str
    time: float
    direction: str
    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0  # RSV1 = 0x40, RSV2 = 0x20, RSV3 = 0x10, as in the frame's first byte
    length: int = -1
    compressed: bool = False
    message_opcode: int = -1
    verdict: str = "forwarded"
    by: str | None = None
    original: bytes | None = None
    offset: int = 0
    more: bool = False

    def __post_init__(self) -> None:
        if self.length < 0:
            self.length = len(self.payload)
        if self.message_opcode < 0:
            self.message_opcode = self.opcode

    @property
    def is_text(self) -> bool:
        return self.message_opcode == 0x1 and self.opcode in (0x0, 0x1)


@dataclass(slots=True)
class CloseSide:
    code: int | None = None
    reason: str = ""
    received_close: bool = False


@dataclass(slots=True)
class Close:
    """A WebSocket ended: close codes of both sides, who ended it, counts, error."""

    conn: str
    time: float
    closed_by: str | None = None
    client: CloseSide = field(default_factory=CloseSide)
    server: CloseSide = field(default_factory=CloseSide)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    error: str | None = None


@dataclass(slots=True)
class Lost:
    """Records the writer could not keep up with: ``count`` since the last report."""

    time: float
    count: int
    total: int


@dataclass(slots=True)
class Stopped:
    """Writing the capture failed (a full disk): the file's last record, nothing follows."""

    time: float
    error: str


@dataclass(slots=True)
class Http:
    """A plain HTTP exchange: the JSONL ``http`` record, or a HAR entry that is not a WebSocket.

    ``time`` is when the request started; ``wait`` (to the response head) and ``duration`` are
    seconds after it. Sizes are the bodies' full sizes; ``request_body`` and ``response_body``
    hold what the capture kept of them (at most ``model.BODY_KEEP``; None when not recorded, and
    from a HAR file, whose bodies are not read back). ``status`` is None when no answer was
    given; ``answered_by`` is "proxy" when it is an error the proxy answered itself.
    """

    conn: str | None
    time: float
    method: str
    url: str
    status: int | None = None
    reason: str = ""
    http_version: str = "HTTP/1.1"
    client: str | None = None
    upstream: str | None = None
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    request_size: int = 0
    response_size: int = 0
    request_body: bytes | None = None
    response_body: bytes | None = None
    wait: float | None = None
    duration: float = 0.0
    answered_by: str | None = None
    error: str | None = None


Record = Header | Connection | Frame | Close | Lost | Stopped | Http
