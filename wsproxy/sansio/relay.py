"""Two legs of a proxied WebSocket and what passes between them.

The relay reads frames from one leg and writes them to the other, streaming: a data frame goes
out with the same opcode, flags and length as it came in (a fragmented message stays
fragmented), client frames re-masked with a fresh key. Small frames are held until whole so
they go out in one piece; a frame over ``STREAM_THRESHOLD`` bytes streams through as its
payload arrives, so memory does not grow with message size.

The close handshake is relayed end to end: the close frame of the peer that starts it goes to
the other peer unchanged, and when that peer answers, the initiator gets its own close frame
back (RFC 6455 5.5.1: the answer typically echoes the code). The answer is sent only once the
other peer has answered, so every message that peer sent before still arrives first; what the
other peer actually answered is recorded on its leg for logs and plugins. Echoing rather than
relaying the answer keeps one peer's quirks from reaching the other: a server that answers a
close sent between two fragments with 1002 does not make the client's clean close look failed.

When a peer breaks the protocol (RFC 6455 7.1.7), it gets the RFC's close code and the other
peer a clean close: 1001 when the client failed, 1014 when the upstream did. When the client
is at fault the proxy first lets the upstream answer what it already received (it waits
``ERROR_GRACE`` seconds before sending its close, a delay the shell times), finishes the
upstream's close handshake, delivers all the upstream sent meanwhile, and only then closes the
client with 1002; so a client that sends a valid message and then a bad frame still gets the
echo of the first, as a direct connection to the server would have given it.

Nothing here knows about sockets or time: the asyncio shell feeds bytes in with ``receive``,
takes ``data_to_send``, and acts on each leg's ``close_transport`` / ``abort_transport``.
"""

from __future__ import annotations

import enum
import io
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from wsproxy.model import FrameEvent, Message
from wsproxy.sansio.deflate import DeflateParams, Deflater
from wsproxy.sansio.endpoint import (
    ControlFrame,
    DataChunk,
    Event,
    FrameReader,
    FrameWriter,
    Violation,
    clear_preview,
)
from wsproxy.sansio.frames import RSV1, CloseCode, Opcode, serialize_close

STREAM_THRESHOLD = 64 * 1024
# With ``full_payloads`` (captures) a frame's content is recorded in pieces of at most this
# many bytes as it streams, so a frame stalled half-way holds at most one piece for the capture
# instead of everything received so far (issue 10: bounded memory on every path). 256 KiB is
# one read of the shell's (peer.READ_SIZE): the record costs about what relaying it does.
RECORD_PIECE = 256 * 1024
# How long the upstream may go on answering a failed client before the proxy closes it: an
# echo server answers on loopback within milliseconds; the delay only runs after an error.
ERROR_GRACE = 0.25


class Joiner:
    """Pieces of content joined as they come, held once.

    ``b"".join`` at the end would hold every piece and the result together, twice the
    content. A ``BytesIO`` grows its buffer in place (realloc; large blocks are remapped, not
    copied) and ``getvalue`` hands that buffer over as the bytes object without a copy when
    nothing else shares it, so a 64 MiB message costs 64 MiB plus one piece. A single piece
    is kept as it is.
    """

    __slots__ = ("_buffer", "_first", "size")

    def __init__(self) -> None:
        self._first = b""
        self._buffer: io.BytesIO | None = None
        self.size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self._buffer is not None:
            self._buffer.write(data)
        elif not self._first:
            self._first = data
        else:
            self._buffer = io.BytesIO()
            self._buffer.write(self._first)
            self._buffer.write(data)
            self._first = b""

    def take(self) -> bytes:
        """The content joined; the joiner is empty again."""
        out = self._first if self._buffer is None else self._buffer.getvalue()
        self._first, self._buffer, self.size = b"", None, 0
        return out


@dataclass(slots=True)
class _Collected:
    """A frame of the message being assembled, as the message needs it."""

    fin: bool
    rsv: int
    wire: bytes  # the payload as received when compressed, else empty (the content has it)
    size: int
    dropped: bool
    touched_by: str | None


class Side(enum.Enum):
    """Which peer a leg talks to; also names the direction of the frames that peer sends."""

    CLIENT = "client"
    SERVER = "server"

    @property
    def other(self) -> Side:
        return Side.SERVER if self is Side.CLIENT else Side.CLIENT


