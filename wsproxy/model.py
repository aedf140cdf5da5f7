"""Plain data that plugins, logs and captures share: messages, frames, handshakes, flows.

Nothing here does I/O. A ``Message`` and a ``FrameEvent`` are what the plugin chain reads and
changes; the relay then carries out the verdict (forward, forward changed, drop).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from wsproxy.sansio.frames import Opcode
from wsproxy.sansio.http11 import Headers
from wsproxy.sansio.targets import format_authority


class _Verdict:
    """Shared bookkeeping: who changed or dropped the item, and what it was before."""

    __slots__ = ("_actor", "dropped_by", "modified_by")

    def __init__(self) -> None:
        self._actor: str | None = None  # the plugin running now, set by the chain
        self.dropped_by: str | None = None
        self.modified_by: str | None = None

    @property
    def dropped(self) -> bool:
        return self.dropped_by is not None

    @property
    def modified(self) -> bool:
        return self.modified_by is not None

    def drop(self) -> None:
        """Do not forward this; it is recorded as dropped by the plugin that called this."""
        self.dropped_by = self._actor or "plugin"

    def _touch(self) -> None:
        if self.modified_by is None:
            self.modified_by = self._actor or "plugin"


class Message(_Verdict):
    """A whole reassembled message in one direction.

    ``content`` is bytes (decompressed when the connection compresses); ``text`` is the same as
    ``str`` for text messages. Setting either marks the message modified; an unchanged message
    keeps its original framing (and its compressed bytes) on the way out.
    """

    __slots__ = (
        "_content",
        "_opcode",
        "compressed",
        "fragment_sizes",
        "from_client",
        "injected",
        "original_content",
        "original_opcode",
        "timestamp",
        "wire_frames",
    )

    def __init__(
        self,
        from_client: bool,
        opcode: int,
        content: bytes,
        *,
        compressed: bool = False,
        fragment_sizes: list[int] | None = None,
        timestamp: float | None = None,
        injected: bool = False,
        wire_frames: list[tuple[bool, int, bytes]] | None = None,
    ) -> None:
        super().__init__()
        self.from_client = from_client
        self._opcode = opcode
        self._content = content
        self.compressed = compressed
        self.fragment_sizes = fragment_sizes if fragment_sizes is not None else [len(content)]
        self.timestamp = time.time() if timestamp is None else timestamp
        self.injected = injected
        self.original_content = content
        self.original_opcode = opcode
        # (fin, rsv, payload as received) per frame, to forward an unchanged message as it came;
        # the payload is empty when the message is not compressed (it is then the fragment of
        # ``content`` that ``fragment_sizes`` gives: held once, not twice).
        self.wire_frames = wire_frames or []

    @property
    def direction(self) -> str:
        return "client" if self.from_client else "server"

    @property
    def opcode(self) -> int:
        return self._opcode

    @opcode.setter
    def opcode(self, value: int) -> None:
        if value not in (Opcode.TEXT, Opcode.BINARY):
            raise ValueError("a message is TEXT (1) or BINARY (2)")
        if value != self._opcode:
            self._opcode = value
            self._touch()

    @property
    def is_text(self) -> bool:
        return self._opcode == Opcode.TEXT

    @property
    def content(self) -> bytes:
        return self._content

    @content.setter
    def content(self, value: bytes | str) -> None:
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        if data != self._content:
            self._content = data
            self._touch()

    @property
    def text(self) -> str:
        return self._content.decode("utf-8", "replace")

    @text.setter
    def text(self, value: str) -> None:
        self.content = value.encode("utf-8")

    def __repr__(self) -> str:
        return f"Message({self.direction}, {Opcode(self._opcode).name}, {self._content[:40]!r})"


class FrameEvent(_Verdict):
    """One frame before reassembly, data or control. ``payload`` is decompressed.

    Dropping a close frame is refused (the close handshake must go through); changing a close
    frame's payload is not either. Pings and pongs can be changed or dropped.
    """

    __slots__ = (
        "_payload",
        "compressed",
        "fin",
        "from_client",
        "message_opcode",
        "opcode",
        "original_payload",
        "rsv",
        "timestamp",
        "wire",
    )

    def __init__(
        self,
        from_client: bool,
        opcode: int,
        payload: bytes,
        *,
        fin: bool = True,
        rsv: int = 0,
        message_opcode: int | None = None,
        compressed: bool = False,
        wire: bytes | None = None,
    ) -> None:
        super().__init__()
        self.from_client = from_client
        self.opcode = opcode
        self.message_opcode = opcode if message_opcode is None else message_opcode
        self.fin = fin
        self.rsv = rsv
        self.compressed = compressed
        self._payload = payload
        self.original_payload = payload
        self.wire = payload if wire is None else wire
        self.timestamp = time.time()

    @property
    def direction(self) -> str:
        return "client" if self.from_client else "server"

    @property
    def is_control(self) -> bool:
        return self.opcode >= 0x8

    @property
    def payload(self) -> bytes:
        return self._payload

    @payload.setter
    def payload(self, value: bytes | str) -> None:
        if self.opcode == Opcode.CLOSE:
            raise ValueError("a close frame cannot be changed; use flow.close() instead")
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        if self.is_control and len(data) > 125:
            raise ValueError("a control frame carries at most 125 bytes")
        if data != self._payload:
            self._payload = data
            self._touch()

    def drop(self) -> None:
        if self.opcode == Opcode.CLOSE:
            raise ValueError("a close frame cannot be dropped; use flow.close() instead")
        super().drop()

    def __repr__(self) -> str:
        name = Opcode(self.opcode).name
        return f"FrameEvent({self.direction}, {name}, fin={self.fin}, {self._payload[:40]!r})"


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

        Returns False when that side is already closing (the message is then not sent).
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
