"""One peer's side of a proxied WebSocket: its close handshake as a state machine, and the
bookkeeping the relay keeps about the frames going each way.

The close handshake of RFC 6455 7.1 and the fate of the TCP connection make one state per leg,
changed only through the transition table below (the h11 and wsproto way). Every question the
relay asks about a leg — may a frame still be sent to it, is its transport gone — is asked of
that state, in one place.

::

    OPEN --send close--> CLOSE_SENT --receive close--> CLOSED
    OPEN --receive close--> CLOSE_RECEIVED --send close--> CLOSED
    any live state --peer gone--> GONE      (the peer closed or reset TCP)
    any live state --abort------> ABORTED   (the proxy resets TCP: a frame to it was cut)
    any live state --end--------> ENDED     (the proxy closes TCP, the handshake being over)
    ENDED or ABORTED --peer gone--> GONE

OPEN, CLOSE_SENT, CLOSE_RECEIVED and CLOSED are live: the transport is up. Entering a
terminal state from a live one is when the shell is told to close or abort the transport.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from wsproxy.sansio.deflate import DeflateParams, Deflater
from wsproxy.sansio.endpoint import FrameReader
from wsproxy.sansio.events import ControlFrame, Event, Violation
from wsproxy.sansio.framewriter import FrameWriter
from wsproxy.sansio.items import FrameEvent, Message
from wsproxy.sansio.records import Joiner, StreamRecorder


class Side(enum.Enum):
    """Which peer a leg talks to; also names the direction of the frames that peer sends."""

    # Members are singletons compared by identity: the C hash, not Enum's Python one
    # (they key the relay's dicts and the transition table).
    __hash__ = object.__hash__

    CLIENT = "client"
    SERVER = "server"

    @property
    def other(self) -> Side:
        return Side.SERVER if self is Side.CLIENT else Side.CLIENT


class LegState(enum.Enum):
    __hash__ = object.__hash__  # as Side's

    OPEN = "open"
    CLOSE_SENT = "close sent"
    CLOSE_RECEIVED = "close received"
    CLOSED = "closed"
    ENDED = "ended"
    ABORTED = "aborted"
    GONE = "gone"


class LegEvent(enum.Enum):
    __hash__ = object.__hash__  # as Side's

    SEND_CLOSE = "send close"
    RECEIVE_CLOSE = "receive close"
    PEER_GONE = "peer gone"
    ABORT = "abort"
    END = "end"


_LIVE = (LegState.OPEN, LegState.CLOSE_SENT, LegState.CLOSE_RECEIVED, LegState.CLOSED)

TRANSITIONS: dict[tuple[LegState, LegEvent], LegState] = {
    (LegState.OPEN, LegEvent.SEND_CLOSE): LegState.CLOSE_SENT,
    (LegState.OPEN, LegEvent.RECEIVE_CLOSE): LegState.CLOSE_RECEIVED,
    (LegState.CLOSE_RECEIVED, LegEvent.SEND_CLOSE): LegState.CLOSED,
    (LegState.CLOSE_SENT, LegEvent.RECEIVE_CLOSE): LegState.CLOSED,
    **{(state, LegEvent.PEER_GONE): LegState.GONE for state in _LIVE},
    **{(state, LegEvent.ABORT): LegState.ABORTED for state in _LIVE},
    **{(state, LegEvent.END): LegState.ENDED for state in _LIVE},
    (LegState.ENDED, LegEvent.PEER_GONE): LegState.GONE,
    (LegState.ABORTED, LegEvent.PEER_GONE): LegState.GONE,
}

# States in which a frame may still go to the peer: our close frame has not gone out.
_SENDABLE = frozenset({LegState.OPEN, LegState.CLOSE_RECEIVED})


class StateError(Exception):
    """A transition the table does not have: a bug in the relay, never the peers' doing."""


@dataclass(slots=True)
class CloseFrame:
    """A close frame as sent or received: its code (None when it had none) and reason."""

    code: int | None
    reason: str = ""
    payload: bytes = b""


