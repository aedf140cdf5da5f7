"""The asyncio side of one proxied WebSocket: feeds the relay, writes what it says, keeps time.

Backpressure: when a peer's transport buffer is full (asyncio's ``pause_writing``), the proxy
stops reading from the other peer until it drains, so a slow reader slows its sender through
TCP flow control and the proxy's memory stays bounded by the transports' buffers. A capture
writer that falls behind (``CaptureSink.congested``) stops reading from both peers the same
way, until its thread has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Protocol

from wsproxy.logformat import opcode_name
from wsproxy.model import Flow, FrameEvent
from wsproxy.options import Options
from wsproxy.plugins import PluginChain
from wsproxy.proxy.peer import Peer
from wsproxy.sansio.deflate import DeflateParams, Inflater
from wsproxy.sansio.frames import Opcode
from wsproxy.sansio.relay import ERROR_GRACE, FrameRecord, Relay, Side

log = logging.getLogger("wsproxy")

LINGER = 2.0  # seconds to let a failed peer read our close frame before the socket goes


class CaptureSink(Protocol):
    """Where a capture writer gets a WebSocket's traffic (see ``wsproxy.capture``)."""

    def handshake(self, flow: Flow) -> None: ...

    def frame(self, flow: Flow, record: FrameRecord, timestamp: float) -> None: ...

    def close(self, flow: Flow) -> None: ...

    def sync(self) -> None: ...

    def congested(self, resume: Callable[[], None]) -> bool: ...


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
    ) -> None:
        self.conn_id = conn_id
        self.client = client
        self.server = server
        self.options = options
        self.chain = chain
        self.flow = flow
        self.loop = asyncio.get_running_loop()
        self.capture = capture
        observers: list[Callable[[FrameRecord], None]] = []
        if options.verbosity > 0:
            observers.append(self._log_frame)
        if capture is not None and flow is not None:
            observers.append(self._capture_frame)
        on_frame: Callable[[FrameRecord], None] | None = None
        if len(observers) == 1:
            on_frame = observers[0]
        elif observers:

            def on_frame(record: FrameRecord) -> None:
                for observe in observers:
                    observe(record)

        self.relay = Relay(
            max_frame_size=options.max_frame_size,
            max_message_size=options.max_message_size,
            on_frame=on_frame,
            on_event=self._log_event,
        )
        limit = options.max_message_size
        for leg in (self.relay.client, self.relay.server):
            from_client = leg.side is Side.CLIENT
            if deflate_params is not None:
                leg.deflate_params = deflate_params
                leg.reader.inflater = Inflater(deflate_params, from_client, limit)
            if chain is not None:
                leg.want_frames = chain.wants_frames
                leg.want_messages = chain.wants_messages
            leg.reader.keep_binary_masked = not leg.hooked and capture is None
        if flow is not None:
            flow._injector = self.inject
            flow._closer = self.close
            flow._aborter = self.abort
        self.relay.full_payloads = capture is not None
        self.done: asyncio.Future[None] = self.loop.create_future()
        self._last_activity = self.loop.time()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[Side] = set()
        self._hook_tasks: dict[Side, asyncio.Task[None]] = {}
        self._inline_running: set[Side] = set()
        self._capture_held = False  # the capture writer is behind: both peers wait for it

    def peer(self, side: Side) -> Peer:
        return self.client if side is Side.CLIENT else self.server

    def start(self, client_leftover: bytes, server_leftover: bytes) -> None:
        """Switch both peers into relay mode; the leftovers are frames read with the heads."""
        for side in (Side.CLIENT, Side.SERVER):
            peer = self.peer(side)
            other = self.peer(side.other)
            peer.on_data = functools.partial(self._receive, side)
            peer.on_eof = functools.partial(self._eof, side)
            peer.on_pause_writing = other.pause_reading
            peer.on_resume_writing = functools.partial(self._maybe_resume, side.other)
        for side, leftover in ((Side.CLIENT, client_leftover), (Side.SERVER, server_leftover)):
            peer = self.peer(side)
            buffered = leftover + peer.take_buffer()
            if buffered:
                self._receive(side, buffered)
            if peer.at_eof or peer.closed.done():
                self._eof(side, "connection closed")
        self._schedule_idle_check()

    async def run(self) -> None:
        await self.done

    def shutdown(self, code: int, reason: str) -> None:
        """The proxy ends this WebSocket: both peers get a close frame with ``code``."""
        self.relay.close_both(code, reason)
        self._flush()

    # -- callbacks from the peers ------------------------------------------------------------

    def _maybe_resume(self, side: Side) -> None:
        """Read from ``side`` again unless the chain or the other side's buffer holds it back."""
        if (
            side not in self._hook_tasks
            and not self.peer(side.other).write_paused
            and not self._capture_held
        ):
            self.peer(side).resume_reading()

    # -- plugins -----------------------------------------------------------------------------

    def inject(self, content: bytes | str, to_client: bool) -> bool:
        opcode = Opcode.TEXT if isinstance(content, str) else Opcode.BINARY
        payload = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        side = Side.CLIENT if to_client else Side.SERVER
        sent = self.relay.inject(side, opcode, payload)
        self._flush()
        return sent

    def abort(self) -> None:
        self._log_event(Side.CLIENT, "aborted by a plugin")
        self.relay.client.abort_transport = True
        self.relay.server.abort_transport = True
        self._flush()

    def close(self, code: int, reason: str, side: str | None) -> None:
        which = None if side is None else Side(side)
        self.relay.close_side(which, code, reason)
        self._flush()

    def _start_hooks(self) -> None:
        ran_inline = False
        for side in (Side.CLIENT, Side.SERVER):
            if self.relay.leg(side).pending is None or side in self._hook_tasks:
                continue
            if side in self._inline_running:
                continue  # a hook that injects or closes flushes from inside the chain
            self._inline_running.add(side)
            try:
                inline = self._run_hooks_inline(side)
            finally:
                self._inline_running.discard(side)
            if inline:
                ran_inline = True
                continue
            self.peer(side).pause_reading()
            self._hook_tasks[side] = self.loop.create_task(self._run_hooks(side))
        if ran_inline:
            self._flush()

    def _run_hooks_inline(self, side: Side) -> bool:
        """Run plain-function hooks right here; False when an async hook needs a task."""
        assert self.chain is not None
        leg = self.relay.leg(side)
        while leg.pending is not None:
            item = leg.pending
            if isinstance(item, FrameEvent):
                if not self.chain.inline("frame"):
                    return False
                self.chain.frame_inline(self.flow, item)
            else:
                if not self.chain.inline("message"):
                    return False
                self.chain.message_inline(self.flow, item)
            self.relay.resolve(side)
        return True

    async def _run_hooks(self, side: Side) -> None:
        """Run the chain on each pending frame or message of ``side``, in order."""
        assert self.chain is not None
        leg = self.relay.leg(side)
        try:
            while leg.pending is not None and not self.done.done():
                item = leg.pending
                if isinstance(item, FrameEvent):
                    await self.chain.frame(self.flow, item)
                else:
                    await self.chain.message(self.flow, item)
                self.relay.resolve(side)
                self._flush()
        finally:
            self._hook_tasks.pop(side, None)
            self._maybe_resume(side)

    def _receive(self, side: Side, data: bytes) -> None:
        self._last_activity = self.loop.time()
        self.relay.receive(side, data)
        self._flush()

    def _eof(self, side: Side, reason: str) -> None:
        if side in self._closing:
            # A peer we are already closing (lingering after its protocol error) is done.
            self.peer(side).close()
        self.relay.receive_eof(side, reason)
        self._flush()

    # -- acting on the relay -----------------------------------------------------------------

    def _flush(self) -> None:
        relay = self.relay
        if self.capture is not None:
            self.capture.sync()  # the capture's write-ahead: recorded before forwarded
        for side in (Side.CLIENT, Side.SERVER):
            leg = relay.leg(side)
            peer = self.peer(side)
            for data in relay.chunks_to_send(side):
                peer.write(data)
            if leg.abort_transport and side not in self._closing:
                self._closing.add(side)
                peer.abort()
            elif leg.close_transport and side not in self._closing:
                self._closing.add(side)
                self._close_peer(side)
            elif (
                leg.close_sent
                and side not in self._closing
                and f"close-{side.value}" not in self._timers
            ):
                # We sent a close: its answer (or the server's TCP close) must come in time.
                self._timers[f"close-{side.value}"] = self.loop.call_later(
                    self.options.close_timeout, self._close_timeout, side
                )
            elif leg.deferred_close is not None and "grace" not in self._timers:
                self._timers["grace"] = self.loop.call_later(ERROR_GRACE, self._send_deferred, side)
            elif leg.pending_close is not None and not self._timed(side.other):
                self._timers[f"close-{side.other.value}"] = self.loop.call_later(
                    self.options.close_timeout, self._close_timeout, side.other
                )
        if (relay.client.pending or relay.server.pending) and self.chain is not None:
            self._start_hooks()
        if self._closing == {Side.CLIENT, Side.SERVER} and not self.done.done():
            self.loop.create_task(self._finish())

    def _timed(self, side: Side) -> bool:
        return f"close-{side.value}" in self._timers

    def _close_peer(self, side: Side) -> None:
        peer = self.peer(side)
        leg = self.relay.leg(side)
        if leg.eof:
            peer.close()
        elif leg.violation is not None or not leg.close_received:
            # Half-close and read on for a moment, so the peer gets our close frame instead of
            # a reset caused by the bytes it still had in flight.
            peer.on_data = _discard
            peer.write_eof()
            self.loop.call_later(LINGER, peer.close)
        else:
            peer.close()

    def _send_deferred(self, side: Side) -> None:
        self._timers.pop("grace", None)
        if not self.done.done():
            self.relay.send_deferred_close(side)
            self._flush()

    def _close_timeout(self, side: Side) -> None:
        self._timers.pop(f"close-{side.value}", None)
        leg = self.relay.leg(side)
        if self.done.done() or leg.eof or (leg.closed_cleanly and side is Side.CLIENT):
            return
        self._log_event(side, "no close answer in time")
        self.relay.close_timeout(side)
        self._flush()

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

    async def _finish(self) -> None:
        await asyncio.wait(
            [self.client.closed, self.server.closed], timeout=LINGER + self.options.close_timeout
        )
        for peer in (self.client, self.server):
            if not peer.closed.done():
                peer.abort()
        for task in list(self._hook_tasks.values()):
            task.cancel()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if not self.done.done():
            self.done.set_result(None)

    # -- logging -----------------------------------------------------------------------------

    def _log_frame(self, record: FrameRecord) -> None:
        if record.offset:
            return  # a later piece of a frame recorded in pieces: logged with its first
        arrow = "client -> server" if record.side is Side.CLIENT else "server -> client"
        flags = "".join(
            flag
            for flag, on in (("F", record.fin), ("1", record.rsv & 0x40), ("z", record.compressed))
            if on
        )
        log.info(
            "[%s] %s %s %s len=%d %s",
            self.conn_id,
            arrow,
            opcode_name(record.opcode),
            flags or "-",
            record.length,
            preview(record),
        )

    def _capture_frame(self, record: FrameRecord) -> None:
        assert self.capture is not None and self.flow is not None
        self.capture.frame(self.flow, record, time.time())
        if not self._capture_held and self.capture.congested(self._capture_drained):
            self._capture_held = True
            self.client.pause_reading()
            self.server.pause_reading()

    def _capture_drained(self) -> None:
        """Called by the capture writer's thread: read again, on the event loop."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to resume
            self.loop.call_soon_threadsafe(self._capture_resume)

    def _capture_resume(self) -> None:
        self._capture_held = False
        for side in (Side.CLIENT, Side.SERVER):
            self._maybe_resume(side)

    def _log_event(self, side: Side, message: str) -> None:
        log.info("[%s] %s: %s", self.conn_id, side.value, message)


def _discard(data: bytes) -> None:
    """What a peer still sends while we linger after closing it is read and ignored."""


def preview(record: FrameRecord, width: int = 40) -> str:
    """A short, printable view of a payload for one log line."""
    data = record.preview
    if record.opcode == Opcode.CLOSE and len(data) >= 2:
        code = int.from_bytes(data[:2], "big")
        return f"code={code} {data[2:].decode('utf-8', 'replace')!r}"
    if record.message_opcode == Opcode.TEXT or record.opcode in (Opcode.PING, Opcode.PONG):
        text = data.decode("utf-8", "replace")
        cut = len(text) > width or len(data) >= 64
        return repr(text[:width] + ("…" if cut else ""))
    return data[: width // 2].hex(" ") + (" …" if len(data) > width // 2 else "")
