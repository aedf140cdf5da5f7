"""The asyncio side of one proxied WebSocket: feeds the relay events, carries out its commands.

The relay (``wsproxy.sansio.relay``) decides everything; this module only dispatches what it
returns — writes, transport closes, timers, hook runs, records — and feeds back what happened.

Backpressure: when a peer's transport buffer is full (asyncio's ``pause_writing``), the proxy
stops reading from the other peer until it drains, so a slow reader slows its sender through
TCP flow control and the proxy's memory stays bounded by the transports' buffers. The relay
stops a peer the same way when too much waits behind an item the hooks hold
(``PauseReading``), and a capture writer that falls behind (``CaptureSink.congested``) stops
both peers until its thread has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from wsproxy import logformat
from wsproxy.capture.sink import CaptureSink
from wsproxy.decoders.base import Hints
from wsproxy.decoders.connection import DECODE_LIMIT, ConnectionDecoding, StreamDecoding
from wsproxy.model import Flow, FrameEvent, Message
from wsproxy.options import Options
from wsproxy.plugins import PluginChain
from wsproxy.proxy.framelog import FrameLog
from wsproxy.proxy.peer import Peer
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
from wsproxy.sansio.deflate import DeflateParams
from wsproxy.sansio.frames import Opcode
from wsproxy.sansio.relay import FrameRecord, Relay, RelayConfig, Side

if TYPE_CHECKING:
    from wsproxy.filtering import Selection
    from wsproxy.metrics import SessionCounts

log = logging.getLogger("wsproxy")

LINGER = 2.0  # seconds to let a failed peer read our close frame before the socket goes
JOIN_AT = 64 * 1024  # the bytes of one dispatch for a peer that are joined into one write

__all__ = ["LINGER", "CaptureSink", "WebSocketSession"]


class Hold(enum.Flag):
    """Why the shell does not read from a peer right now."""

    NONE = 0
    WRITER_FULL = enum.auto()  # the other peer's transport buffer is full
    HOOKS = enum.auto()  # the relay holds too much behind an item the hooks have
    CAPTURE = enum.auto()  # the capture writer is behind


class WebSocketSession:
    """Runs one relay between two connected peers until both are closed."""

    def __init__(
        self,
        conn_id: str,
        client: Peer,
        server: Peer,
        options: Options,
        *,
        chain: PluginChain | None = None,
        flow: Flow | None = None,
        deflate_params: DeflateParams | None = None,
        capture: CaptureSink | None = None,
        view: Selection | None = None,
        hints: Hints | None = None,
        counts: SessionCounts | None = None,
    ) -> None:
        self.conn_id = conn_id
        # --metrics-port: this session's messages and bytes, counted from the frame records.
        self.counts = counts
        self.hints = hints if hints is not None else _flow_hints(flow)
        self.client = client
        self.server = server
        self.options = options
        self.chain = chain
        self.flow = flow
        self.loop = asyncio.get_running_loop()
        self.capture = capture if flow is not None else None
        self._observers: list[Callable[[FrameRecord], None]] = []
        # Decoding costs nothing until asked for: -v with decoding (the log decodes every
        # message it shows, so it needs whole payloads), or a plugin reading message.decoded
        # (``_codec``, built at the first message hook, chooses its decoder on first read).
        self._hook_codec: ConnectionDecoding | None = None
        # --view-filter: the flow's frame lines all (verdict True), none, or one by one.
        view_each = view if view is not None and view.verdict is None else None
        logging_frames = options.verbosity > 0 and (view is None or view.verdict is not False)
        decode_log = logging_frames and options.decode and options.preview_length > 0
        # The log and the capture take a dispatch's records as one run (``_flush_runs``).
        self._log_run: list[FrameRecord] = []
        self._capture_run: list[FrameRecord] = []
        if logging_frames:
            self._observers.append(self._log_run.append)
        if self.capture is not None:
            self._observers.append(self._capture_run.append)
        if counts is not None:
            self._observers.append(counts.observe)
        self.relay = Relay(
            RelayConfig(
                max_frame_size=options.max_frame_size,
                max_message_size=options.max_message_size,
                close_timeout=options.close_timeout,
                deflate=deflate_params,
                records=bool(self._observers),
                # Whole payloads for the capture, for a view filter that reads them (~b), and
                # for the log's decoding.
                full_payloads=self.capture is not None
                or decode_log
                or (view_each is not None and view_each.bound.needs_payload),
                # Without a capture, whole payloads are for the log's decoding and the view
                # filter: past the decoders' limit a preview does (memory stays bounded).
                full_payload_limit=None if self.capture is not None else DECODE_LIMIT,
                want_frames=chain is not None and chain.wants_frames,
                want_messages=chain is not None and chain.wants_messages,
                message_sides=frozenset(
                    side
                    for side in Side
                    if chain is not None and chain.wants_messages_from(side.value)
                ),
                preview_size=logformat.preview_bytes(options.preview_length),
            )
        )
        self._frame_log = FrameLog(
            conn_id,
            options.preview_length,
            view_each,
            StreamDecoding(self.hints) if decode_log else None,
        )
        if flow is not None:
            flow._injector = self.inject
            flow._closer = self.close
            flow._aborter = self.abort
        self.done: asyncio.Future[None] = self.loop.create_future()
        self._last_activity = self.loop.time()
        self._timers: dict[Timer | str, asyncio.TimerHandle] = {}
        self._closing: set[Side] = set()
        self._hook_tasks: dict[Side, asyncio.Task[None]] = {}
        self._holds = {Side.CLIENT: Hold.NONE, Side.SERVER: Hold.NONE}
        self._dispatching = False
        self._queue: list[Command] = []
        # What the commands of the current dispatch send each peer, written at its end.
        self._unsent: dict[Side, list[Wire]] = {Side.CLIENT: [], Side.SERVER: []}
        self._refusal_logged = False  # an injected message was refused (logged once)
        self._capture_held = False  # Hold.CAPTURE is on (a plain bool: asked per record)
        self._finishing: asyncio.Handle | None = None  # the wind-up, once the relay finished

    def _stamp(self, item: FrameEvent | Message, now: float | None = None) -> None:
        """What the hooks get with an item: its time (``now``, else the clock's), and for a
        message its decoder."""
        item.timestamp = time.time() if now is None else now
        if isinstance(item, Message):
            codec = self._hook_codec
            if codec is None:
                codec = self._hook_codec = ConnectionDecoding(self.hints)
            item._codec = codec

    def peer(self, side: Side) -> Peer:
        return self.client if side is Side.CLIENT else self.server

    def start(self, client_leftover: bytes, server_leftover: bytes) -> None:
        """Switch both peers into relay mode; the leftovers are frames read with the heads."""
        receivers = {side: self._receiver(side) for side in (Side.CLIENT, Side.SERVER)}
        for side in (Side.CLIENT, Side.SERVER):
            peer = self.peer(side)
            peer.on_data = receivers[side]
            peer.on_eof = functools.partial(self._eof, side)
            peer.on_pause_writing = functools.partial(self._hold, side.other, Hold.WRITER_FULL)
            peer.on_resume_writing = functools.partial(self._release, side.other, Hold.WRITER_FULL)
        for side, leftover in ((Side.CLIENT, client_leftover), (Side.SERVER, server_leftover)):
            peer = self.peer(side)
            buffered = leftover + peer.take_buffer()
            if buffered:
                receivers[side](buffered)
            if peer.at_eof or peer.closed.done():
                self._eof(side, "connection closed")
        self._schedule_idle_check()

    async def run(self) -> None:
        await self.done

    def shutdown(self, code: int, reason: str) -> None:
        """The proxy ends this WebSocket: both peers get a close frame with ``code``."""
        self._dispatch(self.relay.close(None, code, reason))

    # -- what plugins call (through the flow) ------------------------------------------------

    def inject(self, content: bytes | str, to_client: bool) -> bool:
        opcode = Opcode.TEXT if isinstance(content, str) else Opcode.BINARY
        payload = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        side = Side.CLIENT if to_client else Side.SERVER
        refusal = self.relay.inject_refusal(side)
        if refusal is None and Hold.WRITER_FULL in self._holds[side.other]:
            # Its send buffer is full: what a plugin injects waits in no unbounded queue.
            refusal = f"the {side.value} does not read fast enough"
        if refusal is not None:
            if not self._refusal_logged:
                self._refusal_logged = True
                self._log_event(
                    side.other, f"injected message not sent: {refusal} (later ones: not logged)"
                )
            return False
        self._dispatch(self.relay.inject(side, opcode, payload))
        return True

    def abort(self) -> None:
        self._dispatch(self.relay.abort())

    def close(self, code: int, reason: str, side: str | None) -> None:
        self._dispatch(self.relay.close(None if side is None else Side(side), code, reason))

    # -- events in ---------------------------------------------------------------------------

    def _receiver(self, side: Side) -> Callable[[bytes], None]:
        """What ``side``'s peer calls with each read: the relay's fast path, and when it
        returns bytes for the other peer, one write. The side, the other peer and the bound
        methods are looked up once, here: this runs for every read."""
        receive_fast = self.relay.receive_fast
        clock = self.loop.time
        other = side.other
        target = self.peer(other)

        def receive(data: bytes) -> None:
            self._last_activity = clock()
            result = receive_fast(side, data)
            if isinstance(result, list):
                self._dispatch(result)
            elif self._dispatching:
                self._queue.append(Send(other, [result]))
            else:
                # The fast path: nothing records these frames (so no capture waits to sync).
                target.write(result)

        return receive

    def _eof(self, side: Side, reason: str) -> None:
        if side in self._closing:
            # A peer we are already closing (lingering after its protocol error) is done.
            self.peer(side).close()
        self._dispatch(self.relay.receive_eof(side, reason))

    def _timer_fired(self, timer: Timer) -> None:
        self._timers.pop(timer, None)
        if not self.done.done():
            self._dispatch(self.relay.timer_fired(timer))

    # -- commands out ------------------------------------------------------------------------

    def _dispatch(self, commands: list[Command]) -> None:
        """Carry out the relay's commands in order.

        A hook run inline may call back into the relay (inject, close), and a hook's verdict
        leads to the next item's hooks: the commands of such nested calls are queued and
        carried out once the current ones are, so the stack stays flat however many items
        one read brings and no command runs in the middle of another.
        """
        if self._dispatching:
            self._queue.extend(commands)
            return
        self._dispatching = True
        try:
            self._carry_out(commands)
            while self._queue:
                batch = list(self._queue)
                self._queue.clear()
                self._carry_out(batch)
            if self._log_run or self._capture_run:
                self._flush_runs()
        finally:
            self._dispatching = False
            self._write_unsent()

    def _carry_out(self, commands: list[Command]) -> None:
        capture = self.capture
        observers = self._observers
        for command in commands:
            if isinstance(command, Record):
                for observe in observers:
                    observe(command.record)
            elif isinstance(command, Send):
                if self._log_run or self._capture_run:
                    self._flush_runs()
                if capture is not None:
                    capture.sync()  # the capture's write-ahead: recorded before forwarded
                self._unsent[command.side].extend(command.chunks)
            else:
                if self._log_run or self._capture_run:
                    self._flush_runs()  # the frames' lines before what this one logs
                if isinstance(command, CloseTransport | AbortTransport):
                    self._write_unsent()  # what was sent before goes first
                self._act(command)

    def _write_unsent(self) -> None:
        """Write what the commands so far sent each peer: a dispatch's frames for one peer (a
        message hook's verdicts come one message at a time) go out in one write, not one
        system call each. Pieces of a large frame are written as they are, not copied (in one
        system call where the transport can)."""
        for side, chunks in self._unsent.items():
            if not chunks:
                continue
            peer = self.client if side is Side.CLIENT else self.server
            if len(chunks) == 1:
                peer.write(chunks[0])
            elif sum(map(len, chunks)) <= JOIN_AT:
                peer.write(b"".join(chunks))
            else:
                peer.write_chunks(chunks)
            chunks.clear()

    def _act(self, command: Command) -> None:
        if isinstance(command, Note):
            self._log_event(command.side, command.text)
        elif isinstance(command, CloseTransport):
            self._closing.add(command.side)
            self._close_peer(command.side, command.linger)
        elif isinstance(command, AbortTransport):
            self._closing.add(command.side)
            self.peer(command.side).abort()
        elif isinstance(command, StartTimer):
            self._timers[command.timer] = self.loop.call_later(
                command.seconds, self._timer_fired, command.timer
            )
        elif isinstance(command, RunHooks):
            self._run_hooks(command.side, command.item)
        elif isinstance(command, PauseReading):
            self._hold(command.side, Hold.HOOKS)
        elif isinstance(command, ResumeReading):
            self._release(command.side, Hold.HOOKS)
        elif isinstance(command, Finished) and not self.done.done():
            self._finish()

    def _close_peer(self, side: Side, linger: bool) -> None:
        peer = self.peer(side)
        if linger:
            # Half-close and read on for a moment, so the peer gets our close frame instead of
            # a reset caused by the bytes it still had in flight.
            peer.on_data = _discard
            peer.write_eof()
            self.loop.call_later(LINGER, peer.close)
        else:
            peer.close()

    # -- reading, held and released ------------------------------------------------------------

    def _hold(self, side: Side, why: Hold) -> None:
        self._holds[side] |= why
        self.peer(side).pause_reading()

    def _release(self, side: Side, why: Hold) -> None:
        self._holds[side] &= ~why
        if self._holds[side] is Hold.NONE:
            self.peer(side).resume_reading()

    # -- plugins -----------------------------------------------------------------------------

    def _run_hooks(self, side: Side, item: FrameEvent | Message) -> None:
        """Run the chain on the relay's pending item of ``side``: inline when every hook for
        it is a plain function, else in a task (which may hold it as long as it likes).

        Inline, the items the relay has ready after it run straight on, each handed over by
        ``hooks_done_next``, and their commands are carried out together at the end: a read
        of a hundred messages costs one batch of commands, not a hundred."""
        now = time.time()
        if self._start_hooks(side, item, now):
            self._run_on(side, now)

    def _start_hooks(self, side: Side, item: FrameEvent | Message, now: float) -> bool:
        """Run the chain on ``item`` if it can run now, inline (True); else hand it to a task,
        or an injected message to the next turn of the loop (False). ``now`` is its
        timestamp."""
        chain = self.chain
        assert chain is not None
        if isinstance(item, Message):
            if not chain.inline("message"):
                self._hook_tasks[side] = self.loop.create_task(self._run_hooks_async(side, item))
                return False
            if item.injected:
                # On the next turn of the loop, as mitmproxy does: a plugin that injects in
                # answer to every injected message loops, but one message per turn, never
                # stalling the proxy (nor, within the relay's backlog limit, growing its
                # memory).
                self.loop.call_soon(self._run_injected_hooks, side, item)
                return False
            # _stamp, written out: this runs for every message.
            item.timestamp = now
            codec = self._hook_codec
            if codec is None:
                codec = self._hook_codec = ConnectionDecoding(self.hints)
            item._codec = codec
            chain.message_inline(self.flow, item)
            return True
        assert isinstance(item, FrameEvent)
        if not chain.inline("frame"):
            self._hook_tasks[side] = self.loop.create_task(self._run_hooks_async(side, item))
            return False
        self._stamp(item, now)
        chain.frame_inline(self.flow, item)
        return True

    def _run_on(self, side: Side, now: float) -> None:
        """The hooks ran on ``side``'s item inline: its verdict, then the items after it.

        They came with it, so they get its timestamp (``now``: one clock read per run, not
        per item), and a plain message is handed to the chain right here (what
        ``_start_hooks`` does for it, written out: this runs for every message)."""
        relay = self.relay
        chain = self.chain
        assert chain is not None
        flow = self.flow
        next_item = relay.hooks_done_next
        run_message = chain.message_inline
        while (item := next_item(side)) is not None:
            codec = self._hook_codec
            if (
                type(item) is Message
                and codec is not None
                and not item.injected
                and chain.messages_inline  # asked per item: a hook may reload the chain
            ):
                item.timestamp = now
                item._codec = codec
                run_message(flow, item)
            elif not self._start_hooks(side, item, now):
                break
        self._dispatch(relay.take())

    def _run_injected_hooks(self, side: Side, item: Message) -> None:
        chain = self.chain
        if self.done.done() or chain is None:
            return
        if chain.inline("message"):
            self._stamp(item)
            chain.message_inline(self.flow, item)
            self._run_on(side, item.timestamp)
        else:  # a reload made a message hook async meanwhile
            self._hook_tasks[side] = self.loop.create_task(self._run_hooks_async(side, item))

    async def _run_hooks_async(self, side: Side, item: FrameEvent | Message) -> None:
        assert self.chain is not None
        try:
            if isinstance(item, FrameEvent):
                await self.chain.frame(self.flow, item)
            else:
                await self.chain.message(self.flow, item)
        finally:
            self._hook_tasks.pop(side, None)
        if not self.done.done():
            self._dispatch(self.relay.hooks_done(side))

    # -- time --------------------------------------------------------------------------------

    def _schedule_idle_check(self) -> None:
        timeout = self.options.idle_timeout
        if timeout <= 0:
            return
        due = self._last_activity + timeout
        self._timers["idle"] = self.loop.call_at(due, self._idle_check)

    def _idle_check(self) -> None:
        if self.done.done():
            return
        if self.loop.time() - self._last_activity >= self.options.idle_timeout:
            self._log_event(Side.CLIENT, f"idle for {self.options.idle_timeout:g} s: closing")
            self.shutdown(1001, "idle timeout")
        self._schedule_idle_check()

    def _finish(self) -> None:
        """The relay is done: once both peers are closed (or after the linger and the close
        timeout, aborting what is left), the session ends. Callbacks and one timer wait for
        that, not a task: every WebSocket ends this way."""
        if self._finishing is not None:
            return
        open_peers = [peer.closed for peer in (self.client, self.server) if not peer.closed.done()]
        if not open_peers:
            self._finishing = self.loop.call_soon(self._wind_up)
            return
        self._finishing = self.loop.call_later(LINGER + self.options.close_timeout, self._wind_up)
        for closed in open_peers:
            closed.add_done_callback(self._peer_closed)

    def _peer_closed(self, _: asyncio.Future[None]) -> None:
        if self.client.closed.done() and self.server.closed.done():
            self._wind_up()

    def _wind_up(self) -> None:
        if self.done.done():
            return
        if self._finishing is not None:
            self._finishing.cancel()
        for peer in (self.client, self.server):
            if not peer.closed.done():
                peer.abort()
        for task in list(self._hook_tasks.values()):
            task.cancel()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        # The peers' callbacks are this session's bound methods: dropped, the peers and the
        # session are freed when the last reference goes, not left to the cycle collector.
        for peer in (self.client, self.server):
            peer.on_data = peer.on_eof = None
            peer.on_pause_writing = peer.on_resume_writing = None
        if not self.done.done():
            self.done.set_result(None)

    # -- records: the log and the capture ---------------------------------------------------

    def _flush_runs(self) -> None:
        """The records gathered since the last flush, to the log and the capture as runs:
        before the frames go out (the capture's write-ahead), before anything else is logged
        (lines keep their order), and at the end of each dispatch."""
        run = self._log_run
        if run:
            try:
                self._frame_log.lines(run)
            finally:
                run.clear()
        if self._capture_run:
            self._capture_flush()

    def _capture_flush(self) -> None:
        """Hand the records gathered since the last flush to the capture, as one run stamped
        with one time (a dispatch takes microseconds), and stop reading if it is behind."""
        assert self.capture is not None and self.flow is not None
        run = self._capture_run
        records = run.copy()  # the observer appends to this very list
        run.clear()
        self.capture.frames(self.flow, records, time.time())
        if not self._capture_held and self.capture.congested(self._capture_drained):
            self._capture_held = True
            self._hold(Side.CLIENT, Hold.CAPTURE)
            self._hold(Side.SERVER, Hold.CAPTURE)

    def _capture_drained(self) -> None:
        """Called by the capture writer's thread: read again, on the event loop."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to resume
            self.loop.call_soon_threadsafe(self._capture_resume)

    def _capture_resume(self) -> None:
        self._capture_held = False
        for side in (Side.CLIENT, Side.SERVER):
            self._release(side, Hold.CAPTURE)

    def _log_event(self, side: Side, message: str) -> None:
        log.info("[%s] %s: %s", self.conn_id, side.value, message)


def _flow_hints(flow: Flow | None) -> Hints:
    """What picks a decoder, from the handshake (for sessions built without ``hints``)."""
    if flow is None:
        return Hints()
    return Hints(subprotocol=flow.subprotocol, path=flow.request.path)


def _discard(data: bytes) -> None:
    """What a peer still sends while we linger after closing it is read and ignored."""
