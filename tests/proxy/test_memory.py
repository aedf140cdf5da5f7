"""The allocator settings take effect on this platform (glibc) and cost no correctness, and
the free pages of the heap go back to the system when asked."""

from __future__ import annotations

import os
import platform

import pytest

from tests.harness import status_kib
from wsproxy.proxy.memory import release_start_memory, tune_allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_tuning_applies_on_glibc() -> None:
    assert tune_allocator() is True
    # Large buffers still work after the change: allocate and free a few around the threshold.
    for size in (64 * 1024, 256 * 1024, 4 * 1024 * 1024, 16 * 1024 * 1024):
        buffer = bytearray(size)
        buffer[-1] = 1
        assert len(bytes(buffer)) == size


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_the_heap_pages_freed_go_back_to_the_system() -> None:
    assert tune_allocator() is True  # the proxy's thresholds: up to 8 MiB free is kept
    blocks = [bytes(1000) for _ in range(30_000)]  # 30 MB from malloc's heap (over 512 B)
    above = [bytes(1000) for _ in range(100)]  # the heap's top stays in use: no automatic trim
    del blocks
    kept = status_kib(os.getpid(), "VmRSS")
    assert release_start_memory() is True
    assert status_kib(os.getpid(), "VmRSS") < kept - 16 * 1024
    assert len(above) == 100
