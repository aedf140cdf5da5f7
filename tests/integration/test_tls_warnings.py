"""The client-side TLS warning through a real proxy process: only distrust warns.

Browsers open spare connections and drop them right after their ClientHello (Chromium's
preconnect sockets); those are debug lines. A client that rejects wsproxy's certificate (an
``ssl`` client with the default trust store, which does not hold wsproxy's CA, so it sends
``unknown_ca``) gets the one warning per host, however many hang-ups came before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import pytest

from tests.harness import HOST, ProxyProcess, StartProxy
from tests.integration import wsraw

pytestmark = pytest.mark.timeout(60)

WARNING = "it does not trust wsproxy's CA"
FAILED = "client TLS handshake for"
HANGUP = "ended early: the client hung up"
TUNNEL = f"{HOST}:443"  # the handshake fails before the proxy would connect anywhere


def client_hello() -> bytes:
    """The first flight of a default ``ssl`` client, made in memory."""
    out = ssl.MemoryBIO()
    sslobj = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), out, server_hostname=HOST)
    with contextlib.suppress(ssl.SSLWantReadError):
        sslobj.do_handshake()
    return out.read()


async def tunnel(proxy: ProxyProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, proxy.port)
    writer.write(f"CONNECT {TUNNEL} HTTP/1.1\r\nHost: {TUNNEL}\r\n\r\n".encode())
    assert (await wsraw.read_head(reader)).status == 200
    return reader, writer


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def hang_up_after_client_hello(proxy: ProxyProcess) -> None:
    """Send a ClientHello, half-close, and read until the proxy closes too: by then it has
    dealt with the failed handshake (no need to guess how long that takes)."""
    reader, writer = await tunnel(proxy)
    try:
        writer.write(client_hello())
        writer.write_eof()
        with contextlib.suppress(ConnectionError):
            while await asyncio.wait_for(reader.read(65536), 10):
                pass
    finally:
        await close(writer)


async def reject_certificate(proxy: ProxyProcess) -> None:
    """A TLS client that trusts only the system's CAs: it refuses wsproxy's leaf with an
    ``unknown_ca`` alert. The handshake runs over memory BIOs because asyncio's own TLS
    layer drops the connection without sending the alert."""
    reader, writer = await tunnel(proxy)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    ctx = ssl.create_default_context()
    sslobj = ctx.wrap_bio(incoming, outgoing, server_hostname=HOST)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            while True:
                try:
                    sslobj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    writer.write(outgoing.read())
                    data = await asyncio.wait_for(reader.read(65536), 10)
                    assert data, "the proxy closed before sending its certificate"
                    incoming.write(data)
        writer.write(outgoing.read())  # the alert
        await writer.drain()
    finally:
        await close(writer)


def lines_with(log: str, needle: str) -> list[str]:
    return [line for line in log.splitlines() if needle in line]


async def test_a_hangup_is_debug_and_a_rejection_warns_once(start_proxy: StartProxy) -> None:
    proxy = await start_proxy("-v")  # -vv with the harness's own -v: debug lines show
    await hang_up_after_client_hello(proxy)
    _, writer = await tunnel(proxy)  # and one that just drops the connection
    writer.write(client_hello())
    await close(writer)
    log = await proxy.wait_count(HANGUP, 2)
    assert not lines_with(log, FAILED), log

    await reject_certificate(proxy)
    await proxy.wait_count(WARNING, 1)
    await reject_certificate(proxy)
    log = await proxy.wait_count("warned once already", 1)
    [warning] = lines_with(log, WARNING)
    assert "unknown_ca" in warning
    assert str(proxy.confdir / "mitmproxy-ca-cert.pem") in warning
    assert "http://wsproxy.invalid/" in warning
    assert len(lines_with(log, FAILED)) == 2, log


async def test_hangups_first_do_not_use_up_the_warning(start_proxy: StartProxy) -> None:
    proxy = await start_proxy()  # -v: hang-ups leave no line at all
    for _ in range(3):
        await hang_up_after_client_hello(proxy)
    await reject_certificate(proxy)
    log = await proxy.wait_count(WARNING, 1)
    assert len(lines_with(log, WARNING)) == 1, log
    assert not lines_with(log, "ended early"), log
