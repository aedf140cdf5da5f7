"""A capture file written in whole lines: after a failed write (a full disk) it ends with the
last whole line, never half of one.

The writer hands over the pieces of its JSONL lines (``write``) and says when to write them
out (``flush``); pieces are gathered up to ``FLUSH_AT`` bytes and written with ``os.writev``
(a large payload's base64 is never copied into a buffer first). A write can fail half-way:
``ENOSPC`` comes after the kernel took what fit, so the file then ends inside a line. ``flush``
then cuts the file back (``ftruncate``) to the end of the last line that was written whole, and
raises; every line before it stays. Only lines are cut, never what was already there.

A file that cannot be cut (a FIFO, a terminal: no file position) is left as it is: its reader
gets the half line, which readers skip as they skip a line cut short by a crash.
"""

from __future__ import annotations

import os

FLUSH_AT = 256 * 1024  # gathered bytes that trigger a write (one large piece of a frame)
IOV_MAX = 1024  # os.writev takes at most this many buffers (Linux's UIO_MAXIOV)


class LineFile:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        try:
            self.offset: int | None = os.lseek(fd, 0, os.SEEK_CUR)  # bytes in the file
        except OSError:  # ESPIPE: a FIFO, nothing to cut
            self.offset = None
        self.whole = self.offset  # where the last line written whole ends
        self._parts: list[bytes] = []
        self._size = 0
        self._ends: list[int] = []  # where gathered lines end, relative to the first part

    def write(self, part: bytes) -> None:
        """Gather ``part``; a part that ends a line ends with ``\\n``."""
        self._parts.append(part)
        self._size += len(part)
        if part.endswith(b"\n"):
            self._ends.append(self._size)
        if self._size >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Write what was gathered; on OSError, cut the file back to its last whole line."""
        parts, ends = self._parts, self._ends
        if not parts:
            return
        self._parts, self._ends, self._size = [], [], 0
        written = 0
        try:
            views = [memoryview(p) for p in parts]
            while views:
                n = os.writev(self.fd, views[:IOV_MAX])
                written += n
                while views and n >= len(views[0]):
                    n -= len(views[0])
                    views.pop(0)
                if n:
                    views[0] = views[0][n:]
        except OSError:
            self._cut(written, ends)
            raise
        if self.offset is not None:
            if ends:
                self.whole = self.offset + ends[-1]
            self.offset += written

    def _cut(self, written: int, ends: list[int]) -> None:
        if self.offset is None or self.whole is None:
            return
        whole = [e for e in ends if e <= written]
        keep = self.offset + whole[-1] if whole else self.whole
        try:
            os.ftruncate(self.fd, keep)
            os.lseek(self.fd, keep, os.SEEK_SET)
        except OSError:
            return
        self.offset = self.whole = keep

    def write_final(self, line: bytes) -> bool:
        """After a failure: one last whole line if it fits (else the file stays as it is)."""
        self._parts, self._ends, self._size = [], [], 0
        try:
            self.write(line)
            self.flush()
        except OSError:
            return False
        return True