@dataclass(slots=True)
class FrameRecord:
    """A relayed (or dropped) frame, for the log and captures; built only when someone listens.

    ``payload`` is the frame's content, decompressed: its first 64 bytes, or all of it when
    the relay's ``full_payloads`` is set (captures). ``length`` is the payload length on the
    wire. ``verdict`` is what happened to it: "forwarded", "modified" (``original`` then holds
    the message's or frame's content before the change), "dropped" (``by`` names who dropped
    it: a plugin, or "proxy" when the other side was already closing) or "injected".

    With ``full_payloads``, a frame that streams through comes as several records, one per
    piece of its content (at most ``RECORD_PIECE`` bytes, cut between two UTF-8 characters in
    a text message): ``offset`` is where the piece starts in the frame's content and ``more``
    says that more pieces of the same frame follow. A frame recorded whole has offset 0 and
    ``more`` False. Every piece carries the frame's fields; its verdict is the piece's own (a
    frame can start "forwarded" and end "dropped" when the other side starts closing).
    """

    side: Side
    opcode: int
    fin: bool
    rsv: int
    length: int
    payload: bytes
    compressed: bool
    message_opcode: int
    verdict: str = "forwarded"
    by: str | None = None
    original: bytes | None = None
    offset: int = 0
    more: bool = False

    @property
    def preview(self) -> bytes:
        return self.payload[:64]


@dataclass(slots=True)
class Leg:
    """One peer's connection state, as the relay sees it."""

    side: Side
    reader: FrameReader
    writer: FrameWriter
    close_sent: bool = False
    close_received: bool = False
    received_code: int | None = None
    received_reason: str = ""
    received_payload: bytes = b""
    sent_code: int | None = None
    sent_reason: str = ""
    eof: bool = False
    # A frame header went out whose payload has not all followed: no control frame fits now.
    mid_frame_out: bool = False
    # The close we owe this peer once the other peer's close handshake is over.
    pending_close: tuple[int, str] | None = None
    # A close the shell sends after ERROR_GRACE (the upstream, when the client failed).
    deferred_close: tuple[int, str] | None = None
    # What the shell must do with the transport.
    close_transport: bool = False
    abort_transport: bool = False
    violation: Violation | None = None
    messages: int = 0
    frames: int = 0
    dropped: int = 0
    _held: list[bytes] = field(default_factory=list)
    _preview: bytes = b""
    # With full_payloads: the content of the current frame not yet recorded, its size, and
    # where it starts in the frame (the pieces before it went out as records).
    _recorded: list[bytes] = field(default_factory=list)
    _recorded_size: int = 0
    _recorded_offset: int = 0
    # -- plugin chain (only used when a plugin asks for frames or messages from this peer) --
    want_frames: bool = False
    want_messages: bool = False
    pending: FrameEvent | Message | None = None
    backlog: deque[Event] = field(default_factory=deque)  # filled only when hooked
    _pending_control: ControlFrame | None = None
    # The frame and message being assembled for the chain: their content (joined as it comes,
    # held once), the compressed payload of the frame, and per frame of the message what an
    # unchanged message needs to go out as it came.
    _frame_content: Joiner = field(default_factory=lambda: Joiner())
    _frame_wire: list[bytes] = field(default_factory=list)
    _message_content: Joiner = field(default_factory=lambda: Joiner())
    _message_frames: list[_Collected] = field(default_factory=list)
    _frame_start: int = 0  # where the current frame's content starts in _message_content
    _stream_started: bool = False  # the header of the frame streaming through went out
    # permessage-deflate of the frames this peer sends, and our own compressor for them.
    deflate_params: DeflateParams | None = None
    deflater: Deflater | None = None
    recompress: bool = False
    out_started: bool = False  # the current message from this peer has a frame out already
    # Towards this peer: a fragmented message is half-sent, so injected messages must wait.
    out_open: bool = False
    inject_queue: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def hooked(self) -> bool:
        return self.want_frames or self.want_messages

    @property
    def context_takeover(self) -> bool:
        params = self.deflate_params
        return params is not None and not params.no_context_takeover(self.side is Side.CLIENT)

    @property
    def closed_cleanly(self) -> bool:
        return self.close_sent and self.close_received


