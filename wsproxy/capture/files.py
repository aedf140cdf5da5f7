"""Files that hold traffic (captures, journals, HAR files, plugin logs) are private: 0600.

Captures keep full headers (cookies, ``Authorization``) and payloads, so no other user may read
them, not even for an instant: the file is created with mode 0600 by ``os.open`` (the mode
goes through the umask, which can only take bits away), never created readable and chmodded
after. An existing regular file being overwritten or appended to is tightened to 0600 before
the first byte of traffic goes in; anything else (a FIFO, ``/dev/stderr``) is left alone.
HAR rewrites use ``tempfile.mkstemp``, which creates 0600 as well, then ``os.replace``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, TextIO

MODE = 0o600


def _open_fd(path: Path | str, flags: int) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, MODE)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, MODE)  # a file from before, readable by others: not with traffic in it
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_private(path: Path | str) -> BinaryIO:
    """``open(path, "wb")``, but mode 0600 from creation (see the module doc)."""
    return os.fdopen(_open_fd(path, os.O_TRUNC), "wb")


def append_private(path: Path | str, *, encoding: str = "utf-8") -> TextIO:
    """``open(path, "a", buffering=1)`` (line-buffered text), but mode 0600 from creation."""
    return os.fdopen(_open_fd(path, os.O_APPEND), "a", encoding=encoding, buffering=1)
