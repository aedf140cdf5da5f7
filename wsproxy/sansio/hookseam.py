"""The plugin chain's seam in the relay: frames and messages handed to hooks, one at a time.

When a plugin asks for frames or messages from a peer, that peer's events queue up in its
leg's ``backlog`` and are handled in order: a whole frame (or message) becomes ``pending``, the
relay asks the shell to run the hooks on it (``RunHooks``), and the shell calls ``hooks_done``
when they are through — at once for plain functions, minutes later for a person editing a
paused message. Only what must stay ordered behind the item waits: pings and pongs from the
same peer go on (they belong to no message), the other direction is untouched, and the shell
stops reading the peer once ``HOOK_BACKLOG`` bytes wait behind the item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from wsproxy.sansio.deflate import Deflater
from wsproxy.sansio.events import ControlFrame, DataChunk, Event, Violation
from wsproxy.sansio.fastpath import EVENT_COST, WholeDeflatedFrame
from wsproxy.sansio.frames import RSV1, Opcode
from wsproxy.sansio.items import FrameEvent, Message, whole_compressed_message, whole_message
from wsproxy.sansio.legs import Collected, Leg, Side
from wsproxy.sansio.records import FrameRecord, whole_record

if TYPE_CHECKING:
    from wsproxy.sansio.commands import Command

# Bytes from one peer that may wait behind an item the hooks hold before the shell stops
# reading that peer (its kernel buffers then slow the sender): about 1 MiB per connection.
HOOK_BACKLOG = 1024 * 1024
# Each event in the backlog counts EVENT_COST besides its bytes, so the backlog is bounded by
# events too, not by wire bytes alone: at most about HOOK_BACKLOG / EVENT_COST (4,096) tiny
# events wait behind a held item.


@dataclass(slots=True)
class OutFrame:
    """One data frame of a message to send on, and what the chain decided about it.

    ``content`` is the frame's content in the clear; ``wire`` its payload as received, sent
    as it is when ``raw``; the rest describes the verdict for the record.
    """

    message_opcode: int
    content: bytes
    fin: bool
    compressed: bool
    wire: bytes = b""
    rsv: int = 0
    raw: bool = False
    drop: bool = False
    verdict: str = "forwarded"
    by: str | None = None
    original: bytes | None = None
    first: bool = True  # the message's first frame as received (later ones came as CONTINUATION)


class HookSeam:
    """The relay's methods for hooked legs; ``Relay`` provides the core they call."""

    if TYPE_CHECKING:
        _out: list[Command]
        _records: bool

        def _on_control(
            self, source: Leg, target: Leg, frame: ControlFrame, event: FrameEvent | None = None
        ) -> None: ...

        def _on_violation(self, source: Leg, target: Leg, violation: Violation) -> None: ...

        def _emit(self, source: Leg, target: Leg, out: OutFrame) -> None: ...

        def _record(self, record: FrameRecord) -> None: ...

        def _note(self, side: Side, text: str) -> None: ...

        def _start_recompressing(self, source: Leg) -> None: ...

        def _message_out(self, target: Leg) -> None: ...

        client: Leg
        server: Leg

        def leg(self, side: Side) -> Leg: ...

        def _take(self) -> list[Command]: ...

    # -- entry points of the hooks' shell ----------------------------------------------------

    def hooks_done(self, side: Side) -> list[Command]:
        """The chain is done with ``side``'s pending item: carry out its verdict, go on."""
        self._hooks_done(side)
        return self._take()

    def hooks_done_next(self, side: Side) -> FrameEvent | Message | None:
        """``hooks_done`` for a shell that runs plain-function hooks at once: the verdict is
        carried out the same way, and the leg's next item, when one is ready, is handed over
        right here (the shell now has it, as a ``RunHooks`` would have given it) rather than
        in a command. The commands wait for ``take``, which the shell calls when it stops:
        one batch for all the items a read brought, not one per item."""
        if side is Side.CLIENT:
            source, target = self.client, self.server
        else:
            source, target = self.server, self.client
        item = source.pending
        if type(item) is Message:
            # _hooks_done, written out for a message: this runs for every one.
            source.pending = None
            source.hooks_running = False
            self._after_message(source, target, item)
            backlog = source.backlog
            if backlog:
                event = backlog[0]
                if type(event) is Message and source.received is None:
                    # The next message the read brought: _drain's first case, written out,
                    # and it goes to the shell at once.
                    backlog.popleft()
                    source.backlog_bytes -= len(event._content) + EVENT_COST
                    source.pending = event
                    source.hooks_running = True
                    return event
                self._drain(source, target)
        else:
            self._hooks_done(side)
        item = source.pending
        if item is None or source.hooks_running:
            return None
        source.hooks_running = True
        return item

    def _hooks_done(self, side: Side) -> Leg:
        if side is Side.CLIENT:
            source, target = self.client, self.server
        else:
            source, target = self.server, self.client
        item = source.pending
        source.pending = None
        source.hooks_running = False
        if isinstance(item, Message):
            self._after_message(source, target, item)
        elif isinstance(item, FrameEvent):
            self._after_frame(source, target, item)
        if source.backlog:
            self._drain(source, target)
        return source

    def inject_refusal(self, to_side: Side) -> str | None:
        """Why a message injected towards ``to_side``'s peer would not be sent, or None: that
        peer is closing, or the hooks already hold more than ``HOOK_BACKLOG`` bytes in its
        direction (an addon injecting in answer to every injected message must not grow the
        proxy's memory)."""
        target = self.leg(to_side)
        if not target.can_send:
            return f"the {to_side.value} is closing"
        source = self.leg(to_side.other)
        if source.want_messages and source.backlog_bytes > HOOK_BACKLOG:
            waiting = HOOK_BACKLOG // 1024
            return f"more than {waiting} KiB wait for the plugins towards the {to_side.value}"
        return None

    def inject(self, to_side: Side, opcode: int, payload: bytes) -> list[Command]:
        """A plugin's new message towards ``to_side``'s peer; sent uncompressed, which
        permessage-deflate allows and which leaves the receiver's window untouched. With
        message hooks it first goes through them (``Message.injected``), after what the other
        peer sent before. Nothing is sent (and nothing returned) when ``inject_refusal``
        gives a reason."""
        if self.inject_refusal(to_side) is not None:
            return []
        target = self.leg(to_side)
        source = self.leg(to_side.other)
        if source.want_messages:
            message = Message(to_side is Side.SERVER, opcode, payload, injected=True)
            self._queue_injected(source, target, message)
            return self._take()
        if target.out_open or target.mid_frame_out:
            # Between a message's fragments, or inside a streamed frame's payload: it waits.
            target.inject_queue.append((opcode, payload))
        else:
            target.writer.send_frame(opcode, payload)
        if self._records:
            # Recorded as a frame from the other side (the direction it travels), injected.
            record = whole_record(to_side.other, opcode, payload, "injected")
            self._record(record)
        return self._take()

    def _take_whole(self, source: Leg, target: Leg, data: bytes) -> int:
        """The run of whole one-frame messages at the start of ``data`` (compressed ones too,
        with permessage-deflate), queued for the message hooks, as much as the backlog holds;
        where the rest starts."""
        reader = source.reader
        if reader.inflater is None:
            end, whole = reader.take_whole(data, HOOK_BACKLOG)
            if whole:
                self._queue_whole(source, target, whole)
            return end
        end, deflated = reader.take_whole_deflated(data, HOOK_BACKLOG)
        if deflated:
            self._queue_whole_deflated(source, target, deflated)
        return end

    # -- the backlog ------------------------------------------------------------------------

    def _queue(self, source: Leg, target: Leg, events: list[Event]) -> None:
        """Events from a hooked peer: into its backlog, except the pings and pongs that
        would only wait behind an item the hooks hold. Those go on at once, in the order they
        came; none after the peer's close frame (RFC 6455 5.5.1: nothing after it counts), which
        waits in the backlog like any other event until its turn."""
        # Pings and pongs wait only when frame hooks read them, or once the peer has closed.
        ahead = not (source.want_frames or source.close_queued or source.close_received)
        for event in events:
            if type(event) is ControlFrame:
                if event.opcode == Opcode.CLOSE:
                    source.close_queued = True
                    ahead = False
                elif ahead:
                    self._on_control(source, target, event)
                    continue
            source.backlog.append(event)
            source.backlog_bytes += _cost(event)
        self._drain(source, target)

    def _queue_whole(
        self, source: Leg, target: Leg, frames: list[tuple[int, bytes, bytes]]
    ) -> None:
        """Whole, final, unextended frames (``FrameReader.take_whole``) from a peer whose
        messages the hooks read: each is a message of one frame, built as ``_collect`` would
        build it, queued as the general path queues events; with it goes the frame that
        forwards it unchanged."""
        from_client = source.side is Side.CLIENT
        backlog = source.backlog
        cost = 0
        for opcode, content, out in frames:
            backlog.append(whole_message(from_client, opcode, content, out))
            cost += len(content)
        source.frames += len(frames)
        source.backlog_bytes += cost + EVENT_COST * len(frames)
        self._drain(source, target)

    def _queue_whole_deflated(
        self, source: Leg, target: Leg, frames: list[WholeDeflatedFrame]
    ) -> None:
        """``_queue_whole`` for a connection with permessage-deflate
        (``FrameReader.take_whole_deflated``): a compressed frame becomes a compressed message
        whose one frame is its payload as received, as ``_collect`` would build it."""
        from_client = source.side is Side.CLIENT
        backlog = source.backlog
        cost = 0
        for opcode, content, wire, out in frames:
            if wire is None:
                backlog.append(whole_message(from_client, opcode, content, out))
            else:
                backlog.append(whole_compressed_message(from_client, opcode, content, wire, out))
            cost += len(content)
        source.frames += len(frames)
        source.backlog_bytes += cost + EVENT_COST * len(frames)
        self._drain(source, target)

    def _queue_injected(self, source: Leg, target: Leg, message: Message) -> None:
        """A message a plugin injects in ``source``'s direction: it waits behind what that
        peer sent, then goes through the message hooks like any other (``injected`` set)."""
        source.backlog.append(message)
        source.backlog_bytes += _cost(message)
        self._drain(source, target)

    def _drain(self, source: Leg, target: Leg) -> None:
        backlog = source.backlog
        while backlog and source.pending is None:
            event = backlog.popleft()
            if type(event) is Message:
                # The usual event (a message the fast path made, or an injected one), taken
                # first: _cost and close_received written out, and it is the next item.
                source.backlog_bytes -= len(event._content) + EVENT_COST
                if source.received is not None:
                    self._discard_backlog(source, event)
                else:
                    source.pending = event
                return
            source.backlog_bytes -= _cost(event)
            if source.close_received:
                self._discard_backlog(source, event)
                return
            if type(event) is DataChunk:
                self._hook_chunk(source, event)
            elif type(event) is ControlFrame:
                if source.want_frames:
                    source.frames += 1
                    source.pending = FrameEvent(
                        source.side is Side.CLIENT, event.opcode, event.payload
                    )
                    source.pending_control = event
                else:
                    self._on_control(source, target, event)
            else:
                assert isinstance(event, Violation)
                self._on_violation(source, target, event)

    def _discard_backlog(self, source: Leg, first: Event | Message) -> None:
        """RFC 6455 5.5.1: nothing the peer sent after its close frame counts, and the other
        peer, closing now, takes no injected message either."""
        injected = sum(
            type(event) is Message and event.injected for event in (first, *source.backlog)
        )
        source.backlog.clear()
        source.backlog_bytes = 0
        if injected:
            other = source.side.other.value
            self._note(
                source.side, f"{injected} injected message(s) dropped: the {other} is closing"
            )

    def _hook_chunk(self, source: Leg, chunk: DataChunk) -> None:
        if chunk.compressed and chunk.data:
            source.frame_wire.append(chunk.data)
        # Message hooks alone: the content goes straight into the message (no frame copy).
        content = source.frame_content if source.want_frames else source.message_content
        size = content.size
        content.write(chunk.content)
        if chunk.frame_start:
            source.frame_start = size
        if not chunk.frame_end:
            return
        wire_parts = source.frame_wire
        wire = wire_parts[0] if len(wire_parts) == 1 else b"".join(wire_parts)
        wire_parts.clear()
        source.frames += 1
        if source.want_frames:
            payload = content.take()
            size = len(payload)
        else:
            payload, size = b"", content.size - source.frame_start
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
            self._after_control(source, target, frame)
            return
        if source.want_messages:
            if not frame.dropped:
                source.message_content.write(frame.payload)
            self._collect(source, frame, len(frame.payload))
            return
        if frame.dropped:
            source.dropped += 1
        out = OutFrame(
            frame.message_opcode,
            frame.payload,
            frame.fin,
            frame.compressed,
            wire=frame.wire,
            rsv=frame.rsv,
            drop=frame.dropped,
            verdict="modified" if frame.modified else "forwarded",
            by=frame.dropped_by or frame.modified_by,
            original=frame.original_payload if frame.modified else None,
            first=frame.opcode != Opcode.CONTINUATION,
        )
        self._emit(source, target, out)
        if frame.fin:
            source.messages += 1

    def _after_control(self, source: Leg, target: Leg, frame: FrameEvent) -> None:
        control = source.pending_control
        assert control is not None
        source.pending_control = None
        if frame.dropped:
            source.dropped += 1
            self._note(source.side, f"{Opcode(frame.opcode).name} dropped by {frame.dropped_by}")
            if self._records:
                verdict, by = "dropped", frame.dropped_by
                self._record(
                    whole_record(source.side, frame.opcode, control.payload, verdict, by=by)
                )
            return
        control.payload = frame.payload
        self._on_control(source, target, control, frame)

    def _collect(self, source: Leg, frame: FrameEvent, size: int) -> None:
        """Add a frame to the message being assembled; its content (``size`` bytes) is
        already in ``message_content`` unless the frame was dropped."""
        frames = source.message_frames
        touched = frame.modified_by or frame.dropped_by
        # An uncompressed frame's payload is its content: kept once, in the message.
        wire = frame.wire if frame.compressed else b""
        frames.append(Collected(frame.fin, frame.rsv, wire, size, frame.dropped, touched))
        if not frame.fin:
            return
        message = Message(
            source.side is Side.CLIENT,
            frame.message_opcode,
            source.message_content.take(),
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
        wire_frames = message.wire_frames
        if (
            message.dropped_by is None
            and len(wire_frames) == 1
            and not (message.injected or source.want_frames or self._records)
            and target.can_send
        ):
            # The usual verdicts: a message of one frame (so a final one), forwarded changed
            # or not, nothing recording. What the general path below and ``_emit`` do for it,
            # in short.
            source.messages += 1
            writer = target.writer
            compressed = message.compressed
            if message.modified_by is None and not (compressed and source.recompress):
                # Unchanged, and its bytes still fit the receiver's window: as it came.
                if message._unchanged_frame:
                    writer.send_raw(message._unchanged_frame)
                else:
                    _, rsv, wire = wire_frames[0]
                    payload = wire if compressed else message._content
                    writer.send_frame(message._opcode, payload, True, rsv)
            elif compressed:
                if (
                    not source.recompress
                    and message.modified_by is not None
                    and source.context_takeover
                ):
                    self._start_recompressing(source)
                deflater = source.deflater
                if deflater is None:
                    assert source.deflate_params is not None
                    deflater = source.deflater = Deflater(
                        source.deflate_params, source.side is Side.CLIENT
                    )
                payload = deflater.compress_piece(message._content, True)
                writer.send_frame(message._opcode, payload, True, RSV1)
            else:
                writer.send_frame(message._opcode, message._content, True, 0)
            if target.inject_queue:
                self._message_out(target)
            else:
                target.out_open = False  # _message_out with nothing injected waiting
            return
        if message.injected:
            self._after_injected(source, target, message)
            return
        source.messages += 1
        content = message.content
        if message.dropped:
            self._message_dropped(source, message)
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
                wire = wire if message.compressed else piece
                out = OutFrame(message.opcode, piece, fin, message.compressed, wire, rsv, raw=True)
                out.first = index == 0
                self._emit(source, target, out)
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
            out = OutFrame(
                message.opcode,
                piece,
                index == len(sizes) - 1,
                message.compressed,
                verdict=verdict,
                by=message.modified_by,
                original=original if index == 0 else None,
                first=index == 0,
            )
            self._emit(source, target, out)

    def _after_injected(self, source: Leg, target: Leg, message: Message) -> None:
        """An injected message goes out whole and uncompressed (which permessage-deflate
        allows, leaving the receiver's window untouched); dropped, it never was on a wire, so
        it gets a note and no record."""
        if message.dropped:
            self._note(source.side, f"injected message dropped by {message.dropped_by}")
            return
        self._emit(
            source,
            target,
            OutFrame(message.opcode, message.content, True, False, verdict="injected"),
        )

    def _message_dropped(self, source: Leg, message: Message) -> None:
        source.dropped += 1
        self._note(source.side, f"message dropped by {message.dropped_by}")
        if self._records:
            self._record(
                whole_record(
                    source.side,
                    message.opcode,
                    message.content,
                    "dropped",
                    compressed=message.compressed,
                    by=message.dropped_by,
                )
            )
        if message.compressed and source.context_takeover:
            self._start_recompressing(source)


def _cost(event: Event | Message) -> int:
    """What ``event`` counts against ``HOOK_BACKLOG``: the bytes it holds and ``EVENT_COST``.
    A compressed piece holds its inflated content besides the wire bytes, and the content is
    what can be a thousand times larger."""
    if type(event) is DataChunk:
        data = event.data
        content = event.content
        if content is data:
            return len(data) + EVENT_COST
        return len(data) + len(content) + EVENT_COST
    if type(event) is Message:
        return len(event.content) + EVENT_COST
    return EVENT_COST
