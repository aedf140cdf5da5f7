"""The allocator settings take effect on this platform (glibc) and cost no correctness."""

from __future__ import annotations

import platform

import pytest

from wsproxy.proxy.memory import tune_allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_tuning_applies_on_glibc() -> None:
    assert tune_allocator() is True
    # Large buffers still work after the change: allocate and free a few around the threshold.
    for size in (64 * 1024, 256 * 1024, 4 * 1024 * 1024, 16 * 1024 * 1024):
        buffer = bytearray(size)
        buffer[-1] = 1
        assert len(bytes(buffer)) == size
