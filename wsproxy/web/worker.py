"""A worker of ``wsproxy-web --workers N``: its proxy's traffic to the UI process, and the UI's
commands back (``wsproxy.web.remote`` is the other end; the frames are ``sansio.bridge``'s).

The worker runs the proxy as ``wsproxy`` does, with ``WorkerCompanion`` in place of the UI:
``BridgeSink`` is its capture sink (the records ``LiveState`` would get, as bridge items)
and its breakpoints engine goes first in the chain, its pauses sent to the UI process and
decided there. Commands that come back: send a message into a connection, close it, abort
it, set the breakpoint rules, resolve a pause.

The relay never waits for the UI process. Items are written to the socket's transport
without awaiting a drain; once more than ``SEND_BUFFER`` bytes wait there, frame records and
HTTP exchanges are dropped (counted, the count sent as ``dropped`` once there is room; the
rest of a message whose piece was dropped is dropped too, so the UI never joins half
messages). Handshakes, closes and pauses are dropped only past ``HARD_BUFFER``. A broken
bridge is one log line: the worker goes on proxying and connects again, sending the
connections still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wsproxy.model import Flow, HttpExchange
from wsproxy.sansio.bridge import BridgeError, BridgeReader, encode
from wsproxy.sansio.frames import Opcode
from wsproxy.sansio.records import FrameRecord
from wsproxy.web.limits import MESSAGE_KEEP
from wsproxy.web.liverecords import http_record
from wsproxy.web.tee import Tee

if TYPE_CHECKING:
    from wsproxy.proxy.server import Capture, ProxyServer
    from wsproxy.web.breakpoints import Breakpoints

log = logging.getLogger("wsproxy")

BRIDGE_ENV = "WSPROXY_WEB_BRIDGE"  # the UI process's socket, set for its workers
SEND_BUFFER = 4 * 1024 * 1024  # bytes waiting for the UI process before records are dropped
HARD_BUFFER = 4 * SEND_BUFFER  # ... before anything is (handshakes, closes, pauses)
RECONNECT = (0.2, 5.0)  # seconds: first and longest wait between two tries


@dataclass(frozen=True, slots=True)
class Identity:
    """Which worker this is (``WSPROXY_WORKER="i/N"``)."""

    index: int
    count: int
    tag: str  # "w2", "w2r1" once restarted (wsproxy.workers.worker_tag)


class BridgeLink:
    """The worker's connection to the UI process: items out, commands in, connecting again."""

    def __init__(self, path: str, identity: Identity) -> None:
        self.path = path
        self.identity = identity
        self.on_connect: Any = None  # called with no argument once connected (send the state)
        self.on_command: Any = None  # called with each command item
        self._writer: asyncio.StreamWriter | None = None
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None

    def send(self, item: dict[str, Any], *, droppable: bool = True) -> bool:
        """Write ``item`` now, or count it dropped (not connected, or the UI process behind)."""
        writer = self._writer
        if writer is None or writer.is_closing():
            self.dropped += 1
            return False
        waiting = writer.transport.get_write_buffer_size()
        if waiting > (SEND_BUFFER if droppable else HARD_BUFFER):
            self.dropped += 1
            return False
        if self.dropped and waiting < SEND_BUFFER // 2:
            count, self.dropped = self.dropped, 0
            writer.write(encode({"type": "dropped", "count": count}))
        try:
            writer.write(encode(item))
        except ValueError:  # over the frame limit: nothing the relay sends is, but never fail
            self.dropped += 1
            return False
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="web bridge")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()

    async def _run(self) -> None:
        wait, said = RECONNECT[0], False
        where = f"web bridge of worker {self.identity.index}/{self.identity.count}"
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self.path)
            except OSError as error:
                if not said:
                    log.warning(
                        "%s: cannot connect to the UI process: %s; proxying goes on, trying again",
                        where,
                        error.strerror or error,
                    )
                    said = True
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECONNECT[1])
                continue
            self._writer = writer
            wait, said = RECONNECT[0], False
            writer.write(encode(self._hello()))
            if self.on_connect is not None:
                self.on_connect()
            why = await self._read(reader)
            await self._close()
            log.warning(
                "%s: the UI process went away (%s); proxying goes on, connecting again", where, why
            )
            said = True

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "worker": self.identity.index,
            "count": self.identity.count,
            "pid": os.getpid(),
            "tag": self.identity.tag,
        }

    async def _read(self, reader: asyncio.StreamReader) -> str:
        frames = BridgeReader()
        while True:
            try:
                data = await reader.read(256 * 1024)
            except OSError as error:
                return error.strerror or str(error)
            if not data:
                return "connection closed"
            frames.feed(data)
            try:
                items = frames.items()
            except BridgeError as error:
                return str(error)
            for item in items:
                if self.on_command is None:
                    continue
                try:
                    self.on_command(item)
                except Exception as error:  # a bug: one line, the bridge and the proxy go on
                    log.warning("web bridge: command %r failed: %r", item.get("type"), error)

    async def _close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class BridgeSink:
    """The capture sink of a worker: every record ``LiveState`` would get, over the bridge;
    and the flows it names, for the commands that come back."""

    def __init__(self, link: BridgeLink) -> None:
        self.link = link
        self.flows: dict[str, Flow] = {}  # open (or opening) flows by id
        # Per (flow, side, injected): bytes of the current message sent, or -1 while the
        # rest of a message one of whose pieces was dropped is skipped.
        self._sent: dict[tuple[str, bool, bool], int] = {}

    def resend_open(self) -> None:
        """After (re)connecting: the connections open now, so the UI lists them again."""
        from wsproxy.capture.jsonl import handshake_record

        self._sent.clear()
        for flow in list(self.flows.values()):
            kind = "handshake" if flow.response is not None else "connecting"
            self.link.send({**handshake_record(flow), "type": kind}, droppable=False)

    # -- the capture sink -------------------------------------------------------------------

    def wants(self, flow: Flow) -> bool:
        return True

    def handshake_started(self, flow: Flow) -> None:
        from wsproxy.capture.jsonl import handshake_record

        self.flows[flow.id] = flow
        self.link.send({**handshake_record(flow), "type": "connecting"}, droppable=False)

    def handshake(self, flow: Flow) -> None:
        from wsproxy.capture.jsonl import handshake_record

        self.flows[flow.id] = flow
        self.link.send(handshake_record(flow), droppable=False)

    def handshake_failed(self, flow: Flow, status: int | None, error: str) -> None:
        import time

        self.flows.pop(flow.id, None)
        headers = [] if flow.response is None else [list(h) for h in flow.response.headers.items()]
        item = {
            "type": "failed",
            "conn": flow.id,
            "status": status,
            "error": error,
            "response_headers": headers,
            "ts": time.time(),
        }
        self.link.send(item, droppable=False)

    def frames(self, flow: Flow, records: Sequence[FrameRecord], timestamp: float) -> None:
        for record in records:
            self.frame(flow, record, timestamp)

    def frame(self, flow: Flow, record: FrameRecord, timestamp: float) -> None:
        from_client = record.side.value == "client"
        key = (flow.id, from_client, record.verdict == "injected")
        control = record.opcode >= Opcode.CLOSE
        starts = control or (record.opcode != Opcode.CONTINUATION and record.offset == 0)
        sent = 0 if starts else self._sent.get(key, 0)
        if sent < 0:
            return  # the rest of a message a piece of which was dropped
        payload = record.payload
        room = MESSAGE_KEEP - sent
        kept = payload if len(payload) <= room else payload[: max(room, 0)]
        original = record.original
        if original is not None and len(original) > MESSAGE_KEEP:
            original = original[:MESSAGE_KEEP]
        item = {
            "type": "frame",
            "conn": flow.id,
            "ts": timestamp,
            "from_client": from_client,
            "opcode": record.opcode,
            "message_opcode": record.message_opcode,
            "fin": record.fin,
            "length": record.length,
            "size": len(payload),
            "payload": kept,
            "verdict": record.verdict,
            "offset": record.offset,
            "more": record.more,
        }
        if original is not None:
            item["original"] = original
        ok = self.link.send(item)
        if control:
            return
        ends = record.fin and not record.more
        if not ok and not ends:
            self._sent[key] = -1
        elif ends:
            self._sent.pop(key, None)
        else:
            self._sent[key] = sent + len(kept)

    def close(self, flow: Flow) -> None:
        from wsproxy.capture.jsonl import close_record

        self.flows.pop(flow.id, None)
        for key in [k for k in self._sent if k[0] == flow.id]:
            del self._sent[key]
        self.link.send(close_record(flow), droppable=False)

    def sync(self) -> None:
        """Nothing to write ahead: the UI is no durable record."""

    def congested(self, resume: Any) -> bool:
        return False  # the relay never waits for the UI

    def wants_http(
        self, url: str, method: str = "GET", headers: Sequence[tuple[str, str]] = ()
    ) -> bool:
        return True

    def http(self, exchange: HttpExchange) -> None:
        self.link.send(http_record(exchange))

    async def aclose(self) -> None:
        """Nothing buffered here to finish (``Capture``'s last call)."""


