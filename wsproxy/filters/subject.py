"""What a filter looks at: a flow (the handshake) and, optionally, one message of it.

The filter reads these through two small protocols so each caller adapts what it has (the
proxy's ``Flow`` and frame records, a capture's records, a plugin's ``Message``) without
copying; ``FlowInfo`` and ``MessageInfo`` are plain implementations for tests and for callers
that have the values at hand.

A subject without a message (``Subject(flow)``) is the question asked at handshake time:
message operators (``~from``, ``~b``, ``~proto`` ...) are then *unknown*, and the filter's
answer is true, false, or "depends on each message" (see ``Filter.evaluate``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from wsproxy.decoders.base import Decoded

__all__ = ["FlowFacts", "FlowInfo", "MessageFacts", "MessageInfo", "Subject"]


class FlowFacts(Protocol):
    """The flow-level facts: the handshake (or a plain HTTP exchange)."""

    @property
    def url(self) -> str:
        """``ws://host:port/path?query`` (``wss://``, or ``http(s)://`` for plain HTTP)."""
        ...

    @property
    def host(self) -> str:
        """The server's host name or address, without the port."""
        ...

    @property
    def method(self) -> str: ...

    @property
    def status(self) -> int | None:
        """The response's status (101 for an accepted WebSocket); None before it came."""
        ...

    @property
    def request_headers(self) -> Sequence[tuple[str, str]]: ...

    @property
    def response_headers(self) -> Sequence[tuple[str, str]] | None:
        """None before the response came (a plugin's ``handshake_request``)."""
        ...

    @property
    def is_websocket(self) -> bool: ...


class MessageFacts(Protocol):
    """One message (or frame) of the flow."""

    @property
    def from_client(self) -> bool: ...

    @property
    def opcode(self) -> int:
        """The frame's opcode (0 for a continuation frame)."""
        ...

    @property
    def message_opcode(self) -> int:
        """The message's opcode: a continuation frame's is its message's (TEXT or BINARY)."""
        ...

    @property
    def payload(self) -> bytes:
        """The content in the clear (decompressed)."""
        ...

    @property
    def length(self) -> int:
        """The size ``~len`` compares, in bytes (see the README: the ``len=`` a line shows)."""
        ...

    def decoded(self) -> Decoded | None:
        """The message as its protocol sees it, computed when first asked; None when no
        decoder knows it (or decoding is off)."""
        ...


@dataclass(frozen=True, slots=True)
class Subject:
    """What one evaluation looks at. ``flow`` None: only message operators can answer (a
    filter bound to a flow already, see ``Filter.bind``)."""

    flow: FlowFacts | None
    message: MessageFacts | None = None


@dataclass
class FlowInfo:
    """``FlowFacts`` as plain values."""

    url: str
    host: str = ""
    method: str = "GET"
    status: int | None = 101
    request_headers: Sequence[tuple[str, str]] = ()
    response_headers: Sequence[tuple[str, str]] | None = ()
    is_websocket: bool = True


@dataclass
class MessageInfo:
    """``MessageFacts`` as plain values; ``decode`` is called at most once, when a filter
    first asks for ``decoded()``."""

    from_client: bool
    opcode: int
    payload: bytes
    length: int = -1
    message_opcode: int = -1
    decode: Callable[[], Decoded | None] | None = None
    _decoded: list[Decoded | None] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.length < 0:
            self.length = len(self.payload)
        if self.message_opcode < 0:
            self.message_opcode = self.opcode

    def decoded(self) -> Decoded | None:
        if not self._decoded:
            self._decoded.append(None if self.decode is None else self.decode())
        return self._decoded[0]
