"""The web UI's view of one connection and its messages (kept bounded by ``LiveState``), and
of one page watching them (``Subscriber``: a queue of encoded batches with a byte bound)."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from wsproxy.decoders.base import Decoder
from wsproxy.filtering import RecordView, UrlView
from wsproxy.filters import Filter
from wsproxy.model import Flow
from wsproxy.sansio.records import FrameRecord
from wsproxy.web.limits import MESSAGE_KEEP, SUBSCRIBER_QUEUE
from wsproxy.web.shapes import msg_dict


class Piece(Protocol):
    """A frame record as the relay (``FrameRecord``) or a capture reader (``Frame``) has it."""

    opcode: int
    message_opcode: int
    fin: bool
    length: int
    payload: bytes
    verdict: str
    original: bytes | None
    offset: int
    more: bool


class LiveMessage:
    """One message or control frame as the UI keeps it."""

    __slots__ = (
        "complete",
        "conn",
        "content",
        "decoded",
        "evicted",
        "fragments",
        "from_client",
        "opcode",
        "original",
        "seq",
        "size",
        "ts",
        "verdict",
        "wire_size",
    )

    def __init__(self, conn: LiveConn, seq: int, partial: Partial) -> None:
        self.conn = conn
        self.seq = seq
        self.from_client = partial.from_client
        self.ts = partial.ts
        self.opcode = partial.opcode
        self.size = partial.size
        self.wire_size = partial.wire_size
        self.fragments = partial.fragments
        self.verdict = partial.verdict
        self.content: bytes | None = b"".join(partial.parts)
        self.complete = partial.size == len(self.content)
        self.original = b"".join(partial.originals) if partial.originals else None
        self.decoded: dict[str, Any] | None = None
        self.evicted = False

    def kept_bytes(self) -> int:
        return len(self.content or b"") + len(self.original or b"")

    def to_dict(self) -> dict[str, Any]:
        return msg_dict(
            seq=self.seq,
            from_client=self.from_client,
            ts=self.ts,
            opcode=self.opcode,
            content=self.content or b"",
            size=self.size,
            wire_size=self.wire_size,
            fragments=self.fragments,
            verdict=self.verdict,
            decoded=self.decoded,
            original=self.original,
        )

    def record(self) -> FrameRecord:
        """This message as one whole-frame record (for the export's JSONL)."""
        from wsproxy.sansio.legs import Side

        return FrameRecord(
            side=Side.CLIENT if self.from_client else Side.SERVER,
            opcode=self.opcode,
            fin=True,
            rsv=0,
            length=self.wire_size,
            payload=self.content or b"",
            compressed=False,
            message_opcode=self.opcode,
            verdict=self.verdict,
            original=self.original,
        )


@dataclass(slots=True)
class Partial:
    """A data message whose frames are still coming (or a frame still in pieces)."""

    from_client: bool
    ts: float
    opcode: int
    verdict: str = "forwarded"
    parts: list[bytes] = field(default_factory=list)
    originals: list[bytes] = field(default_factory=list)
    kept: int = 0
    kept_original: int = 0
    size: int = 0
    wire_size: int = 0
    fragments: int = 0

    def add(self, piece: Piece, size: int | None = None) -> None:
        """``size``: the piece's content size when ``payload`` holds only its start (a
        worker's bridge sends no more than ``MESSAGE_KEEP`` of a message)."""
        data = piece.payload
        self.size += len(data) if size is None else size
        room = MESSAGE_KEEP - self.kept
        if room > 0 and data:
            chunk = data if len(data) <= room else data[:room]
            self.parts.append(chunk)
            self.kept += len(chunk)
        if piece.original is not None:
            room = MESSAGE_KEEP - self.kept_original
            if room > 0:
                chunk = piece.original[:room]
                self.originals.append(chunk)
                self.kept_original += len(chunk)
        if piece.offset == 0:  # a frame's first piece carries the frame's own fields
            self.wire_size += piece.length
            self.fragments += 1
        if piece.verdict != "forwarded" and self.verdict != "dropped":
            self.verdict = piece.verdict


class LiveConn:
    """One WebSocket (or plain HTTP exchange) as the UI keeps it."""

    def __init__(self, conn_id: str, kind: str, url: str, started: float) -> None:
        self.id = conn_id
        self.kind = kind
        self.url = url
        self.method = "GET"
        self.status: int | None = None
        self.client: str | None = None
        self.state = "open"
        self.subprotocol: str | None = None
        self.extensions: list[str] = []
        self.counts = {"client": [0, 0], "server": [0, 0]}  # messages, bytes
        self.close: dict[str, Any] = {"client": None, "server": None, "closed_by": None}
        self.error: str | None = None
        self.started = started
        self.ended: float | None = None
        self.request_headers: list[tuple[str, str]] = []
        self.response_headers: list[tuple[str, str]] = []
        self.flow: Flow | None = None  # while open: compose, close and abort go through it
        self.worker: int | None = None  # with --workers: the worker process it is on
        self.messages: deque[LiveMessage] = deque()
        self.next_seq = 1
        self.partials: dict[tuple[bool, bool], Partial] = {}
        self.decoder: Decoder | None = None
        self.decoder_chosen = False
        self.records: dict[str, dict[str, Any]] = {}  # handshake/close/http JSONL records

    def to_dict(self) -> dict[str, Any]:
        c, s = self.counts["client"], self.counts["server"]
        return {
            "id": self.id,
            "kind": self.kind,
            "url": self.url,
            "method": self.method,
            "status": self.status,
            "client": self.client,
            "state": self.state,
            "subprotocol": self.subprotocol,
            "extensions": list(self.extensions),
            "counts": {
                "client": {"messages": c[0], "bytes": c[1]},
                "server": {"messages": s[0], "bytes": s[1]},
            },
            "close": dict(self.close),
            "error": self.error,
            "started": self.started,
            "ended": self.ended,
            "decoder": None if self.decoder is None else self.decoder.protocol,
            "worker": self.worker,
        }

    def detail(self) -> dict[str, Any]:
        out = self.to_dict()
        out["request"] = {"headers": [list(h) for h in self.request_headers]}
        out["response"] = {
            "status": self.status,
            "headers": [list(h) for h in self.response_headers],
        }
        return out

    def message(self, seq: int) -> LiveMessage | None:
        """The kept message ``seq``; None when it was never there or is evicted."""
        if not self.messages:
            return None
        index = seq - self.messages[0].seq
        if 0 <= index < len(self.messages):
            return self.messages[index]
        return None

    def first_seq(self) -> int:
        return self.messages[0].seq if self.messages else self.next_seq

    def matches(self, filter: Filter) -> bool:
        """Whether ``filter`` picks this connection: by its handshake, else by a kept
        message it matches."""
        view = UrlView(
            self.url,
            method=self.method,
            status=self.status,
            request_headers=self.request_headers,
            response_headers=self.response_headers,
            is_websocket=self.kind == "websocket",
        )
        bound = filter.bind(view)
        if bound.verdict is not None:
            return bound.verdict
        return any(
            bound.matches(
                RecordView(
                    from_client=m.from_client,
                    opcode=m.opcode,
                    message_opcode=m.opcode,
                    payload=m.content or b"",
                    length=m.size,
                )
            )
            for m in self.messages
        )


class Subscriber:
    """One page's push channel: encoded batches waiting to be sent, bounded."""

    def __init__(self) -> None:
        self.queue: deque[tuple[str, int]] = deque()  # (encoded batch, events in it)
        self.queued_bytes = 0
        self.ready = asyncio.Event()
        # Events thrown away since the page last took its queue: the count the queued
        # dropped_events batch carries, so a later overflow that clears the queue (that batch
        # with it) carries it on.
        self.dropped = 0

    def push(self, batch: str, events: int) -> None:
        """Queue ``batch``, which stands for ``events`` events (a dropped_events in it counts
        as the events it says were dropped); over the queue's bound, replace the queue with
        one dropped_events for all it held and this batch."""
        if self.queued_bytes + len(batch) > SUBSCRIBER_QUEUE:
            self.dropped += events + sum(count for _, count in self.queue)
            self.queue.clear()
            self.queued_bytes = 0
            batch = json.dumps(
                {"type": "batch", "events": [{"type": "dropped_events", "count": self.dropped}]}
            )
            events = 0
        self.queue.append((batch, events))
        self.queued_bytes += len(batch)
        self.ready.set()

    def take(self) -> list[str]:
        batches = [batch for batch, _ in self.queue]
        self.queue.clear()
        self.queued_bytes = 0
        self.dropped = 0  # its dropped_events batch, if any, is among these
        self.ready.clear()
        return batches
