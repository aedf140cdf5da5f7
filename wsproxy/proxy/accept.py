"""Running out of file descriptors on accept: one clear warning per burst, not a traceback a
second.

When ``accept()`` fails with EMFILE (or ENFILE, ENOBUFS, ENOMEM), asyncio's selector loop
(``BaseSelectorEventLoop._accept_connection``) calls the loop's exception handler with the
message ``socket.accept() out of system resource``, stops reading the listening socket and
tries again after ``asyncio.constants.ACCEPT_RETRY_DELAY`` (one second). The default handler
logs that, with a traceback, on every retry; wsproxy silences the ``asyncio`` logger below
``-vv``, so at normal verbosity the proxy just stopped accepting without a word. (Python
3.11's loop also goes on calling ``accept()`` after the failure, up to its backlog of 100 times
in one go, each scheduling a retry: one burst is easily a hundred failures a second.)

``AcceptFailures`` decides what to say (pure: the clock is passed in); ``AcceptWatch`` is the
glue: the loop's exception handler for that one message, every other context passed on to the
handler that was there before, and a wrapper round the protocol factory that notices when
accepting works again.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger("wsproxy")

ACCEPT_OUT_OF_RESOURCE = "socket.accept() out of system resource"
# A burst is over once an accept worked and no accept failed for SETTLE seconds: more than
# asyncio's one-second retry delay, so a proxy that sits at its limit (a few accepts work, the
# next fails, one second later the same again) stays in one burst instead of warning every
# second. A burst that never ends is warned about again after REMIND_AFTER seconds, so a proxy
# stuck at its limit for hours does not look fine in the last hour of its log.
SETTLE = 2.0
REMIND_AFTER = 60.0

T = TypeVar("T")
Handler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


@dataclass
class AcceptFailures:
    """Bursts of failed accepts, by the clock passed in: ``failed`` says when to warn,
    ``settle`` when a burst is over."""

    settle_after: float = SETTLE
    remind_after: float = REMIND_AFTER
    count: int = 0  # failed accept() calls in the current burst
    started: float | None = None  # when the current burst began; None outside a burst
    last_failure: float = 0.0
    last_accept: float = 0.0
    warned_at: float = 0.0

    @property
    def in_burst(self) -> bool:
        return self.started is not None

    def failed(self, now: float) -> bool:
        """One failed accept; True if this one deserves the warning."""
        self.count += 1
        self.last_failure = now
        if self.started is None:
            self.started = now
        elif now - self.warned_at < self.remind_after:
            return False
        self.warned_at = now
        return True

    def accepted(self, now: float) -> None:
        # asyncio calls the protocol factory from a task, so an accept that worked just before
        # a failure may be reported just after it: "recovering" is approximate, SETTLE is not.
        self.last_accept = now

    @property
    def recovering(self) -> bool:
        """In a burst, and an accept worked after the last failure."""
        return self.started is not None and self.last_accept >= self.last_failure

    def settle(self, now: float) -> int | None:
        """The number of failed accepts of the burst if it is over now: an accept worked after
        the last failure, and that failure was ``settle_after`` seconds ago. Else None."""
        if self.started is None or not self.recovering:
            return None
        if now - self.last_failure < self.settle_after:
            return None
        ended = self.count
        self.count, self.started = 0, None
        return ended

    def settles_in(self, now: float) -> float:
        """Seconds until ``settle`` can end the burst, if no accept fails meanwhile."""
        return max(0.0, self.last_failure + self.settle_after - now)


def describe(error: BaseException | None, limits: tuple[int, int]) -> str:
    """The warning: what failed, the current RLIMIT_NOFILE, and how to raise it."""
    soft, hard = ("unlimited" if n == resource.RLIM_INFINITY else str(n) for n in limits)
    code = error.errno if isinstance(error, OSError) else None
    name = errno.errorcode.get(code, str(code)) if code is not None else "an error"
    what = f"{name} ({getattr(error, 'strerror', None) or error})"
    if code == errno.ENFILE:
        advice = "the whole system is out of file descriptors: raise fs.file-max (sysctl)"
    elif code in (errno.ENOBUFS, errno.ENOMEM):
        advice = "the system is out of memory for sockets"
    else:
        advice = (
            "raise it with `ulimit -n 65536` in the shell that starts wsproxy, "
            "or LimitNOFILE=65536 in its systemd unit"
        )
    return (
        f"cannot accept new connections: accept() failed with {what}; the open files limit "
        f"is {soft} (hard limit {hard}): {advice}. Clients wait in the listen backlog until "
        "connections close (retrying every second)"
    )


class AcceptWatch:
    """The loop's exception handler for accept failures, and the protocol factory wrapper."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = AcceptFailures()
        self.clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: Handler | None = None
        self._settling: asyncio.TimerHandle | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Become the loop's exception handler, passing on what is not ours."""
        self._loop = loop
        current = loop.get_exception_handler()
        if getattr(current, "__self__", None) is self:
            return
        self._previous = current
        loop.set_exception_handler(self.handle)

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if context.get("message") == ACCEPT_OUT_OF_RESOURCE:
            if self.failures.failed(self.clock()):
                limits = resource.getrlimit(resource.RLIMIT_NOFILE)
                log.warning("%s", describe(error, limits))  # a traceback would add nothing
            return
        handle = context.get("handle")
        callback = getattr(handle, "_callback", None)
        if isinstance(error, ValueError) and getattr(callback, "__name__", "") == "_start_serving":
            # asyncio's retry, due one second after a failed accept, found the listening socket
            # already closed (fd -1): the proxy shut down meanwhile. Nothing is wrong.
            log.debug("accept retry after the listening socket closed: ignored")
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def watching(self, factory: Callable[[], T]) -> Callable[[], T]:
        """``factory``, telling the watch each time an accept worked."""

        def accepted() -> T:
            if self.failures.in_burst:
                self.failures.accepted(self.clock())
                self._check_settled()
            return factory()

        return accepted

    def _check_settled(self) -> None:
        now = self.clock()
        ended = self.failures.settle(now)
        if ended is not None:
            if self._settling is not None:
                self._settling.cancel()
                self._settling = None
            log.warning("accepting connections again (%d accept() calls had failed)", ended)
        elif self.failures.recovering and self._settling is None and self._loop is not None:
            # Say so even if no accept comes later to notice.
            delay = self.failures.settles_in(now)
            self._settling = self._loop.call_later(delay, self._timer)
        # else a failure came after the last accept: the next accept that works checks again

    def _timer(self) -> None:
        self._settling = None
        self._check_settled()
