"""What the web UI knows: every connection and its recent messages, bounded, pushed in batches.

``LiveState`` is a capture sink (``wsproxy.capture.sink.CaptureSink``): the session hands it
the same records a ``-w`` capture gets — the handshake with its headers, every frame and
control frame with its verdict (forwarded, modified with the original, dropped, injected),
the close, and plain HTTP exchanges — without adding a plugin hook, so the relay keeps its
fast path (no message reassembly for hooks, no task per message). ``Tee`` puts it beside the
run's real capture.

Never waits, always bounded (the relay must not slow down for a page):

* per connection the last ``history`` messages (``--web-history``), in all at most
  ``MAX_MESSAGES`` (older ones are forgotten first); each keeps a preview and up to
  ``MESSAGE_KEEP`` bytes of its content for download, in all at most ``content_budget`` bytes
  (the oldest contents are let go first: their download answers 410, as an evicted one's);
* at most ``MAX_CONNECTIONS`` connections (the oldest closed ones go first);
* events for the page are collected only while someone watches, sent at most every
  ``FLUSH_INTERVAL`` (a batch, encoded once for every subscriber); a connection's counters
  are sent once per batch, not once per message; a subscriber more than ``SUBSCRIBER_QUEUE``
  bytes behind loses its queue and gets ``dropped_events`` (it refetches through REST).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from wsproxy.filtering import hints_of
from wsproxy.model import Flow, HttpExchange
from wsproxy.sansio.frames import Opcode
from wsproxy.sansio.records import FrameRecord
from wsproxy.web.limits import (
    CONTENT_BUDGET,
    FLUSH_INTERVAL,
    HISTORY,
    MAX_CONNECTIONS,
    MAX_MESSAGES,
    MAX_PENDING,
)
from wsproxy.web.livemodel import LiveConn, LiveMessage, Partial, Piece, Subscriber
from wsproxy.web.liverecords import close_dict, handshake_dict, http_dict, http_record
from wsproxy.web.shapes import close_of


class LiveState:
    """Every connection the UI shows; a capture sink for the proxy (see the module doc)."""

    def __init__(
        self,
        *,
        history: int = HISTORY,
        content_budget: int = CONTENT_BUDGET,
        max_messages: int = MAX_MESSAGES,
        max_connections: int = MAX_CONNECTIONS,
        readonly: bool = False,
    ) -> None:
        self.history = history
        self.content_budget = content_budget
        self.max_messages = max_messages
        self.max_connections = max_connections
        self.readonly = readonly
        self.conns: dict[str, LiveConn] = {}
        self._all: deque[LiveMessage] = deque()  # every kept message, oldest first
        self._with_content: deque[LiveMessage] = deque()  # those holding content, oldest first
        self.content_bytes = 0
        self.subscribers: set[Subscriber] = set()
        self._pending: list[LiveMessage | dict[str, Any]] = []
        self._dirty: dict[str, LiveConn] = {}
        self._overflow = 0
        self._flush_handle: asyncio.TimerHandle | None = None
        self._http_ids = 0

    # -- the capture sink -------------------------------------------------------------------

    def wants(self, flow: Flow) -> bool:
        return True

    def handshake(self, flow: Flow) -> None:
        from wsproxy.capture.jsonl import handshake_record

        record = handshake_record(flow)
        conn = self._open_conn(flow.id, "websocket", flow.request.url, flow.started, record)
        conn.flow = flow
        self._changed(conn)

    def handshake_started(self, flow: Flow) -> None:
        """The upgrade went upstream: listed as "connecting" until it opens or fails (no
        capture record: an export has only what a capture would have)."""
        from wsproxy.capture.jsonl import handshake_record

        self.take_connecting(handshake_record(flow))

    def handshake_failed(self, flow: Flow, status: int | None, error: str) -> None:
        """The upgrade never opened: closed, with the upstream's status (or the one the
        client was answered with) and why."""
        headers = [] if flow.response is None else list(flow.response.headers.items())
        self.take_failed(flow.id, status, error, headers, time.time())

    def frame(self, flow: Flow, record: FrameRecord, timestamp: float) -> None:
        conn = self.conns.get(flow.id)
        if conn is not None:
            self.take_piece(conn, record.side.value == "client", record, timestamp)

    def frames(self, flow: Flow, records: Sequence[FrameRecord], timestamp: float) -> None:
        for record in records:
            self.frame(flow, record, timestamp)

    def close(self, flow: Flow) -> None:
        from wsproxy.capture.jsonl import close_record

        conn = self.conns.get(flow.id)
        if conn is not None:
            conn.flow = None
            self.closed(conn, close_record(flow))

    def sync(self) -> None:
        """Nothing to write ahead: the UI is no durable record."""

    def congested(self, resume: Callable[[], None]) -> bool:
        return False  # the relay never waits for the UI

    def wants_http(
        self, url: str, method: str = "GET", headers: Sequence[tuple[str, str]] = ()
    ) -> bool:
        return True

    def http(self, exchange: HttpExchange) -> None:
        self.take_http(http_record(exchange))

    # -- records in (live, or read from a capture) ------------------------------------------

    def take_connecting(self, record: dict[str, Any]) -> LiveConn:
        """A handshake record of an upgrade still going upstream (``handshake_started``)."""
        conn_id, url, started = str(record["conn"]), record["url"], float(record["ts"])
        conn = self._open_conn(conn_id, "websocket", url, started, {})
        conn.state = "connecting"
        conn.client = record["client"]
        conn.request_headers = [(str(k), str(v)) for k, v in record["request_headers"]]
        self._changed(conn)
        return conn

    def take_failed(
        self,
        conn_id: str,
        status: int | None,
        error: str,
        response_headers: Sequence[Sequence[str]],
        ended: float,
    ) -> None:
        """``handshake_failed`` of a connection listed as connecting."""
        conn = self.conns.get(conn_id)
        if conn is None or conn.state != "connecting":
            return
        conn.state = "closed"
        conn.status = status
        conn.error = error
        conn.ended = ended
        if response_headers:
            conn.response_headers = [(str(k), str(v)) for k, v in response_headers]
        self._changed(conn)
        self._evict_conns()

    def take_handshake(self, record: dict[str, Any]) -> LiveConn:
        conn = self._open_conn(
            str(record["conn"]), "websocket", record["url"], float(record["ts"]), record
        )
        self._changed(conn)
        return conn

    def _open_conn(
        self, conn_id: str, kind: str, url: str, started: float, record: dict[str, Any]
    ) -> LiveConn:
        old = self.conns.pop(conn_id, None)
        if old is not None:  # a capture with the same id twice: the newer wins
            self._forget_conn(old)
        conn = LiveConn(conn_id, kind, url, started)
        conn.client = record.get("client")
        conn.status = record.get("status")
        conn.method = record.get("method", "GET")
        conn.subprotocol = record.get("subprotocol")
        conn.extensions = list(record.get("extensions", []))
        conn.request_headers = [(str(k), str(v)) for k, v in record.get("request_headers", [])]
        conn.response_headers = [(str(k), str(v)) for k, v in record.get("response_headers", [])]
        conn.records["handshake" if kind == "websocket" else "http"] = record
        self.conns[conn_id] = conn
        self._evict_conns()
        return conn

    def take_piece(
        self, conn: LiveConn, from_client: bool, piece: Piece, ts: float, size: int | None = None
    ) -> None:
        """One frame record (or one piece of a frame recorded in pieces) of ``conn``
        (``size``: see ``Partial.add``)."""
        if piece.opcode >= Opcode.CLOSE:
            control = Partial(from_client, ts, piece.opcode)
            control.add(piece, size)
            self._store(conn, control)
            return
        key = (from_client, piece.verdict == "injected")
        partial = conn.partials.get(key)
        if partial is None or (piece.opcode != Opcode.CONTINUATION and piece.offset == 0):
            partial = conn.partials[key] = Partial(from_client, ts, piece.message_opcode)
        partial.add(piece, size)
        if piece.fin and not piece.more:
            del conn.partials[key]
            self._store(conn, partial)

    def closed(self, conn: LiveConn, record: dict[str, Any]) -> None:
        conn.records["close"] = record
        conn.state = "closed"
        conn.ended = float(record["ts"])
        for side in ("client", "server"):
            info = record.get(side) or {}
            if info.get("received_close"):
                conn.close[side] = {"code": info.get("code"), "reason": info.get("reason", "")}
        conn.close["closed_by"] = record.get("closed_by")
        conn.error = record.get("error")
        conn.partials.clear()
        self._changed(conn)
        self._evict_conns()

    def take_http(self, record: dict[str, Any]) -> LiveConn:
        """A plain HTTP exchange (a JSONL ``http`` record): a connection of kind "http"."""
        self._http_ids += 1
        conn_id = f"{record.get('conn')}-h{self._http_ids}"
        conn = self._open_conn(conn_id, "http", record["url"], float(record["ts"]), record)
        conn.state = "closed"
        end = (record.get("timings") or {}).get("end")
        conn.ended = conn.started + end if end is not None else None
        conn.error = record.get("error")
        self._changed(conn)
        return conn

    # -- keeping, bounded -------------------------------------------------------------------

    def _store(self, conn: LiveConn, partial: Partial) -> None:
        message = LiveMessage(conn, conn.next_seq, partial)
        conn.next_seq += 1
        if message.opcode < Opcode.CLOSE:
            counts = conn.counts["client" if message.from_client else "server"]
            counts[0] += 1
            counts[1] += message.size
            self._decode(conn, message)
        elif message.opcode == Opcode.CLOSE and message.verdict != "injected":
            side = "client" if message.from_client else "server"
            conn.close[side] = close_of(message.content or b"") or {"code": None, "reason": ""}
            if conn.state == "open":
                conn.state = "closing"
        conn.messages.append(message)
        self._all.append(message)
        if message.content or message.original:
            self._with_content.append(message)
            self.content_bytes += message.kept_bytes()
        if len(conn.messages) > self.history:
            self._evict(conn.messages.popleft())
        while len(self._all) > self.max_messages:
            old = self._all.popleft()
            if not old.evicted:
                old.conn.messages.popleft()  # the oldest of its connection, too
                self._evict(old)
        while self.content_bytes > self.content_budget and self._with_content:
            self._drop_content(self._with_content.popleft())
        # Messages let go of above stay queued until they reach the front: clear the front
        # (eviction goes mostly oldest first, so these queues stay near their bounds).
        with_content, every = self._with_content, self._all
        while with_content and with_content[0].content is None and with_content[0].original is None:
            with_content.popleft()
        while every and every[0].evicted:
            every.popleft()
        if self.subscribers:
            if len(self._pending) < MAX_PENDING:
                self._pending.append(message)
            else:
                self._overflow += 1
            self._changed(conn)

    def _evict(self, message: LiveMessage) -> None:
        message.evicted = True
        self._drop_content(message)

    def _drop_content(self, message: LiveMessage) -> None:
        if message.content is not None or message.original is not None:
            self.content_bytes -= message.kept_bytes()
            message.content = None
            message.original = None

    def _evict_conns(self) -> None:
        """Over MAX_CONNECTIONS: forget the oldest closed connections (open ones stay)."""
        excess = len(self.conns) - self.max_connections
        if excess <= 0:
            return
        for conn in [c for c in self.conns.values() if c.state == "closed"][:excess]:
            del self.conns[conn.id]
            self._forget_conn(conn)

    def _forget_conn(self, conn: LiveConn) -> None:
        for message in conn.messages:
            self._evict(message)
        conn.messages.clear()
        self._dirty.pop(conn.id, None)

    def _decode(self, conn: LiveConn, message: LiveMessage) -> None:
        """The message's protocol summary, when a decoder claims (or sniffs) the connection;
        a connection none takes is decoded no further (no cost per message)."""
        content = message.content or b""
        text = message.opcode == Opcode.TEXT
        if not conn.decoder_chosen:
            conn.decoder_chosen = True
            from wsproxy.decoders.registry import choose

            hints = hints_of(conn.subprotocol, conn.url)
            factory = choose(hints, content, text)
            conn.decoder = None if factory is None else factory.new(hints)
        if conn.decoder is None or not message.complete:
            return
        try:
            decoded = conn.decoder.decode(content, text=text, from_client=message.from_client)
        except Exception:  # a decoder must never take the UI down: no summary, that is all
            return
        if decoded is not None:
            message.decoded = {
                "protocol": decoded.protocol,
                "kind": decoded.kind,
                "summary": decoded.summary,
            }

    # -- the push channel -------------------------------------------------------------------

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber()
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        if not self.subscribers:
            self._pending.clear()
            self._dirty.clear()

    def push(self, event: dict[str, Any]) -> None:
        """An event from elsewhere (the breakpoints' pause, resume, rule list)."""
        if not self.subscribers:
            return
        if event.get("type") == "dropped_events":
            self._overflow += event["count"]  # a worker's: one count with this batch's own
        elif len(self._pending) < MAX_PENDING:
            self._pending.append(event)
        else:
            self._overflow += 1
        self._schedule()

    def _changed(self, conn: LiveConn) -> None:
        if self.subscribers:
            self._dirty[conn.id] = conn
            self._schedule()

    def _schedule(self) -> None:
        if self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # reading a capture before the server runs: nobody watches
                return
            self._flush_handle = loop.call_later(FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        """Send what happened since the last batch to every subscriber, encoded once."""
        self._flush_handle = None
        events: list[dict[str, Any]] = [
            {"type": "conn", "conn": conn.to_dict()} for conn in self._dirty.values()
        ]
        for item in self._pending:
            if isinstance(item, LiveMessage):
                events.append({"type": "msg", "conn": item.conn.id, "msg": item.to_dict()})
            else:
                events.append(item)
        # What the batch stands for, should a page's queue drop it: its events, with the
        # overflow notice counted as the events it stands for.
        weight = len(events) + self._overflow
        if self._overflow:
            events.append({"type": "dropped_events", "count": self._overflow})
        self._pending.clear()
        self._dirty.clear()
        self._overflow = 0
        if not events:
            return
        batch = json.dumps({"type": "batch", "events": events}, separators=(",", ":"))
        for subscriber in self.subscribers:
            subscriber.push(batch, weight)

    def hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "version": 1,
            "readonly": self.readonly,
            "web_history": self.history,
        }

    # -- reading a capture (-r FILE) --------------------------------------------------------

    def load(self, records: Iterator[Any]) -> int:
        """Fill the state from a capture's records (``reader.read_capture``); returns how
        many connections it has."""
        from wsproxy.capture.records import Close, Connection, Frame, Http

        for record in records:
            if isinstance(record, Connection):
                self.take_handshake(handshake_dict(record))
            elif isinstance(record, Frame):
                conn = self.conns.get(record.conn)
                if conn is not None:
                    self.take_piece(conn, record.direction == "client", record, record.time)
            elif isinstance(record, Close):
                conn = self.conns.get(record.conn)
                if conn is not None:
                    self.closed(conn, close_dict(record))
            elif isinstance(record, Http):
                self.take_http(http_dict(record))
        return len(self.conns)
