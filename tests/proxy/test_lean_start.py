"""A proxy process loads what its run needs: a reverse-mode proxy of ws:// never imports
``cryptography`` (nor the decoders, filters or capture writers nobody asked for), and its
resident memory stays small, idle and after relaying."""

from __future__ import annotations

import websockets

from tests.harness import HOST, ProxyProcess, StartProxy, WsUpstream, status_kib

MiB = 1024
# Measured: 26.6 MiB idle and after the round trips below, where the same process with
# everything imported at the start (cryptography, decoders, filters, capture) held 41 MiB.
IDLE_RSS_LIMIT_KIB = 30 * MiB
# Only what a run of the flags below uses; each of these costs from 0.3 to 10 MB.
NOT_NEEDED = (
    "cryptography",
    "wsproxy.tls.ca",
    "wsproxy.decoders.registry",
    "cbor2",
    "msgpack",
    "wsproxy.filters",
    "wsproxy.capture.writer",
    "prometheus_client",
    "aiohttp",
    "yaml",
    "wsproxy.proxy.socks",  # SOCKS5 and transparent mode: loaded by their listeners only
    "wsproxy.sansio.socks5",
    "wsproxy.proxy.transparent",
    "wsproxy.sansio.origdst",
    "shutil",  # with bz2 and lzma: argparse reads the terminal's width through it (flags.py)
)


async def round_trips(proxy: ProxyProcess) -> None:
    """Text and binary messages through the proxy and back (the echo upstream answers)."""
    async with websockets.connect(f"ws://{HOST}:{proxy.port}/lean") as ws:
        for message in ("hello", b"\x00\x01" * 40_000, "x" * 200_000):
            await ws.send(message)
            assert await ws.recv() == message


async def test_an_idle_reverse_proxy_stays_small(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--mode", f"reverse:ws://{HOST}:{ws_echo.port}", "-q", verbose=False)
    idle = status_kib(proxy.proc.pid, "VmRSS")
    assert idle < IDLE_RSS_LIMIT_KIB, f"idle RSS {idle} KiB"
    await round_trips(proxy)
    after = status_kib(proxy.proc.pid, "VmRSS")
    assert after < IDLE_RSS_LIMIT_KIB, f"RSS after relaying {after} KiB (idle {idle} KiB)"


async def test_a_ws_reverse_run_never_imports_cryptography(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy(
        "--mode", f"reverse:ws://{HOST}:{ws_echo.port}", "-q", verbose=False, record_modules=True
    )
    await round_trips(proxy)
    assert await proxy.stop() == 0
    modules = proxy.imported_modules()
    assert "wsproxy.proxy.session" in modules  # the list is the relaying process's
    loaded = sorted(m for m in modules if m.split(".")[0] in NOT_NEEDED or m in NOT_NEEDED)
    assert loaded == []


async def test_a_regular_proxy_loads_its_ca_at_the_start(start_proxy: StartProxy) -> None:
    """The other side of the coin: a listener that intercepts TLS has its CA (and so
    ``cryptography``) loaded before it listens, so a bad CA fails the start."""
    proxy = await start_proxy("-q", verbose=False, record_modules=True)
    assert proxy.ca_cert.is_file()
    assert await proxy.stop() == 0
    assert {"cryptography", "wsproxy.tls.ca"} <= proxy.imported_modules()