class Relay:
    """The sans-I/O heart of one proxied WebSocket."""

    def __init__(
        self,
        *,
        max_frame_size: int,
        max_message_size: int,
        on_frame: Callable[[FrameRecord], None] | None = None,
        on_event: Callable[[Side, str], None] | None = None,
    ) -> None:
        self.client = Leg(
            Side.CLIENT,
            FrameReader(
                masked=True, max_frame_size=max_frame_size, max_message_size=max_message_size
            ),
            FrameWriter(mask=False),
        )
        self.server = Leg(
            Side.SERVER,
            FrameReader(
                masked=False, max_frame_size=max_frame_size, max_message_size=max_message_size
            ),
            FrameWriter(mask=True),
        )
        self.on_frame = on_frame
        self.on_event = on_event
        # Captures want whole payloads in FrameRecord; the log only a preview.
        self.full_payloads = False
        # Who started the end: "client" or "server" (a close frame or a vanished peer), or
        # "proxy" (a protocol error, a plugin, shutdown, idle timeout).
        self.closed_by: str | None = None

    def _ended_by(self, who: str) -> None:
        if self.closed_by is None:
            self.closed_by = who

    def leg(self, side: Side) -> Leg:
        return self.client if side is Side.CLIENT else self.server

    # -- input ------------------------------------------------------------------------------

    def receive(self, side: Side, data: bytes) -> None:
        """Bytes arrived from ``side``'s peer."""
        source = self.leg(side)
        if source.eof:
            return
        target = self.leg(side.other)
        reader = source.reader
        self._handle(source, target, reader.receive_data(data))
        while reader.pending:
            # A compressed frame that inflates to a lot comes out in batches (INFLATE_BUDGET):
            # each is handled, forwarded and recorded before the next is inflated.
            self._handle(source, target, reader.receive_data(b""))

    def _handle(self, source: Leg, target: Leg, events: list[Event]) -> None:
        if source.hooked:
            source.backlog.extend(events)
            self._drain(source, target)
            return
        for event in events:
            if source.close_received:
                break  # RFC 6455 5.5.1: nothing counts after a peer's close frame
            if type(event) is DataChunk:
                self._forward_chunk(source, target, event)
            elif type(event) is ControlFrame:
                self._on_control(source, target, event)
            else:
                assert isinstance(event, Violation)
                self._on_violation(source, target, event)

    def receive_eof(self, side: Side, reason: str = "") -> None:
        """``side``'s peer closed or reset its TCP connection."""
        source = self.leg(side)
        if source.eof:
            return
        source.eof = True
        source.close_transport = True
        self._ended_by(side.value)
        target = self.leg(side.other)
        if target.pending_close is not None:
            # The target broke the protocol first and waited for this peer: it gets its own
            # error code, not the 1014 of an upstream failure.
            self._send_pending(target)
        if not source.close_received and not source.violation:
            why = reason or "connection closed without a close frame"
            self._note(side, f"{why} (1006)")
            if side is Side.CLIENT:
                self._close(target, CloseCode.GOING_AWAY, "client went away")
            else:
                self._close(target, CloseCode.BAD_GATEWAY, "upstream connection lost")
        self._settle(target)

    def close_both(self, code: int, reason: str) -> None:
        """The proxy itself ends the WebSocket (shutdown, idle timeout): both peers get ``code``."""
        self._ended_by("proxy")
        for leg in (self.client, self.server):
            leg.deferred_close = None
            if leg.pending_close is not None:
                self._send_pending(leg)
            self._close(leg, code, reason)
            self._settle(leg)

    def send_deferred_close(self, side: Side) -> None:
        """ERROR_GRACE has passed: send the close that was held back."""
        leg = self.leg(side)
        if leg.deferred_close is not None:
            code, reason = leg.deferred_close
            leg.deferred_close = None
            self._close(leg, code, reason)

    def close_timeout(self, side: Side) -> None:
        """The shell waited too long for ``side``'s close answer or TCP close."""
        leg = self.leg(side)
        other = self.leg(side.other)
        if other.pending_close is not None:
            self._send_pending(other)
            self._settle(other)
        if not leg.eof:
            leg.close_transport = True

    # -- the plugin chain's seam -------------------------------------------------------------
    #
    # When a plugin asks for frames or messages from a peer, that peer's events queue up in
    # ``backlog`` and are handled one at a time: a whole frame (or message) becomes ``pending``,
    # the shell runs the chain on it (which may await), then calls ``resolve``. Nothing after it
    # from that peer is handled meanwhile, so order is kept; the other direction goes on.

    def resolve(self, side: Side) -> None:
        """The chain is done with ``side``'s pending item: carry out its verdict, go on."""
        source = self.leg(side)
        target = self.leg(side.other)
        item = source.pending
        source.pending = None
        if isinstance(item, FrameEvent):
            self._after_frame(source, target, item)
        elif isinstance(item, Message):
            self._after_message(source, target, item)
        self._drain(source, target)

    def _drain(self, source: Leg, target: Leg) -> None:
        while source.backlog and source.pending is None:
            event = source.backlog.popleft()
            if source.close_received:
                source.backlog.clear()
                return
            if type(event) is DataChunk:
                self._hook_chunk(source, event)
            elif type(event) is ControlFrame:
                if source.want_frames:
                    source.frames += 1
                    source.pending = FrameEvent(
                        source.side is Side.CLIENT, event.opcode, event.payload
                    )
                    source._pending_control = event
                else:
                    self._on_control(source, target, event)
            else:
                assert isinstance(event, Violation)
                self._on_violation(source, target, event)

    def _hook_chunk(self, source: Leg, chunk: DataChunk) -> None:
        if chunk.compressed and chunk.data:
            source._frame_wire.append(chunk.data)
        # Message hooks alone: the content goes straight into the message (no frame copy).
        content = source._frame_content if source.want_frames else source._message_content
        size = content.size
        content.write(chunk.content)
        if chunk.frame_start:
            source._frame_start = size
        if not chunk.frame_end:
            return
        wire_parts = source._frame_wire
        wire = wire_parts[0] if len(wire_parts) == 1 else b"".join(wire_parts)
        wire_parts.clear()
        source.frames += 1
        if source.want_frames:
            payload = content.take()
            size = len(payload)
        else:
            payload, size = b"", content.size - source._frame_start
        frame = FrameEvent(
            source.side is Side.CLIENT,
            chunk.opcode,
            payload,
            fin=chunk.fin,
            rsv=chunk.rsv,
            message_opcode=chunk.message_opcode,
            compressed=chunk.compressed,
            wire=wire if chunk.compressed else payload,
        )
        if source.want_frames:
            source.pending = frame
        else:
            self._collect(source, frame, size)

    def _after_frame(self, source: Leg, target: Leg, frame: FrameEvent) -> None:
        if frame.is_control:
            control = source._pending_control
            assert control is not None
            source._pending_control = None
            if frame.dropped:
                source.dropped += 1
                self._note(
                    source.side, f"{Opcode(frame.opcode).name} dropped by {frame.dropped_by}"
                )
                self._record(
                    source,
                    frame.opcode,
                    True,
                    0,
                    len(control.payload),
                    control.payload,
                    False,
                    frame.opcode,
                    "dropped",
                    frame.dropped_by,
                    None,
                )
                return
            control.payload = frame.payload
            self._on_control(source, target, control, frame)
            return
        if source.want_messages:
            if not frame.dropped:
                source._message_content.write(frame.payload)
            self._collect(source, frame, len(frame.payload))
            return
        if frame.dropped:
            source.dropped += 1
        verdict = "modified" if frame.modified else "forwarded"
        self._emit(
            source,
            target,
            frame.message_opcode,
            frame.payload,
            frame.fin,
            frame.compressed,
            frame.wire,
            frame.rsv,
            raw=False,
            drop=frame.dropped,
            verdict=verdict,
            by=frame.dropped_by or frame.modified_by,
            original=frame.original_payload if frame.modified else None,
        )
        if frame.fin:
            source.messages += 1

    def _collect(self, source: Leg, frame: FrameEvent, size: int) -> None:
        """Add a frame to the message being assembled; its content (``size`` bytes) is
        already in ``_message_content`` unless the frame was dropped."""
        frames = source._message_frames
        touched = frame.modified_by or frame.dropped_by
        # An uncompressed frame's payload is its content: kept once, in the message.
        wire = frame.wire if frame.compressed else b""
        frames.append(_Collected(frame.fin, frame.rsv, wire, size, frame.dropped, touched))
        if not frame.fin:
            return
        content = source._message_content.take()
        message = Message(
            source.side is Side.CLIENT,
            frame.message_opcode,
            content,
            compressed=frame.compressed,
            fragment_sizes=[f.size for f in frames if not f.dropped],
            wire_frames=[(f.fin, f.rsv, f.wire) for f in frames],
        )
        # Frames that a frame hook changed or dropped already make the message a changed one.
        by = next((f.touched_by for f in frames if f.touched_by), None)
        if by is not None:
            message.modified_by = by
        frames.clear()
        source.pending = message

    def _after_message(self, source: Leg, target: Leg, message: Message) -> None:
        source.messages += 1
        content = message.content
        if message.dropped:
            source.dropped += 1
            self._note(source.side, f"message dropped by {message.dropped_by}")
            self._record(
                source,
                message.opcode,
                True,
                0,
                len(content),
                content,
                message.compressed,
                message.opcode,
                "dropped",
                message.dropped_by,
                None,
            )
            if message.compressed and source.context_takeover:
                self._start_recompressing(source)
            return
        sizes = message.fragment_sizes
        raw_ok = not (message.modified or source.want_frames)
        if raw_ok and not (message.compressed and source.recompress):
            # Unchanged: the frames go out as they came, compressed bytes included.
            position = 0
            for index, (fin, rsv, wire) in enumerate(message.wire_frames):
                size = sizes[index] if index < len(sizes) else 0
                piece = content[position : position + size]  # the whole: no copy
                position += size
                self._emit(
                    source,
                    target,
                    message.opcode,
                    piece,
                    fin,
                    message.compressed,
                    wire if message.compressed else piece,
                    rsv,
                    raw=True,
                )
            return
        if message.modified and message.compressed and source.context_takeover:
            self._start_recompressing(source)
        if sum(sizes) != len(content) or not sizes:
            sizes = [len(content)]
        verdict = "modified" if message.modified else "forwarded"
        original = message.original_content if message.modified else None
        position = 0
        for index, size in enumerate(sizes):
            piece = content[position : position + size]
            position += size
            self._emit(
                source,
                target,
                message.opcode,
                piece,
                index == len(sizes) - 1,
                message.compressed,
                b"",
                0,
                raw=False,
                verdict=verdict,
                by=message.modified_by,
                original=original if index == 0 else None,
            )

    def _start_recompressing(self, source: Leg) -> None:
        # Under context takeover the receiver's window now lacks (or holds a different version
        # of) what the sender compressed against: the sender's later frames may point back
        # into it, so forwarding them as they are would corrupt the receiver's output. From
        # here on this direction is decompressed and compressed again by the proxy, whose
        # compressor only points back into what it sent itself (see deflate.Deflater).
        if not source.recompress:
            source.recompress = True
            self._note(source.side, "a message was changed: recompressing from now on")

    def _emit(
        self,
        source: Leg,
        target: Leg,
        message_opcode: int,
        content: bytes,
        fin: bool,
        compressed: bool,
        wire: bytes,
        rsv: int,
        *,
        raw: bool,
        drop: bool = False,
        verdict: str = "forwarded",
        by: str | None = None,
        original: bytes | None = None,
    ) -> None:
        """Send one data frame of ``source``'s current message to ``target``.

        ``content`` is the frame's content in the clear, ``wire`` its payload as received
        (sent as it is when ``raw``); the rest describes the chain's verdict for the record.
        """
        closing = target.close_sent or target.eof or target.abort_transport
        if closing or drop:
            # Dropped by a plugin, or by the proxy because the target is already closing.
            dropped_by = "proxy" if closing else by
            self._record(
                source,
                message_opcode,
                fin,
                rsv,
                len(wire),
                content,
                compressed,
                message_opcode,
                "dropped",
                dropped_by,
                None,
            )
            if closing:
                return
        if compressed and not raw and source.want_frames and source.context_takeover:
            # Frame hooks may change any frame; a compressed message can only be re-encoded
            # from its start, so with frame hooks this direction always recompresses.
            source.recompress = True
        if drop:
            if compressed and source.context_takeover:
                self._start_recompressing(source)
            if not (fin and source.out_started):
                return
            content = b""  # the message was started: end it with an empty final frame
            verdict, by = "modified", by
        opcode = Opcode.CONTINUATION if source.out_started else message_opcode
        if raw:
            payload = wire
        elif compressed:
            if source.deflater is None:
                assert source.deflate_params is not None
                source.deflater = Deflater(source.deflate_params, source.side is Side.CLIENT)
            payload = source.deflater.compress_piece(content, fin)
            rsv = 0 if source.out_started else RSV1
        else:
            payload = content
            rsv = 0
        target.writer.send_frame(opcode, payload, fin, rsv)
        source.out_started = not fin
        if fin:
            if target.out_open:
                target.out_open = False
                self._flush_injections(target)
        else:
            target.out_open = True
        self._record(
            source,
            opcode,
            fin,
            rsv,
            len(payload),
            content,
            compressed,
            message_opcode,
            verdict,
            by,
            original,
        )

    def _record(
        self,
        source: Leg,
        opcode: int,
        fin: bool,
        rsv: int,
        length: int,
        content: bytes,
        compressed: bool,
        message_opcode: int,
        verdict: str,
        by: str | None,
        original: bytes | None,
    ) -> None:
        if self.on_frame is None:
            return
        payload = content if self.full_payloads else content[:64]
        self.on_frame(
            FrameRecord(
                source.side,
                opcode,
                fin,
                rsv,
                length,
                payload,
                compressed,
                message_opcode,
                verdict,
                by,
                original,
            )
        )

    def inject(self, to_side: Side, opcode: int, payload: bytes) -> bool:
        """A plugin's new message towards ``to_side``'s peer; sent uncompressed, which
        permessage-deflate allows and which leaves the receiver's window untouched."""
        target = self.leg(to_side)
        if target.close_sent or target.eof or target.abort_transport:
            return False
        if target.out_open:
            target.inject_queue.append((opcode, payload))
        else:
            target.writer.send_frame(opcode, payload)
        # Recorded as a frame from the other side (the direction it travels), injected.
        self._record(
            self.leg(to_side.other),
            opcode,
            True,
            0,
            len(payload),
            payload,
            False,
            opcode,
            "injected",
            None,
            None,
        )
        return True

    def _flush_injections(self, target: Leg) -> None:
        queued, target.inject_queue = target.inject_queue, []
        for opcode, payload in queued:
            if not (target.close_sent or target.eof):
                target.writer.send_frame(opcode, payload)

    def close_side(self, side: Side | None, code: int, reason: str) -> None:
        """A plugin closes the WebSocket: ``side`` gets ``code``, the other 1001 (or both)."""
        self._ended_by("proxy")
        if side is None:
            self.close_both(code, reason)
            return
        for leg in (self.client, self.server):
            leg.deferred_close = None
            if leg.pending_close is not None:
                self._send_pending(leg)
            if leg.side is side:
                self._close(leg, code, reason)
            else:
                self._close(leg, CloseCode.GOING_AWAY, "closed by a plugin")
            self._settle(leg)

    # -- output -----------------------------------------------------------------------------

    def data_to_send(self, side: Side) -> bytes:
        return self.leg(side).writer.data_to_send()

    def chunks_to_send(self, side: Side) -> list[bytes]:
        return self.leg(side).writer.chunks_to_send()

    @property
    def finished(self) -> bool:
        return (self.client.eof or self.client.close_transport or self.client.abort_transport) and (
            self.server.eof or self.server.close_transport or self.server.abort_transport
        )

    # -- internals --------------------------------------------------------------------------

    def _forward_chunk(self, source: Leg, target: Leg, chunk: DataChunk) -> None:
        if chunk.frame_start:
            source.frames += 1
            if self.on_frame is not None and not self.full_payloads:
                source._preview = clear_preview(chunk)
        closing = target.close_sent or target.eof or target.abort_transport
        if self.full_payloads and chunk.content:
            source._recorded.append(chunk.content)
            source._recorded_size += len(chunk.content)
            if source._recorded_size >= RECORD_PIECE and not chunk.frame_end:
                self._record_pieces(source, chunk, "dropped" if closing else "forwarded")
        if closing:
            # The target is closing: RFC 6455 5.5.1 forbids data after our close frame.
            if chunk.message_end:
                self._note(source.side, "message dropped: the other side is closing")
            if chunk.frame_end:
                self._record_chunk(source, chunk, "dropped", "proxy")
            return
        writer = target.writer
        if chunk.frame_start and chunk.frame_end:
            writer.send_frame(chunk.opcode, chunk.data, chunk.fin, chunk.rsv, chunk.mask_key)
        elif chunk.frame_length <= STREAM_THRESHOLD:
            source._held.append(chunk.data)
            if chunk.frame_end:
                payload = b"".join(source._held)
                writer.send_frame(chunk.opcode, payload, chunk.fin, chunk.rsv, chunk.mask_key)
                source._held.clear()
        else:
            if chunk.frame_start:
                source._stream_started = False
            if (chunk.data or chunk.frame_end) and not source._stream_started:
                # The header goes with the first bytes of payload: a compressed piece still
                # being inflated (and checked) has none yet, and may still fail the frame.
                writer.start_frame(chunk.opcode, chunk.fin, chunk.rsv, chunk.frame_length)
                target.mid_frame_out = True
                source._stream_started = True
            writer.send_payload(chunk.data, chunk.mask_key)
            if chunk.frame_end:
                target.mid_frame_out = False
        if chunk.frame_end:
            if chunk.fin:
                source.messages += 1
                if target.out_open:
                    target.out_open = False
                    self._flush_injections(target)
            else:
                target.out_open = True
            self._record_chunk(source, chunk, "forwarded", None)

    def _record_chunk(self, source: Leg, chunk: DataChunk, verdict: str, by: str | None) -> None:
        """The record of a streamed frame that just ended (its last piece, with captures)."""
        offset = 0
        if self.full_payloads:
            parts = source._recorded
            payload = parts[0] if len(parts) == 1 else b"".join(parts)
            parts.clear()
            offset = source._recorded_offset
            source._recorded_size = source._recorded_offset = 0
        else:
            payload = source._preview
        if self.on_frame is None:
            return
        self.on_frame(self._chunk_record(source, chunk, payload, verdict, by, offset, False))

    def _record_pieces(self, source: Leg, chunk: DataChunk, verdict: str) -> None:
        """Record the content received so far of a frame still streaming (``more`` set).

        The chunks held are joined into one piece (each is at most one read, so a piece is
        about RECORD_PIECE bytes), except that a chunk already larger than a piece (content
        inflated far beyond its read) is recorded as it is rather than copied: the capture
        writer cuts long records into short lines without copying. In a text message the end
        of a character cut in two waits for the next piece, so every piece is valid text.
        """
        parts = source._recorded
        if len(parts) > 1 and len(parts[-1]) >= RECORD_PIECE:
            last = parts.pop()
            self._record_piece(source, chunk, b"".join(parts), verdict)
            parts[:] = [last]
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        carry = b""
        if chunk.message_opcode == Opcode.TEXT:
            cut = utf8_boundary(data, len(data))
            if cut < len(data):
                data, carry = data[:cut], data[cut:]
        self._record_piece(source, chunk, data, verdict)
        if carry:
            parts.append(carry)
        source._recorded_size = len(carry)

    def _record_piece(self, source: Leg, chunk: DataChunk, data: bytes, verdict: str) -> None:
        if self.on_frame is not None and data:
            by = "proxy" if verdict == "dropped" else None
            offset = source._recorded_offset
            self.on_frame(self._chunk_record(source, chunk, data, verdict, by, offset, True))
        source._recorded_offset += len(data)

    def _chunk_record(
        self,
        source: Leg,
        chunk: DataChunk,
        payload: bytes,
        verdict: str,
        by: str | None,
        offset: int,
        more: bool,
    ) -> FrameRecord:
        return FrameRecord(
            source.side,
            chunk.opcode,
            chunk.fin,
            chunk.rsv,
            chunk.frame_length,
            payload,
            chunk.compressed,
            chunk.message_opcode,
            verdict,
            by,
            None,
            offset,
            more,
        )

    def _on_control(
        self, source: Leg, target: Leg, frame: ControlFrame, event: FrameEvent | None = None
    ) -> None:
        if event is None:
            source.frames += 1
        if self.on_frame is not None:
            modified = event is not None and event.modified
            self.on_frame(
                FrameRecord(
                    source.side,
                    frame.opcode,
                    True,
                    0,
                    len(frame.payload),
                    frame.payload,
                    False,
                    frame.opcode,
                    "modified" if modified else "forwarded",
                    event.modified_by if event is not None else None,
                    event.original_payload if modified and event is not None else None,
                )
            )
        if frame.opcode != Opcode.CLOSE:
            # Pings and pongs are the peers' business: relayed unchanged, never answered here.
            if not (target.close_sent or target.eof or target.abort_transport):
                target.writer.send_frame(frame.opcode, frame.payload)
            return
        self._ended_by(source.side.value)
        source.close_received = True
        source.received_code = frame.close_code
        source.received_reason = frame.close_reason
        source.received_payload = frame.payload
        source._held.clear()
        if target.pending_close is not None:
            # The target failed earlier and waits for this peer to finish: it now gets its
            # protocol error code, after everything this source had sent before; the source
            # gets the echo of its own close.
            self._send_pending(target)
            source.deferred_close = None
            self._send_close_frame(source, frame.payload, frame.close_code, frame.close_reason)
        elif target.close_received:
            # The answer to a close the target started: the target gets its own frame back.
            self._send_close_frame(
                target, target.received_payload, target.received_code, target.received_reason
            )
        else:
            self._send_close_frame(target, frame.payload, frame.close_code, frame.close_reason)
        self._settle(source)
        self._settle(target)

    def _send_close_frame(self, leg: Leg, payload: bytes, code: int | None, reason: str) -> None:
        if leg.close_sent or leg.eof or leg.abort_transport:
            return
        if leg.mid_frame_out:
            leg.abort_transport = True
            return
        leg.writer.send_frame(Opcode.CLOSE, payload)
        leg.close_sent = True
        leg.sent_code = code
        leg.sent_reason = reason

    def _on_violation(self, source: Leg, target: Leg, violation: Violation) -> None:
        self._ended_by("proxy")
        source.violation = violation
        source._held.clear()
        self._note(source.side, f"protocol error: {violation.reason} ({violation.code})")
        if source.side is Side.CLIENT and not (target.eof or target.close_received):
            # Let the upstream answer and finish its close handshake first (module docstring).
            if not (source.close_sent or target.close_sent or target.mid_frame_out):
                target.deferred_close = (CloseCode.GOING_AWAY, "client protocol error")
                source.pending_close = (violation.code, violation.reason)
            else:
                self._close(target, CloseCode.GOING_AWAY, "client protocol error")
                self._close(source, violation.code, violation.reason)
        else:
            if target.pending_close is not None:
                # The target failed first and waits for this peer's close: it gets its own
                # error code (and its transport closed by _settle), not this peer's 1014.
                self._send_pending(target)
            if source.side is Side.SERVER:
                self._close(target, CloseCode.BAD_GATEWAY, "upstream protocol error")
            else:
                self._close(target, CloseCode.GOING_AWAY, "client protocol error")
            self._close(source, violation.code, violation.reason)
        self._settle(source)
        self._settle(target)

    def _close(self, leg: Leg, code: int, reason: str) -> None:
        """Send ``leg`` a close frame, or cut it if a frame to it is half-written."""
        if leg.close_sent or leg.eof or leg.abort_transport:
            return
        if leg.mid_frame_out:
            # A close frame cannot go inside a frame's payload: the only way out is to cut.
            self._note(leg.side, f"aborted: a frame to it was half-sent when it had to get {code}")
            leg.abort_transport = True
            return
        leg.writer.send_frame(Opcode.CLOSE, serialize_close(code, reason))
        leg.close_sent = True
        leg.sent_code = code
        leg.sent_reason = reason

    def _send_pending(self, leg: Leg) -> None:
        assert leg.pending_close is not None
        code, reason = leg.pending_close
        leg.pending_close = None
        self._close(leg, code, reason)

    def _settle(self, leg: Leg) -> None:
        """Decide what the shell does with ``leg``'s transport once its close is done.

        The proxy is the server towards its client, so it closes that TCP connection first
        (RFC 6455 7.1.1); towards the upstream it is the client and waits for the server to
        close (the shell bounds the wait). A peer that broke the protocol is closed right after
        its close frame went out.
        """
        if leg.eof or leg.abort_transport or leg.pending_close is not None:
            return
        if leg.side is Side.CLIENT:
            if leg.close_sent and (leg.close_received or leg.violation is not None):
                leg.close_transport = True
        elif leg.close_sent and leg.violation is not None:
            leg.close_transport = True

    def _note(self, side: Side, message: str) -> None:
        if self.on_event is not None:
            self.on_event(side, message)


def utf8_boundary(data: bytes | memoryview, end: int) -> int:
    """``end``, moved back to the start of the UTF-8 character that ``data[end - 1]`` (or
    ``data[end]``) belongs to when that character is cut by ``end``; else ``end`` itself.

    RFC 3629 section 3: a lead byte 110xxxxx, 1110xxxx or 11110xxx starts a character of 2,
    3 or 4 bytes; continuation bytes are 10xxxxxx. Only the last three bytes before ``end``
    are looked at, so invalid data is cut anywhere (it is recorded as base64 anyway).
    """
    for back in range(1, 4):
        index = end - back
        if index < 0:
            break
        byte = data[index]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII): does its character fit before end?
            size = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4
            if byte < 0x80 or byte & 0xF8 == 0xF8 or back >= size:
                return end
            return index
    return end


__all__ = [
    "RECORD_PIECE",
    "STREAM_THRESHOLD",
    "FrameRecord",
    "Leg",
    "Relay",
    "Side",
    "serialize_close",
    "utf8_boundary",
]
