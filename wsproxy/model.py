"""Plain data that plugins, logs and captures share: messages, frames, handshakes, flows.

Nothing here does I/O. A ``Message`` and a ``FrameEvent`` are what the plugin chain reads and
changes; the relay then carries out the verdict (forward, forward changed, drop).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from wsproxy.sansio.http11 import Headers
from wsproxy.sansio.items import FrameEvent, Message
from wsproxy.sansio.targets import format_authority


@dataclass
class HandshakeRequest:
    """The client's upgrade request as the upstream will get it; plugins may change it."""

    scheme: str
    host: str
    port: int
    path: str
    headers: Headers

    @property
    def url(self) -> str:
        authority = format_authority(self.host, self.port, self.scheme)
        return f"{self.scheme}://{authority}{self.path}"

    @property
    def subprotocols(self) -> list[str]:
        return [
            token.strip()
            for value in self.headers.get_all("Sec-WebSocket-Protocol")
            for token in value.split(",")
            if token.strip()
        ]

    @subprotocols.setter
    def subprotocols(self, protocols: list[str]) -> None:
        self.headers.remove("Sec-WebSocket-Protocol")
        if protocols:
            self.headers.add("Sec-WebSocket-Protocol", ", ".join(protocols))

    @property
    def extensions(self) -> list[str]:
        return self.headers.get_all("Sec-WebSocket-Extensions")


@dataclass
class HandshakeResponse:
    """The upstream's answer (101 or not); plugins may change its headers."""

    status: int
    reason: str
    headers: Headers


@dataclass
class CloseInfo:
    """How one side's connection ended: the close frame it sent (if any) and what it got."""

    code: int | None = None
    reason: str = ""
    received_close: bool = False


@dataclass
class Counters:
    messages: int = 0
    frames: int = 0
    bytes: int = 0


@dataclass
class Flow:
    """One WebSocket session across both legs, from handshake to close.

    The relay's shell fills it in; plugins read it and act through ``inject``, ``close`` and
    ``refuse`` (the last only during the handshake hooks).
    """

    id: str
    client_address: tuple[str, int]
    request: HandshakeRequest
    response: HandshakeResponse | None = None
    subprotocol: str | None = None
    extensions: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    ended: float | None = None
    client_close: CloseInfo = field(default_factory=CloseInfo)
    server_close: CloseInfo = field(default_factory=CloseInfo)
    closed_by: str | None = None  # "client", "server" or "proxy"
    client_counts: Counters = field(default_factory=Counters)
    server_counts: Counters = field(default_factory=Counters)
    error: str | None = None
    refused: tuple[int, str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Set by the shell once the WebSocket is open; plugins call these through inject/close.
    _injector: Any = None
    _closer: Any = None
    _aborter: Any = None

    def refuse(self, status: int = 403, reason: str = "refused by a plugin") -> None:
        """Answer the client with ``status`` instead of contacting the upstream (handshake only)."""
        self.refused = (status, reason)

    def inject(self, content: bytes | str, *, to_client: bool) -> bool:
        """Send a new message to the client or the upstream; text for ``str``, binary for bytes.

        With message hooks it first goes through them (``message.injected``). Returns False,
        and the message is not sent, when that side is closing, does not read fast enough, or
        too much already waits for the hooks in that direction (the log says which, once).
        """
        if self._injector is None:
            return False
        return bool(self._injector(content, to_client))

    def close(self, code: int = 1000, reason: str = "", *, side: str | None = None) -> None:
        """Close the WebSocket: both peers, or just ``side`` ("client"/"server") with ``code``
        while the other gets 1001."""
        if self._closer is not None:
            self._closer(code, reason, side)

    def abort(self) -> None:
        """Cut both TCP connections at once, without close frames (a network failure, 1006)."""
        if self._aborter is not None:
            self._aborter()


__all__ = [
    "CloseInfo",
    "Counters",
    "Flow",
    "FrameEvent",
    "HandshakeRequest",
    "HandshakeResponse",
    "Message",
]


BODY_KEEP = 1024 * 1024
"""The most of one plain HTTP body a capture keeps (1 MiB, as mitmproxy's ``body_size_limit``
examples and HAR viewers' practical limits): bodies stream through the proxy, only this much of
each is held for the record, the full size is counted."""


@dataclass(slots=True)
class BodyCapture:
    """The start of one HTTP body (its content, transfer framing removed), and its full size."""

    limit: int = BODY_KEEP
    size: int = 0
    kept: bytearray = field(default_factory=bytearray)

    def add(self, data: bytes) -> None:
        self.size += len(data)
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += data[:room]

    @property
    def truncated(self) -> bool:
        return self.size > len(self.kept)


@dataclass(slots=True, kw_only=True)
class HttpExchange:
    """One plain HTTP request and its response, as the capture records it (``http`` records).

    Times are epoch seconds: ``started`` when the request head was read, ``request_sent`` when
    its body had gone upstream, ``first_byte`` when the final response head arrived, ``ended``
    when the exchange was over; None for what never happened. ``answered_by`` is "upstream"
    (its response was relayed) or "proxy" (an error status the proxy answered, in ``status``).
    """

    conn: str
    started: float
    client_address: Any
    method: str
    url: str
    http_version: str
    upstream: tuple[str, int]
    request_headers: list[tuple[str, str]]
    request_body: BodyCapture = field(default_factory=BodyCapture)
    status: int | None = None
    reason: str = ""
    response_version: str = "HTTP/1.1"
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: BodyCapture = field(default_factory=BodyCapture)
    request_sent: float | None = None
    first_byte: float | None = None
    ended: float | None = None
    answered_by: str | None = None
    error: str | None = None
