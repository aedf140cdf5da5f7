"""Allocator settings for a process that moves large buffers all day.

glibc's malloc serves blocks of 128 KiB and more with mmap, and returns the top of its heap to
the system as soon as 128 KiB or so of it is free. Relaying a large frame allocates and frees a
buffer of up to 256 KiB per read (the read itself, the re-masked copy), so with the defaults
nearly every such buffer is fresh memory from the kernel, and every 4 KiB page of it costs a
page fault when first touched. Measured on the 16 MiB benchmark: 60,000 page faults and about
1.5 ms of CPU per MiB; with the settings below, 500 page faults and 0.8-0.9 ms per MiB (a plain
TCP relay: 0.6-0.7). The price is at most ``TRIM_THRESHOLD`` of freed memory kept for reuse.

This is glibc-only (``mallopt``); elsewhere it does nothing. Setting the thresholds by hand also
turns off glibc's own adaptive threshold, which is why both are set together.

The start (imports, argument parsing, compiling patterns) frees almost a megabyte that glibc
would keep in the middle of its heap; ``release_start_memory`` hands those pages back once the
proxy listens (``malloc_trim``), so an idle proxy's resident memory is what it uses.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

log = logging.getLogger("wsproxy")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 * 1024 * 1024  # blocks below this come from the heap and are reused
TRIM_THRESHOLD = 8 * 1024 * 1024  # free memory kept at the heap's top before giving it back


def tune_allocator() -> bool:
    """Apply the thresholds; False where the C library has no ``mallopt`` (not glibc)."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    log.debug("allocator thresholds %s", "set" if ok else "refused")
    return ok


def release_start_memory() -> bool:
    """Give the free pages of the heap back to the system; False where there is no
    ``malloc_trim`` (not glibc)."""
    malloc_trim = _libc_function("malloc_trim")
    if malloc_trim is None:
        return False
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim.restype = ctypes.c_int
    malloc_trim(0)
    return True


def _libc_function(name: str) -> Any:
    """A function of the C library, or None when it has none of that name."""
    # The process's own symbols include its C library's; ``ctypes.util.find_library`` would
    # find the same library by running ``ldconfig`` in a subprocess, and import ~1 MB of modules.
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