class WorkerCompanion:
    """``wsproxy.runner.Companion`` of a worker: the bridge instead of the UI."""

    def __init__(self, path: str, identity: Identity, breakpoints: Breakpoints) -> None:
        self.link = BridgeLink(path, identity)
        self.sink = BridgeSink(self.link)
        self.breakpoints = breakpoints
        self.plugins: Sequence[object] = [breakpoints]
        breakpoints.on_event = self._pause_event
        self.link.on_connect = self.sink.resend_open
        self.link.on_command = self._command

    def capture(self, capture: Capture | None) -> Capture | None:
        if capture is None:
            return self.sink
        return Tee(self.sink, capture)

    async def start(self, server: ProxyServer | None) -> None:
        self.link.start()

    async def stop(self) -> None:
        await self.link.stop()

    def _pause_event(self, event: dict[str, Any]) -> None:
        if event.get("type") in ("pause", "resume"):  # the rule list is the UI process's
            self.link.send(event, droppable=False)

    # -- commands from the UI process -------------------------------------------------------

    def _command(self, item: dict[str, Any]) -> None:
        kind = item.get("type")
        try:
            if kind == "rules":
                self.breakpoints.set_rules(item["rules"])
                return
            if kind == "resolve":
                self.breakpoints.resolve(str(item["pause"]), item["action"])
                return
            flow = self.sink.flows.get(str(item.get("conn")))
            if flow is None:
                self._reply(item, False, "connection is not open")
            elif kind == "inject":
                content = item["text"] if "text" in item else item["payload"]
                sent = flow.inject(content, to_client=bool(item["to_client"]))
                self._reply(item, sent, None if sent else "closing or not reading fast enough")
            elif kind == "close":
                flow.close(int(item["code"]), str(item["reason"]), side=item.get("side"))
                self._reply(item, True, None)
            elif kind == "abort":
                flow.abort()
                self._reply(item, True, None)
            else:
                log.warning("web bridge: unknown command %r from the UI process", kind)
        except (KeyError, ValueError, TypeError) as error:
            # The UI process checked it already; a pause that ended meanwhile lands here.
            log.info("web bridge: command %r not done: %s", kind, error)
            self._reply(item, False, str(error))

    def _reply(self, item: dict[str, Any], ok: bool, error: str | None) -> None:
        if "id" in item:
            self.link.send(
                {"type": "reply", "id": item["id"], "ok": ok, "error": error}, droppable=False
            )


def identity_from_env() -> Identity | None:
    """This worker's identity (None: not a worker of a supervisor)."""
    from wsproxy.workers import worker_identity, worker_tag

    identity = worker_identity()
    if identity is None:
        return None
    return Identity(identity.index, identity.count, worker_tag())
