"""What the relay asks its shell to do: plain data, carried out in order.

Every entry point of ``Relay`` returns a list of these. The shell (``proxy/session.py``) is a
dispatcher: it writes, closes, arms timers, runs hooks and records, and feeds back what
happened (``timer_fired``, ``hooks_done``); it keeps no protocol state of its own.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsproxy.sansio.items import FrameEvent, Message
    from wsproxy.sansio.legs import Side
    from wsproxy.sansio.records import FrameRecord


# Bytes for a peer: a view of what was read when only part of it goes on (no copy).
Wire = bytes | memoryview


class Timer(enum.Enum):
    """The relay's timers; the shell knows only their names and how long to wait."""

    __hash__ = object.__hash__  # as legs.Side's: identity, hashed in C

    CLOSE_CLIENT = "close-client"  # the client's close answer or TCP close must come in time
    CLOSE_SERVER = "close-server"
    GRACE = "grace"  # after a client's protocol error, the upstream may still answer


@dataclass(slots=True, frozen=True)
class Send:
    """Write these bytes to ``side``'s peer, in order."""

    side: Side
    chunks: list[Wire]


@dataclass(slots=True, frozen=True)
class CloseTransport:
    """Close ``side``'s TCP connection. ``linger``: half-close first and read on for a moment,
    so the peer reads our close frame instead of a reset caused by bytes still in flight."""

    side: Side
    linger: bool = False


@dataclass(slots=True, frozen=True)
class AbortTransport:
    """Reset ``side``'s TCP connection at once (a frame to it was cut, or a plugin said so)."""

    side: Side


@dataclass(slots=True, frozen=True)
class StartTimer:
    timer: Timer
    seconds: float


@dataclass(slots=True, frozen=True)
class PauseReading:
    """Stop reading from ``side``: what it sent waits behind an item the hooks still hold."""

    side: Side


@dataclass(slots=True, frozen=True)
class ResumeReading:
    side: Side


@dataclass(slots=True, frozen=True)
class RunHooks:
    """Run the plugin chain on ``item`` (from ``side``), then call ``Relay.hooks_done(side)``.
    Until then the relay holds what ``side`` sent after it; nothing else waits."""

    side: Side
    item: FrameEvent | Message


@dataclass(slots=True, frozen=True)
class Record:
    """A frame was relayed, changed, dropped or injected: for the log and captures."""

    record: FrameRecord


@dataclass(slots=True, frozen=True)
class Note:
    """Something worth a log line about ``side`` (a protocol error, a drop, a timeout)."""

    side: Side
    text: str


@dataclass(slots=True, frozen=True)
class Finished:
    """Both transports are closed or aborted: the session may end once they are gone."""


Command = (
    Send
    | CloseTransport
    | AbortTransport
    | StartTimer
    | PauseReading
    | ResumeReading
    | RunHooks
    | Record
    | Note
    | Finished
)
