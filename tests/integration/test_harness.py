"""The fixtures themselves: a proxy that cannot start fails clearly, and nothing lingers."""

from __future__ import annotations

import os
import signal

import pytest

from tests.harness import ProxyStartError, StartProxy


async def test_start_failure_shows_the_proxy_stderr(start_proxy: StartProxy) -> None:
    with pytest.raises(ProxyStartError, match="exited before listening") as info:
        await start_proxy("--mode", "bogus")
    assert "unknown mode 'bogus'" in str(info.value)


async def test_stop_ends_the_process_group(start_proxy: StartProxy) -> None:
    proxy = await start_proxy()
    assert os.getpgid(proxy.proc.pid) == proxy.proc.pid  # its own process group
    proxy.signal(signal.SIGTERM)
    assert await proxy.wait_exit(10) == 0
    with pytest.raises(ProcessLookupError):
        os.killpg(proxy.proc.pid, 0)
