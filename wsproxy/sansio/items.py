"""What the plugin chain reads and changes: whole messages and single frames, as plain data.

The relay builds them (sans-I/O, so without a clock: the shell stamps ``timestamp`` when it
hands an item to the hooks; the items one read brought, run one after another by plain hooks,
share one clock reading) and carries out the verdict the chain leaves on them: forward,
forward changed, drop.
"""

from __future__ import annotations

from typing import Any, Protocol

from wsproxy.sansio.frames import RSV1, Opcode


class MessageCodec(Protocol):
    """What decodes a connection's messages for plugins (``wsproxy.decoders.connection``'s
    ``ConnectionDecoding``; named here by shape, so this module imports nothing above it)."""

    def decode(self, payload: bytes, *, text: bool, from_client: bool) -> Any: ...

    def encode(self, decoded: Any) -> bytes | None: ...


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

    ``decoded`` is the message as its protocol sees it (``wsproxy.decoders.base.Decoded``),
    decoded on first read and kept while ``content`` stays the same; None when no decoder
    knows it. Setting it re-encodes it into ``content`` in the same protocol.
    """

    __slots__ = (
        "_codec",
        "_content",
        "_decoded",
        "_decoded_from",
        "_opcode",
        "_unchanged_frame",
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
        # _Verdict.__init__, written out: a message is made for every one relayed.
        self._actor = None
        self.dropped_by = None
        self.modified_by = None
        self.from_client = from_client
        self._opcode = opcode
        self._content = content
        self.compressed = compressed
        self.fragment_sizes = fragment_sizes if fragment_sizes is not None else [len(content)]
        self.timestamp = 0.0 if timestamp is None else timestamp  # stamped by the shell
        self.injected = injected
        self.original_content = content
        self.original_opcode = opcode
        # (fin, rsv, payload as received) per frame, to forward an unchanged message as it came;
        # the payload is empty when the message is not compressed (it is then the fragment of
        # ``content`` that ``fragment_sizes`` gives: held once, not twice).
        self.wire_frames = wire_frames or []
        # The frame that forwards this message if no plugin changes it, made with its content
        # by the relay's fast path (``fastpath.whole_frames``); empty when it was not.
        self._unchanged_frame = b""
        self._codec: MessageCodec | None = None  # set by the shell before the hooks run
        self._decoded: Any = None
        self._decoded_from: bytes | None = None  # the content ``_decoded`` was decoded from

    @property
    def direction(self) -> str:
        return "client" if self.from_client else "server"

    @property
    def decoded(self) -> Any:
        """The decoded message (a ``Decoded``), or None; decoded once per content."""
        if self._decoded_from is not self._content:
            codec = self._codec
            self._decoded = (
                None
                if codec is None
                else codec.decode(self._content, text=self.is_text, from_client=self.from_client)
            )
            self._decoded_from = self._content
        return self._decoded

    @decoded.setter
    def decoded(self, value: Any) -> None:
        """Re-encode ``value`` (the decoded message, edited) into ``content``; ValueError when
        this message has no decoder or its protocol cannot write ``value`` back."""
        codec = self._codec
        if codec is None or value is None:
            raise ValueError("this message has no decoder: set content instead")
        data = codec.encode(value)
        if data is None:
            what = f"{getattr(value, 'protocol', '?')} {getattr(value, 'kind', '?')}"
            raise ValueError(f"a {what} message cannot be encoded again: set content instead")
        self.content = data
        self._decoded, self._decoded_from = value, self._content

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
        return self._opcode == _TEXT

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
        # The content setter, written out for a str: plugins set text on every message.
        data = value.encode("utf-8")
        if data != self._content:
            self._content = data
            if self.modified_by is None:  # _touch, written out
                self.modified_by = self._actor or "plugin"

    def __repr__(self) -> str:
        return f"Message({self.direction}, {Opcode(self._opcode).name}, {self._content[:40]!r})"


def whole_message(
    from_client: bool, opcode: int, content: bytes, unchanged_frame: bytes
) -> Message:
    """A message of one final, uncompressed frame with RSV bits clear, as ``Message(...,
    wire_frames=[(True, 0, b"")])`` builds it, with ``unchanged_frame`` the frame that
    forwards it: the relay's fast path makes one per message it reads, so ``__init__`` is
    written out here without its call and its options (half the cost)."""
    message = _new(Message)
    message._actor = None
    message.dropped_by = None
    message.modified_by = None
    message.from_client = from_client
    message._opcode = opcode
    message._content = content
    message.compressed = False
    message.fragment_sizes = [len(content)]
    message.timestamp = 0.0
    message.injected = False
    message.original_content = content
    message.original_opcode = opcode
    message.wire_frames = [_WHOLE_FRAME]
    message._unchanged_frame = unchanged_frame
    message._codec = None
    message._decoded = None
    message._decoded_from = None
    return message


def whole_compressed_message(
    from_client: bool, opcode: int, content: bytes, wire: bytes, unchanged_frame: bytes
) -> Message:
    """``whole_message`` for a message of one final compressed frame (RSV1), ``wire`` its
    payload as received (without the tail), as ``Message(..., compressed=True,
    wire_frames=[(True, RSV1, wire)])`` builds it."""
    message = whole_message(from_client, opcode, content, unchanged_frame)
    message.compressed = True
    message.wire_frames = [(True, RSV1, wire)]
    return message


_new = object.__new__
_TEXT = int(Opcode.TEXT)  # a plain int compares faster than the enum member
# What ``Message.wire_frames`` holds for a message of one frame, final, RSV bits clear, its
# payload the message's content (so not kept twice).
_WHOLE_FRAME = (True, 0, b"")


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
        self.timestamp = 0.0  # stamped by the shell when the hooks get it

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


__all__ = ["FrameEvent", "Message", "whole_compressed_message", "whole_message"]