@dataclass(slots=True)
class Leg:
    """One peer's connection state, as the relay sees it."""

    side: Side
    reader: FrameReader
    writer: FrameWriter
    state: LegState = LegState.OPEN
    # Answers about ``state``, kept beside it by ``change`` because the relay asks them for
    # every frame: may a frame still go to this peer (RFC 6455 5.5.1: nothing after our
    # close)? Is the transport up, and not yet to be closed by the proxy? Is the leg still
    # OPEN (a plain attribute: an Enum member is looked up through its metaclass)?
    can_send: bool = field(init=False)
    live: bool = field(init=False)
    is_open: bool = field(init=False)
    received: CloseFrame | None = None  # the peer's close frame
    sent: CloseFrame | None = None  # ours
    violation: Violation | None = None
    # A frame header went out whose payload has not all followed: no control frame fits now.
    mid_frame_out: bool = False
    # The close owed to this peer once the other peer's close handshake is over (it failed
    # first and waits), and the close held back until ERROR_GRACE has passed (the upstream,
    # when the client failed).
    owed_close: tuple[int, str] | None = None
    grace_close: tuple[int, str] | None = None
    messages: int = 0
    frames: int = 0
    dropped: int = 0
    held: list[bytes] = field(default_factory=list)  # a small frame, until it is whole
    stream_started: bool = False  # the header of the frame streaming through went out
    recorder: StreamRecorder = field(default_factory=lambda: StreamRecorder())
    # -- the plugin chain (only when a plugin asks for frames or messages from this peer) --
    want_frames: bool = False
    want_messages: bool = False
    # Which shortcuts this peer's frames take (set by the relay from what records or hooks
    # them): the quiet ones, the recording ones, or whole messages for the message hooks.
    quiet: bool = True
    recorded: bool = False
    whole: bool = False
    pending: FrameEvent | Message | None = None
    hooks_running: bool = False  # the shell has ``pending`` and will call hooks_done
    # What the peer sent after ``pending``, and messages injected towards the other peer.
    backlog: deque[Event | Message] = field(default_factory=deque)
    backlog_bytes: int = 0
    backlog_paused: bool = False
    close_queued: bool = False  # the peer's close frame waits in the backlog
    pending_control: ControlFrame | None = None
    frame_content: Joiner = field(default_factory=lambda: Joiner())
    frame_wire: list[bytes] = field(default_factory=list)
    message_content: Joiner = field(default_factory=lambda: Joiner())
    message_frames: list[Collected] = field(default_factory=list)
    frame_start: int = 0  # where the current frame's content starts in message_content
    # permessage-deflate of the frames this peer sends, and our own compressor for them.
    deflate_params: DeflateParams | None = None
    deflater: Deflater | None = None
    recompress: bool = False
    out_started: bool = False  # the current message from this peer has a frame out already
    # Towards this peer: a fragmented message is half-sent, so injected messages must wait.
    out_open: bool = False
    inject_queue: list[tuple[int, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.can_send = self.state in _SENDABLE
        self.live = self.state in _LIVE
        self.is_open = self.state is LegState.OPEN

    def change(self, event: LegEvent) -> bool:
        """Apply ``event``; True when the transport is now to be closed or aborted (the
        leg left its live states)."""
        try:
            new = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise StateError(f"{self.side.value} leg: no {event} from {self.state}") from None
        was_live = self.live
        self.state = new
        self.can_send = new in _SENDABLE
        self.live = new in _LIVE
        self.is_open = new is LegState.OPEN
        return was_live and not self.live

    @property
    def gone(self) -> bool:
        return self.state is LegState.GONE

    @property
    def close_received(self) -> bool:
        return self.received is not None

    @property
    def received_code(self) -> int | None:
        return self.received.code if self.received is not None else None

    @property
    def received_reason(self) -> str:
        return self.received.reason if self.received is not None else ""

    @property
    def close_sent(self) -> bool:
        return self.sent is not None

    @property
    def closed_cleanly(self) -> bool:
        return self.sent is not None and self.received is not None

    @property
    def hooked(self) -> bool:
        return self.want_frames or self.want_messages

    @property
    def context_takeover(self) -> bool:
        params = self.deflate_params
        return params is not None and not params.no_context_takeover(self.side is Side.CLIENT)


@dataclass(slots=True)
class Collected:
    """A frame of the message being assembled for the chain, as the message needs it."""

    fin: bool
    rsv: int
    wire: bytes  # the payload as received when compressed, else empty (the content has it)
    size: int
    dropped: bool
    touched_by: str | None
