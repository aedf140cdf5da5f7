"""Two legs of a proxied WebSocket and what passes between them: events in, commands out.

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
``ERROR_GRACE`` seconds before sending its close, a timer the shell runs), finishes the
upstream's close handshake, delivers all the upstream sent meanwhile, and only then closes the
client with 1002; so a client that sends a valid message and then a bad frame still gets the
echo of the first, as a direct connection to the server would have given it.

Nothing here knows about sockets or time. Each entry point (``receive``, ``receive_eof``,
``timer_fired``, ``hooks_done``, ``inject``, ``close``, ``abort``) returns the commands of
``wsproxy.sansio.commands`` in the order they are to be carried out: records and notes as
they happened, then the bytes for each peer, then what the legs' new states ask for (close or
abort a transport, arm a timer, run hooks, stop or resume reading).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from wsproxy.sansio.closing import CloseHandshake
from wsproxy.sansio.commands import (
    AbortTransport,
    CloseTransport,
    Command,
    Finished,
    Note,
    PauseReading,
    Record,
    ResumeReading,
    RunHooks,
    Send,
    StartTimer,
    Timer,
    Wire,
)
from wsproxy.sansio.deflate import DeflateParams, Deflater, Inflater
from wsproxy.sansio.endpoint import FrameReader
from wsproxy.sansio.events import ControlFrame, DataChunk, Event, Violation
from wsproxy.sansio.frames import RSV1, CloseCode, Opcode, serialize_close
from wsproxy.sansio.framewriter import FrameWriter
from wsproxy.sansio.hookseam import HOOK_BACKLOG, HookSeam, OutFrame
from wsproxy.sansio.items import FrameEvent
from wsproxy.sansio.legs import Leg, LegEvent, LegState, Side
from wsproxy.sansio.records import (
    PREVIEW,
    RECORD_PIECE,
    FrameRecord,
    utf8_boundary,
    whole_record,
)
from wsproxy.sansio.shortcuts import STREAM_THRESHOLD, Shortcuts

# How long the upstream may go on answering a failed client before the proxy closes it: an
# echo server answers on loopback within milliseconds; the delay only runs after an error.
ERROR_GRACE = 0.25

_CLIENT = Side.CLIENT  # a module global: read for every read, where Side.CLIENT costs more

_CLOSE_TIMER = {Side.CLIENT: Timer.CLOSE_CLIENT, Side.SERVER: Timer.CLOSE_SERVER}


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """How one relay is set up; the shell builds it from the options and the plugin chain."""

    max_frame_size: int
    max_message_size: int
    close_timeout: float = 5.0
    deflate: DeflateParams | None = None
    records: bool = False  # someone listens to Record commands (the log, a capture)
    full_payloads: bool = False  # ... and wants whole contents (a capture), not previews
    want_frames: bool = False  # the plugin chain has frame hooks
    want_messages: bool = False  # ... message hooks
    # The peers whose messages the message hooks read (``PluginChain.wants_messages_from``):
    # the other peer's frames take the quiet shortcuts, as with no message hook at all.
    message_sides: frozenset[Side] = frozenset(Side)
    preview_size: int = PREVIEW  # bytes of content each record keeps without full_payloads
    # With full_payloads: pieces of a frame that start past this offset keep a preview only.
    # The log's decoding wants whole messages up to its own limit and no more; a capture
    # (None here) keeps everything.
    full_payload_limit: int | None = None


class Relay(CloseHandshake, HookSeam, Shortcuts):
    """The sans-I/O heart of one proxied WebSocket."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.client = self._leg(Side.CLIENT, config)
        self.server = self._leg(Side.SERVER, config)
        self._records = config.records
        self._hooked = self.client.hooked or self.server.hooked
        # Of each such frame's content, what its record keeps: all (-1), or a preview.
        self._keep = -1 if config.full_payloads else config.preview_size
        self._full = config.full_payloads
        self._out: list[Command] = []
        self._ended: list[Leg] = []  # legs whose transport must now be closed or aborted
        self._armed: set[Timer] = set()
        self._finished = False
        # Who started the end: "client" or "server" (a close frame or a vanished peer), or
        # "proxy" (a protocol error, a plugin, shutdown, idle timeout).
        self.closed_by: str | None = None

    @staticmethod
    def _leg(side: Side, config: RelayConfig) -> Leg:
        from_client = side is Side.CLIENT
        reader = FrameReader(
            masked=from_client,
            max_frame_size=config.max_frame_size,
            max_message_size=config.max_message_size,
        )
        leg = Leg(side, reader, FrameWriter(mask=not from_client))
        if config.deflate is not None:
            leg.deflate_params = config.deflate
            reader.inflater = Inflater(config.deflate, from_client, config.max_message_size)
        leg.want_frames = config.want_frames
        leg.want_messages = config.want_messages and side in config.message_sides
        hooked = leg.hooked
        # Nothing records or inspects this peer's frames: runs of simple frames take the fast
        # path. Recorded, not inspected: the fast path too, with records made from what it
        # returns (``_relay_recorded``). Message hooks alone: runs of simple frames become
        # messages with no reader events in between (``_queue_whole``).
        leg.quiet = not (config.records or hooked)
        leg.recorded = config.records and not hooked
        leg.whole = leg.want_messages and not leg.want_frames
        leg.recorder.preview_size = config.preview_size
        # Binary payloads nobody reads stay masked: re-masked with one XOR of the two keys.
        reader.keep_binary_masked = not leg.hooked and not config.full_payloads
        return leg

    def leg(self, side: Side) -> Leg:
        return self.client if side is Side.CLIENT else self.server

    @property
    def finished(self) -> bool:
        return not (self.client.live or self.server.live)

    # -- entry points -----------------------------------------------------------------------

    def receive(self, side: Side, data: bytes) -> list[Command]:
        """Bytes arrived from ``side``'s peer."""
        result = self.receive_fast(side, data)
        if isinstance(result, list):
            return result
        return [Send(side.other, [result])]

    def receive_fast(self, side: Side, data: bytes) -> Wire | list[Command]:
        """``receive`` for a shell that can write bytes itself: when all of ``data`` took the
        fast path (whole simple frames, or a piece of a large binary frame streaming through;
        nothing recording or inspecting them) and makes one piece, just the bytes for the
        other peer; otherwise ``receive``'s commands."""
        if side is _CLIENT:
            source, target = self.client, self.server
        else:
            source, target = self.server, self.client
        if source.quiet:
            # The quiet relay's read of small messages, written to ask the least: this runs
            # for every read (flags, no Enum members: those are looked up through EnumType).
            if source.is_open and target.is_open and not (target.out_open or target.mid_frame_out):
                reader = source.reader
                if reader.inflater is None:
                    end, out, frames = reader.take_simple(data)
                else:
                    end, out, frames = reader.take_deflated(data)
                if frames:
                    source.frames += frames
                    source.messages += frames
                    if end == len(data):  # the usual read of small messages
                        if out is None:
                            out = data
                        target.writer.bytes_sent += len(out)
                        return out
                    target.writer.send_raw(memoryview(data)[:end] if out is None else out)
                    return self._quiet_rest(source, target, memoryview(data)[end:])
            return self._quiet_rest(source, target, data)
        if (
            source.recorded
            and source.is_open
            and target.is_open
            and not (target.out_open or target.mid_frame_out)
        ):
            data = self._relay_recorded(source, target, data)
            if not data:
                return self._take()
        return self._general(source, target, data)

    def _quiet_rest(self, source: Leg, target: Leg, wire: Wire) -> Wire | list[Command]:
        """The quiet relay's read past its run of simple frames: a piece of a large binary
        frame streams through, the rest goes to the general reader."""
        if source.is_open and target.is_open:
            wire = self._stream_quiet(source, target, wire)
            if not wire:
                single = target.writer.take_single()
                return self._take() if single is None else single
        return self._general(source, target, bytes(wire))

    def _general(self, source: Leg, target: Leg, data: bytes) -> list[Command]:
        """What no fast path took, read by the general reader (message hooks alone take runs
        of whole messages first)."""
        if source.whole and source.pending is None and not source.backlog and source.is_open:
            end = self._take_whole(source, target, data)
            if end:
                if end == len(data):
                    return self._take()
                data = data[end:]
        if not source.gone:
            if source.hooked and source.backlog_bytes > HOOK_BACKLOG:
                source.reader.hold(data)  # parsed once the hooks catch up (_take)
            else:
                self._handle(source, target, source.reader.receive_data(data))
                self._read_on(source, target, HOOK_BACKLOG)
        return self._take()

    def _read_on(self, source: Leg, target: Leg, backlog: int) -> None:
        """What the reader kept (``READ_BUDGET``) comes out in batches: each is handled,
        forwarded and recorded before the next is parsed; for hooked legs only while no more
        than ``backlog`` bytes wait in the backlog, the rest when it has drained."""
        reader = source.reader
        while reader.pending and not (source.hooked and source.backlog_bytes > backlog):
            self._handle(source, target, reader.receive_data(b""))

    def receive_eof(self, side: Side, reason: str = "") -> list[Command]:
        """``side``'s peer closed or reset its TCP connection."""
        source = self.leg(side)
        if not source.gone:
            # What came before the end is read first, however much waits (one read's worth).
            self._read_on(source, self.leg(side.other), sys.maxsize)
            self._peer_gone(source, reason)
        return self._take()

    def timer_fired(self, timer: Timer) -> list[Command]:
        """A timer the relay armed with ``StartTimer`` ran out."""
        self._armed.discard(timer)
        if timer is Timer.GRACE:
            leg = self.server
            if leg.grace_close is not None:
                code, reason = leg.grace_close
                leg.grace_close = None
                self._close(leg, code, reason)
        else:
            side = Side.CLIENT if timer is Timer.CLOSE_CLIENT else Side.SERVER
            leg = self.leg(side)
            # Only a live transport can time out: one already closed, aborted or gone (the
            # client's, closed at once after its protocol error) has nothing left to wait for.
            if leg.live:
                self._note(side, "no close answer in time")
                self._close_timed_out(leg)
        return self._take()

    def take(self) -> list[Command]:
        """The commands waiting since the last entry point (after ``hooks_done_next``)."""
        return self._take()

    def close(self, side: Side | None, code: int, reason: str) -> list[Command]:
        """The proxy ends the WebSocket (a plugin, shutdown, idle timeout): ``side`` gets
        ``code`` and the other 1001, or both get ``code`` when ``side`` is None."""
        self._ended_by("proxy")
        for leg in (self.client, self.server):
            leg.grace_close = None
            if leg.owed_close is not None:
                self._send_owed(leg)
            if side is None or leg.side is side:
                self._close(leg, code, reason)
            else:
                self._close(leg, CloseCode.GOING_AWAY, "closed by a plugin")
            self._settle(leg)
        return self._take()

    def abort(self) -> list[Command]:
        """A plugin aborts the WebSocket: both transports are reset."""
        self._ended_by("proxy")
        self._note(Side.CLIENT, "aborted by a plugin")
        for leg in (self.client, self.server):
            self._transport(leg, LegEvent.ABORT)
        return self._take()

    # -- commands out -----------------------------------------------------------------------

    def _take(self) -> list[Command]:
        """The commands of this entry point, in the order the module doc gives."""
        client, server = self.client, self.server
        if self._hooked:
            # Bytes a hooked peer's reader kept while its backlog was full, once it has half
            # drained (as reading resumes).
            if client.reader.pending and not client.gone:
                self._read_on(client, server, HOOK_BACKLOG // 2)
            if server.reader.pending and not server.gone:
                self._read_on(server, client, HOOK_BACKLOG // 2)
        out = self._out
        self._out = []
        if client.writer.has_output:
            out.append(Send(Side.CLIENT, client.writer.chunks_to_send()))
        if server.writer.has_output:
            out.append(Send(Side.SERVER, server.writer.chunks_to_send()))
        if (
            client.state is LegState.OPEN
            and server.state is LegState.OPEN
            and not self._hooked
            and client.owed_close is None
            and server.grace_close is None
        ):
            return out  # the common case: nothing but frames moved
        for leg in self._ended:
            out.append(self._end_command(leg))
        self._ended.clear()
        for leg in (client, server):
            self._state_commands(leg, out)
        if not self._finished and self.finished:
            self._finished = True
            out.append(Finished())
        return out

    @staticmethod
    def _end_command(leg: Leg) -> Command:
        if leg.state is LegState.ABORTED:
            return AbortTransport(leg.side)
        # Half-close and read on for a moment, so a peer still sending gets our close frame
        # instead of a reset caused by the bytes it had in flight.
        linger = not leg.gone and (leg.violation is not None or not leg.close_received)
        return CloseTransport(leg.side, linger=linger)

    def _state_commands(self, leg: Leg, out: list[Command]) -> None:
        """Timers the leg's state asks for, hooks to run, reading to stop or resume."""
        if leg.close_sent and leg.live:
            # We sent a close: its answer (or the server's TCP close) must come in time.
            self._arm(_CLOSE_TIMER[leg.side], self.config.close_timeout, out)
        elif leg.grace_close is not None:
            self._arm(Timer.GRACE, ERROR_GRACE, out)
        elif leg.owed_close is not None:
            # This peer waits for the other's close handshake, which must end in time.
            self._arm(_CLOSE_TIMER[leg.side.other], self.config.close_timeout, out)
        if leg.pending is not None and not leg.hooks_running:
            leg.hooks_running = True
            out.append(RunHooks(leg.side, leg.pending))
        if leg.backlog_bytes > HOOK_BACKLOG and not leg.backlog_paused:
            leg.backlog_paused = True
            out.append(PauseReading(leg.side))
        elif leg.backlog_paused and leg.backlog_bytes <= HOOK_BACKLOG // 2:
            leg.backlog_paused = False
            out.append(ResumeReading(leg.side))

    def _arm(self, timer: Timer, seconds: float, out: list[Command]) -> None:
        if timer not in self._armed:
            self._armed.add(timer)
            out.append(StartTimer(timer, seconds))

    def _record(self, record: FrameRecord) -> None:
        limit = self.config.full_payload_limit
        if not self._full or (limit is not None and record.offset >= limit):
            record.payload = record.payload[: self.config.preview_size]
        self._out.append(Record(record))

    def _note(self, side: Side, text: str) -> None:
        self._out.append(Note(side, text))

    def _ended_by(self, who: str) -> None:
        if self.closed_by is None:
            self.closed_by = who

    # -- frames -----------------------------------------------------------------------------

    def _handle(self, source: Leg, target: Leg, events: list[Event]) -> None:
        if source.hooked:
            self._queue(source, target, events)
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

    def _forward_chunk(self, source: Leg, target: Leg, chunk: DataChunk) -> None:
        if chunk.frame_start:
            source.frames += 1
        sending = target.can_send
        if self._records:
            verdict = "forwarded" if sending else "dropped"
            source.recorder.chunk(source.side, chunk, verdict, self._full, self._record)
        if not sending:
            # The target is closing: RFC 6455 5.5.1 forbids data after our close frame.
            if chunk.message_end:
                self._note(source.side, "message dropped: the other side is closing")
            if chunk.frame_end and self._records:
                self._record_end(source, chunk, "dropped", "proxy")
            return
        writer = target.writer
        if chunk.frame_start and chunk.frame_end:
            writer.send_frame(chunk.opcode, chunk.data, chunk.fin, chunk.rsv, chunk.mask_key)
        elif chunk.frame_length <= STREAM_THRESHOLD:
            source.held.append(chunk.data)
            if chunk.frame_end:
                payload = b"".join(source.held)
                writer.send_frame(chunk.opcode, payload, chunk.fin, chunk.rsv, chunk.mask_key)
                source.held.clear()
        else:
            if chunk.frame_start:
                source.stream_started = False
            if (chunk.data or chunk.frame_end) and not source.stream_started:
                # The header goes with the first bytes of payload: a compressed piece still
                # being inflated (and checked) has none yet, and may still fail the frame.
                writer.start_frame(chunk.opcode, chunk.fin, chunk.rsv, chunk.frame_length)
                target.mid_frame_out = True
                source.stream_started = True
            writer.send_payload(chunk.data, chunk.mask_key)
            if chunk.frame_end:
                target.mid_frame_out = False
        if chunk.frame_end:
            if chunk.fin:
                source.messages += 1
                self._message_out(target)
            else:
                target.out_open = True
            if self._records:
                self._record_end(source, chunk, "forwarded", None)

    def _record_end(self, source: Leg, chunk: DataChunk, verdict: str, by: str | None) -> None:
        self._record(source.recorder.frame_end(source.side, chunk, verdict, by, self._full))

    def _message_out(self, target: Leg) -> None:
        """A whole message went to ``target``: injected messages waiting for it go now."""
        target.out_open = False
        if target.inject_queue:
            queued, target.inject_queue = target.inject_queue, []
            for opcode, payload in queued:
                if target.can_send:
                    target.writer.send_frame(opcode, payload)

    def _emit(self, source: Leg, target: Leg, out: OutFrame) -> None:
        """Send one data frame of ``source``'s current message (hooked path) to ``target``."""
        closing = not target.can_send
        if closing or out.drop:
            # Dropped by a plugin, or by the proxy because the target is already closing.
            if self._records:
                opcode = out.message_opcode if out.first else Opcode.CONTINUATION  # as it came
                record = _out_record(source.side, out, opcode, out.rsv, len(out.wire))
                record.verdict, record.by = "dropped", "proxy" if closing else out.by
                record.original = None
                self._record(record)
            if closing:
                return
        compressed = out.compressed
        if compressed and not out.raw and source.want_frames and source.context_takeover:
            # Frame hooks may change any frame; a compressed message can only be re-encoded
            # from its start, so with frame hooks this direction always recompresses.
            source.recompress = True
        if out.drop:
            if compressed and source.context_takeover:
                self._start_recompressing(source)
            if not (out.fin and source.out_started):
                return
            # The message was started: end it with an empty final frame.
            out.content, out.verdict = b"", "modified"
        opcode = Opcode.CONTINUATION if source.out_started else out.message_opcode
        if out.raw:
            payload, rsv = out.wire, out.rsv
        elif compressed:
            if source.deflater is None:
                assert source.deflate_params is not None
                source.deflater = Deflater(source.deflate_params, source.side is Side.CLIENT)
            payload = source.deflater.compress_piece(out.content, out.fin)
            rsv = 0 if source.out_started else RSV1
        else:
            payload, rsv = out.content, 0
        target.writer.send_frame(opcode, payload, out.fin, rsv)
        source.out_started = not out.fin
        if out.fin:
            self._message_out(target)
        else:
            target.out_open = True
        if self._records:
            self._record(_out_record(source.side, out, opcode, rsv, len(payload)))

    def _start_recompressing(self, source: Leg) -> None:
        # Under context takeover the receiver's window now lacks (or holds a different version
        # of) what the sender compressed against: the sender's later frames may point back
        # into it, so forwarding them as they are would corrupt the receiver's output. From
        # here on this direction is decompressed and compressed again by the proxy, whose
        # compressor only points back into what it sent itself (see deflate.Deflater).
        if not source.recompress:
            source.recompress = True
            self._note(source.side, "a message was changed: recompressing from now on")

    def _on_control(
        self, source: Leg, target: Leg, frame: ControlFrame, event: FrameEvent | None = None
    ) -> None:
        if event is None:
            source.frames += 1
        if self._records:
            record = whole_record(source.side, frame.opcode, frame.payload, "forwarded")
            if event is not None and event.modified:
                record.verdict, record.by = "modified", event.modified_by
                record.original = event.original_payload
            self._record(record)
        if frame.opcode != Opcode.CLOSE:
            # Pings and pongs are the peers' business: relayed unchanged, never answered here.
            if target.can_send:
                target.writer.send_frame(frame.opcode, frame.payload)
            return
        self._close_received(source, target, frame)


def _out_record(side: Side, out: OutFrame, opcode: int, rsv: int, length: int) -> FrameRecord:
    return FrameRecord(
        side=side,
        opcode=opcode,
        fin=out.fin,
        rsv=rsv,
        length=length,
        payload=out.content,
        compressed=out.compressed,
        message_opcode=out.message_opcode,
        verdict=out.verdict,
        by=out.by,
        original=out.original,
    )


__all__ = [
    "ERROR_GRACE",
    "RECORD_PIECE",
    "STREAM_THRESHOLD",
    "FrameRecord",
    "Leg",
    "Relay",
    "RelayConfig",
    "Side",
    "serialize_close",
    "utf8_boundary",
]
