"""The log's lines on stderr, written once per turn of the event loop instead of once each.

``-v`` logs a line per frame: thousands a second. Through ``logging`` as it comes, each line
costs a ``LogRecord`` (with a stack walk for the caller), a time formatted from scratch and a
flush, a ``write`` system call of its own. ``LineHandler`` is the handler ``setup_logging``
installs: records logged the usual way are formatted and written at once, as by the plain
``StreamHandler``. ``info`` is the frame lines' way in: when the ``wsproxy`` logger goes to
nothing but this handler, as set up, the line is formatted here (the time string made once a
second), no ``LogRecord`` is made, and it waits to be written with the others of the loop's
current turn at the end of that turn (at once when no loop runs in this thread, or when much is
waiting; before any record logged the usual way, so lines keep their order). Otherwise it is a
plain ``logger.info`` call, so any other handler, filter or formatter sees what it always saw.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TextIO

__all__ = ["DATE_FORMAT", "LineHandler", "info", "info_tagged"]

DATE_FORMAT = "%H:%M:%S"
FLUSH_AT = 64 * 1024  # characters waiting that are written at once, not at the turn's end


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """``HH:MM:SS {tag}message`` lines on ``stream``, written in batches (see the module doc)."""

    def __init__(self, stream: TextIO, tag: str = "") -> None:
        super().__init__(stream)
        self.tag = tag
        self.own_formatter = logging.Formatter(f"%(asctime)s {tag}%(message)s", DATE_FORMAT)
        self.setFormatter(self.own_formatter)
        self._waiting: list[str] = []
        self._size = 0
        self._scheduled = False
        self._second = -1
        self._stamp = ""

    def emit(self, record: logging.LogRecord) -> None:
        """A record logged the usual way: written at once, after the lines still waiting."""
        try:
            self._waiting.append(self.format(record) + self.terminator)
            self._write()
        except Exception:
            self._waiting.clear()
            self._size = 0
            self.handleError(record)

    def line(self, message: str) -> None:
        """``message`` logged at INFO now, formatted as ``own_formatter`` would."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime(DATE_FORMAT, time.localtime(now))
        assert self.lock is not None  # made by Handler.__init__
        with self.lock:
            self._add(f"{self._stamp} {self.tag}{message}\n")

    def lines(self, prefix: str, messages: Sequence[str]) -> None:
        """``line(prefix + message)`` for each of ``messages``: one time, one join, one lock."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime(DATE_FORMAT, time.localtime(now))
        head = f"{self._stamp} {self.tag}{prefix}"
        text = head + ("\n" + head).join(messages) + "\n"
        assert self.lock is not None  # made by Handler.__init__
        with self.lock:
            self._add(text)

    def _add(self, text: str) -> None:
        """With the handler's lock held: a line that waits for the end of the turn."""
        self._waiting.append(text)
        self._size += len(text)
        if self._size >= FLUSH_AT:
            self._write_all()
            return
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread: nothing would write it later
            self._write_all()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def _write(self) -> None:
        waiting = self._waiting
        if waiting:
            text = waiting[0] if len(waiting) == 1 else "".join(waiting)
            waiting.clear()
            self._size = 0
            self.stream.write(text)
        if hasattr(self.stream, "flush"):
            self.stream.flush()

    def _write_all(self) -> None:
        try:
            self._write()
        except Exception:  # a closed or broken stderr: the lines are lost, the proxy goes on
            self._waiting.clear()
            self._size = 0

    def flush(self) -> None:
        self.acquire()
        try:
            self._scheduled = False
            if self.stream is not None:
                self._write_all()
        finally:
            self.release()


def info(logger: logging.Logger, format: str, *args: object) -> None:
    """``logger.info(format, *args)``, without a ``LogRecord`` when nothing but the handler
    ``setup_logging`` installed would see it (see the module doc)."""
    handler = _plain_handler(logger)
    if handler is None:
        logger.info(format, *args)
    else:
        handler.line(format % args)


def info_tagged(logger: logging.Logger, tag: str, messages: Sequence[str]) -> None:
    """``info(logger, "[%s] %s", tag, message)`` for each of ``messages`` (a connection's
    frame lines of one read), at the cost of one line when the handler is ours."""
    if not messages:
        return
    handler = _plain_handler(logger)
    if handler is None:
        for message in messages:
            logger.info("[%s] %s", tag, message)
    else:
        handler.lines(f"[{tag}] ", messages)


def _plain_handler(logger: logging.Logger) -> LineHandler | None:
    if not logger.isEnabledFor(logging.INFO) or logger.filters or logger.propagate:
        return None
    handlers = logger.handlers
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if (
        type(handler) is not LineHandler
        or handler.filters
        or handler.level > logging.INFO
        or handler.formatter is not handler.own_formatter
    ):
        return None
    return handler
