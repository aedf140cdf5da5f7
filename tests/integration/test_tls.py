"""wss:// and https:// through a real proxy process: TLS interception, upstream verification,
ignored hosts, absolute-form TLS requests, the magic page and the untrusted-CA hint.

Upstream servers use certificates from a throw-away ``trustme`` CA; clients trust only the
CA that wsproxy wrote to its confdir (except where a test says otherwise), so a handshake
that succeeds proves the proxy intercepted and re-signed.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.harness import HOST, ProxyProcess, StartProxy, StartWsEcho, WsUpstream, ws_upstream
from tests.integration import wsraw

pytestmark = pytest.mark.timeout(90)

SIZES = [0, 1, 125, 126, 65535, 65536, 16 * 1024 * 1024]
CA_CERT = "mitmproxy-ca-cert.pem"


# -- helpers -----------------------------------------------------------------------------------


def text_of(size: int) -> str:
    """``size`` bytes of ASCII that do not compress to nothing."""
    return base64.b64encode(os.urandom(size))[:size].decode()


def trusting(*ca_files: Path) -> ssl.SSLContext:
    """A client context that trusts these CA files and nothing else (no system roots)."""
    ctx = ssl.create_default_context(cafile=str(ca_files[0]))
    for extra in ca_files[1:]:
        ctx.load_verify_locations(cafile=str(extra))
    return ctx


def proxy_ca(proxy: ProxyProcess) -> Path:
    return proxy.confdir / CA_CERT


def ws_client(
    url: str, proxy: ProxyProcess | None, ctx: ssl.SSLContext | None, **kwargs: object
) -> connect:
    return connect(
        url,
        proxy=proxy.url if proxy else None,
        ssl=ctx,
        max_size=None,
        open_timeout=10,
        close_timeout=10,
        ping_interval=None,
        **kwargs,  # type: ignore[arg-type]
    )


def peer_cert(ws: ClientConnection) -> x509.Certificate:
    sslobj = ws.transport.get_extra_info("ssl_object")
    assert sslobj is not None, "the client connection is not TLS"
    der = sslobj.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def san_of(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


# -- upstream servers ------------------------------------------------------------------------

WssServerFactory = Callable[..., Awaitable[WsUpstream]]


def server_context(upstream_ca: trustme.CA, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    upstream_ca.issue_cert(*names).configure_cert(ctx)
    return ctx


@pytest.fixture
def wss_server(upstream_ca: trustme.CA, start_ws_echo: StartWsEcho) -> WssServerFactory:
    """``await wss_server("localhost", "127.0.0.1")``: a TLS echo server with that cert
    (``paths`` are the upgrades it got)."""

    async def start(*names: str) -> WsUpstream:
        return await start_ws_echo(ssl=server_context(upstream_ca, *names))

    return start


@pytest.fixture
async def wss_echo(wss_server: WssServerFactory) -> WsUpstream:
    return await wss_server("localhost", HOST)


@pytest.fixture
async def wss_wrong_host(wss_server: WssServerFactory) -> WsUpstream:
    return await wss_server("other.example")


@pytest.fixture
async def https_server(upstream_ca: trustme.CA) -> AsyncIterator[int]:
    """An aiohttp HTTPS server: ``GET /hello`` answers "hello https" and echoes the Host."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello https", headers={"X-Host": request.host})

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, ssl_context=server_context(upstream_ca, "localhost", HOST))
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        await runner.cleanup()


@pytest.fixture
async def tls_proxy(start_proxy: StartProxy, upstream_ca_file: Path) -> ProxyProcess:
    """A proxy that trusts the upstream test CA."""
    return await start_proxy("--upstream-ca", str(upstream_ca_file))


# -- payloads through CONNECT + TLS interception ---------------------------------------------


async def test_websockets_client_echoes_every_size_over_intercepted_wss(
    tls_proxy: ProxyProcess, wss_echo: WsUpstream
) -> None:
    marker = f"marker-{os.urandom(4).hex()}"
    ctx = trusting(proxy_ca(tls_proxy))
    async with ws_client(f"{wss_echo.url}/echo", tls_proxy, ctx) as ws:
        await ws.send(marker)
        assert await ws.recv() == marker
        for size in SIZES:
            for payload in (os.urandom(size), text_of(size)):
                await ws.send(payload)
                echoed = await asyncio.wait_for(ws.recv(), 60)
                assert type(echoed) is type(payload)
                assert echoed == payload, f"{type(payload).__name__} of {size} bytes"
    assert wss_echo.paths == ["/echo"]
    log = await tls_proxy.wait_count(marker, 2)
    assert f"CONNECT {HOST}:{wss_echo.port}" in log
    assert f"GET wss://{HOST}:{wss_echo.port}/echo" in log
    assert "client -> server TEXT" in log and "server -> client BINARY" in log
    # The close handshake ended the session at once: the upstream's TLS close_notify counts
    # as its TCP close, so the proxy does not wait out --close-timeout (5 s).
    started = time.monotonic()
    log = await tls_proxy.wait_log(lambda t: "WebSocket closed" in t, timeout=10)
    assert time.monotonic() - started < 3, log
    assert "no close answer in time" not in log
    assert "client close 1000, server close 1000" in log


async def test_aiohttp_client_echoes_every_size_over_intercepted_wss(
    tls_proxy: ProxyProcess, wss_echo: WsUpstream
) -> None:
    marker = f"marker-{os.urandom(4).hex()}"
    ctx = trusting(proxy_ca(tls_proxy))
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"{wss_echo.url}/echo", proxy=tls_proxy.url, ssl=ctx, max_msg_size=0, autoping=False
        ) as ws,
    ):
        await ws.send_str(marker)
        assert (await ws.receive(timeout=10)).data == marker
        for size in SIZES:
            payload = os.urandom(size)
            await ws.send_bytes(payload)
            msg = await ws.receive(timeout=60)
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            assert msg.data == payload, f"binary of {size} bytes"
            text = text_of(size)
            await ws.send_str(text)
            msg = await ws.receive(timeout=60)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            assert msg.data == text, f"text of {size} bytes"
    log = await tls_proxy.wait_count(marker, 2)
    assert f"CONNECT {HOST}:{wss_echo.port}" in log
    assert "server -> client BINARY" in log


# -- the leaf the proxy serves -----------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", HOST])
async def test_leaf_chains_to_the_confdir_ca_and_names_the_host(
    tls_proxy: ProxyProcess, wss_echo: WsUpstream, host: str
) -> None:
    ca_cert = load_cert(proxy_ca(tls_proxy))
    async with ws_client(
        f"wss://{host}:{wss_echo.port}/leaf", tls_proxy, trusting(proxy_ca(tls_proxy))
    ) as ws:
        leaf = peer_cert(ws)
        await ws.send("hi")
        assert await ws.recv() == "hi"
    assert leaf.issuer == ca_cert.subject
    leaf.verify_directly_issued_by(ca_cert)
    san = san_of(leaf)
    if host == HOST:
        assert ipaddress.ip_address(HOST) in san.get_values_for_type(x509.IPAddress)
        assert san.get_values_for_type(x509.DNSName) == []
    else:
        assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert wss_echo.paths == ["/leaf"]


async def test_a_mitmproxy_confdir_is_used_as_it_is(
    start_proxy: StartProxy, upstream_ca_file: Path, wss_echo: WsUpstream, tmp_path: Path
) -> None:
    confdir = tmp_path / "mitmproxy-conf"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from mitmproxy.certs import CertStore\n"
        "CertStore.from_store(Path(sys.argv[1]), 'mitmproxy', 2048)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(confdir)], check=True, timeout=60)
    # Let wsproxy write the secret PKCS#12 itself, so its mode can be checked.
    (confdir / "mitmproxy-ca.p12").unlink()
    before = (confdir / "mitmproxy-ca.pem").read_bytes()
    mitm_ca = load_cert(confdir / CA_CERT)

    proxy = await start_proxy("--upstream-ca", str(upstream_ca_file), confdir=confdir)
    async with ws_client(f"{wss_echo.url}/mitm", proxy, trusting(confdir / CA_CERT)) as ws:
        leaf = peer_cert(ws)
        await ws.send("from mitmproxy's CA")
        assert await ws.recv() == "from mitmproxy's CA"
    assert leaf.issuer == mitm_ca.subject
    leaf.verify_directly_issued_by(mitm_ca)
    assert (confdir / "mitmproxy-ca.pem").read_bytes() == before
    assert stat.S_IMODE((confdir / "mitmproxy-ca.p12").stat().st_mode) == 0o600
    restored = pkcs12.load_pkcs12((confdir / "mitmproxy-ca.p12").read_bytes(), None)
    assert restored.cert is not None and restored.cert.certificate == mitm_ca


async def test_confdir_files_written_by_wsproxy_keep_the_key_private(
    tls_proxy: ProxyProcess,
) -> None:
    confdir = tls_proxy.confdir
    for name in ("mitmproxy-ca.pem", "mitmproxy-ca.p12"):
        mode = stat.S_IMODE((confdir / name).stat().st_mode)
        assert mode == 0o600, f"{name}: {oct(mode)}"
    for name in (CA_CERT, "mitmproxy-ca-cert.cer", "mitmproxy-ca-cert.p12"):
        assert (confdir / name).is_file()
        assert not stat.S_IMODE((confdir / name).stat().st_mode) & 0o022, name


# -- upstream verification ---------------------------------------------------------------------


async def expect_502(proxy: ProxyProcess, url: str) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with ws_client(url, proxy, trusting(proxy_ca(proxy))):
            pass
    assert info.value.response.status_code == 502


async def test_untrusted_upstream_is_a_502_inside_the_tunnel(
    start_proxy: StartProxy, wss_echo: WsUpstream
) -> None:
    proxy = await start_proxy()  # trusts the system roots only
    await expect_502(proxy, f"{wss_echo.url}/untrusted")
    log = await proxy.wait_log(lambda t: "certificate verify failed" in t)
    assert f"{HOST}:{wss_echo.port}" in log
    assert wss_echo.paths == []  # the upgrade never reached the server


async def test_upstream_cert_for_another_host_is_a_502(
    tls_proxy: ProxyProcess, wss_wrong_host: WsUpstream
) -> None:
    await expect_502(tls_proxy, f"{wss_wrong_host.url}/wrong-host")
    await tls_proxy.wait_log(lambda t: "certificate verify failed" in t)
    assert wss_wrong_host.paths == []


async def test_ssl_insecure_accepts_any_upstream(
    start_proxy: StartProxy, wss_echo: WsUpstream, wss_wrong_host: WsUpstream
) -> None:
    proxy = await start_proxy("-k")
    for server in (wss_echo, wss_wrong_host):
        async with ws_client(f"{server.url}/insecure", proxy, trusting(proxy_ca(proxy))) as ws:
            await ws.send("ok")
            assert await ws.recv() == "ok"
        assert server.paths == ["/insecure"]
    assert "certificate verify failed" not in proxy.stderr()


# -- ignored hosts: a raw tunnel ---------------------------------------------------------------


async def test_ignored_host_is_tunnelled_untouched(
    start_proxy: StartProxy, upstream_ca: trustme.CA, upstream_ca_file: Path, wss_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--ignore-hosts", rf"^127\.0\.0\.1:{wss_echo.port}$")
    marker = f"marker-{os.urandom(4).hex()}"
    async with ws_client(f"{wss_echo.url}/ignored", proxy, trusting(upstream_ca_file)) as ws:
        cert = peer_cert(ws)
        await ws.send(marker)
        assert await ws.recv() == marker
    upstream_cert = load_cert(upstream_ca_file)
    assert cert.issuer == upstream_cert.subject
    cert.verify_directly_issued_by(upstream_cert)
    assert wss_echo.paths == ["/ignored"]

    # A client that trusts only wsproxy's CA cannot talk to an ignored host: nothing is re-signed.
    with pytest.raises(ssl.SSLCertVerificationError):
        async with ws_client(f"{wss_echo.url}/ignored", proxy, trusting(proxy_ca(proxy))):
            pass
    # The second CONNECT is logged after the first tunnel relayed everything: no frame of the
    # first would be logged later than this.
    log = await proxy.wait_count(f"CONNECT {HOST}:{wss_echo.port}", 2)
    assert marker not in log
    assert "client -> server" not in log and "server -> client" not in log


# -- plain ws:// inside CONNECT ----------------------------------------------------------------


async def test_plain_websocket_inside_connect(tls_proxy: ProxyProcess) -> None:
    """Browsers send ``CONNECT host:port`` for ws:// too, then speak plain HTTP inside."""

    marker = f"plain-{os.urandom(4).hex()}"
    async with ws_upstream() as up:
        port = up.port
        reader, writer = await asyncio.open_connection(HOST, tls_proxy.port)
        try:
            writer.write(f"CONNECT {HOST}:{port} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode())
            head = await asyncio.wait_for(wsraw.read_head(reader), 10)
            assert head.status == 200
            key = wsraw.new_key()
            writer.write(wsraw.upgrade_request("/plain", f"{HOST}:{port}", key=key))
            head = await asyncio.wait_for(wsraw.read_head(reader), 10)
            assert head.status == 101, head
            assert head.get("Sec-WebSocket-Accept") == wsraw.accept_for(key)
            writer.write(wsraw.encode_frame(wsraw.OP_TEXT, marker.encode(), mask=True))
            frame = await asyncio.wait_for(wsraw.read_frame(reader), 10)
            assert (frame.opcode, frame.payload) == (wsraw.OP_TEXT, marker.encode())
            writer.write(wsraw.encode_frame(wsraw.OP_CLOSE, wsraw.close_payload(1000), mask=True))
            _, close = await asyncio.wait_for(wsraw.read_until_close(reader), 10)
            assert close is not None and close.close_code == 1000
        finally:
            writer.close()
    log = await tls_proxy.wait_count(marker, 2)
    assert f"CONNECT {HOST}:{port}" in log
    assert f"GET ws://{HOST}:{port}/plain" in log


# -- absolute-form requests for TLS upstreams --------------------------------------------------


async def test_absolute_form_https_get(tls_proxy: ProxyProcess, https_server: int) -> None:
    reader, writer = await asyncio.open_connection(HOST, tls_proxy.port)
    try:
        writer.write(
            f"GET https://{HOST}:{https_server}/hello HTTP/1.1\r\n"
            f"Host: {HOST}:{https_server}\r\nConnection: close\r\n\r\n".encode()
        )
        resp = await asyncio.wait_for(wsraw.read_response(reader), 10)
    finally:
        writer.close()
    assert resp.status == 200, resp
    assert resp.body == b"hello https"
    assert resp.get("X-Host") == f"{HOST}:{https_server}"
    await tls_proxy.wait_log(lambda t: f"GET https://{HOST}:{https_server}/hello" in t)


async def test_absolute_form_https_get_to_an_untrusted_upstream_is_a_502(
    start_proxy: StartProxy, https_server: int
) -> None:
    proxy = await start_proxy()
    reader, writer = await asyncio.open_connection(HOST, proxy.port)
    try:
        writer.write(
            f"GET https://{HOST}:{https_server}/hello HTTP/1.1\r\n"
            f"Host: {HOST}:{https_server}\r\n\r\n".encode()
        )
        resp = await asyncio.wait_for(wsraw.read_response(reader), 10)
    finally:
        writer.close()
    assert resp.status == 502
    await proxy.wait_log(lambda t: "certificate verify failed" in t)


async def test_absolute_form_wss_upgrade(tls_proxy: ProxyProcess, wss_echo: WsUpstream) -> None:
    marker = f"abs-{os.urandom(4).hex()}"
    reader, writer = await asyncio.open_connection(HOST, tls_proxy.port)
    try:
        key = wsraw.new_key()
        writer.write(
            wsraw.upgrade_request(
                f"wss://{HOST}:{wss_echo.port}/abs", f"{HOST}:{wss_echo.port}", key=key
            )
        )
        head = await asyncio.wait_for(wsraw.read_head(reader), 10)
        assert head.status == 101, head
        assert head.get("Sec-WebSocket-Accept") == wsraw.accept_for(key)
        big = os.urandom(70_000)
        for opcode, payload in ((wsraw.OP_TEXT, marker.encode()), (wsraw.OP_BINARY, big)):
            writer.write(wsraw.encode_frame(opcode, payload, mask=True))
            frame = await asyncio.wait_for(wsraw.read_frame(reader), 10)
            assert (frame.opcode, frame.payload) == (opcode, payload)
            assert not frame.masked
        writer.write(wsraw.encode_frame(wsraw.OP_CLOSE, wsraw.close_payload(1000), mask=True))
        _, close = await asyncio.wait_for(wsraw.read_until_close(reader), 10)
        assert close is not None and close.close_code == 1000
    finally:
        writer.close()
    assert wss_echo.paths == ["/abs"]
    log = await tls_proxy.wait_count(marker, 2)
    assert f"GET wss://{HOST}:{wss_echo.port}/abs" in log
    assert "CONNECT" not in log


# -- the magic page ----------------------------------------------------------------------------


async def test_magic_page_serves_the_ca(tls_proxy: ProxyProcess) -> None:
    ca_file = proxy_ca(tls_proxy)
    base = "http://wsproxy.invalid"
    async with aiohttp.ClientSession() as session:

        async def get(path: str) -> tuple[int, str, bytes]:
            async with session.get(base + path, proxy=tls_proxy.url) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), await resp.read()

        status, ctype, body = await get("/")
        assert status == 200 and ctype.startswith("text/html")
        assert b"/cert/pem" in body
        status, _, pem = await get("/cert/pem")
        assert status == 200 and pem == ca_file.read_bytes()
        assert b"PRIVATE KEY" not in pem
        status, _, der = await get("/cert/cer")
        assert status == 200
        assert x509.load_der_x509_certificate(der) == load_cert(ca_file)
        status, _, p12 = await get("/cert/p12")
        assert status == 200
        loaded = pkcs12.load_pkcs12(p12, None)
        assert loaded.key is None
        certs = [c.certificate for c in [loaded.cert, *loaded.additional_certs] if c]
        assert certs == [load_cert(ca_file)]
        status, _, _ = await get("/nope")
        assert status == 404


# -- a client that does not trust the CA -------------------------------------------------------


async def test_untrusting_asyncio_client_fails_and_nothing_reaches_upstream(
    start_proxy: StartProxy, wss_echo: WsUpstream, upstream_ca_file: Path
) -> None:
    """asyncio's TLS layer drops the connection without sending its ``unknown_ca`` alert, so
    to the proxy this is a hang-up (debug), not distrust: see test_tls_warnings.py for the
    warning that clients sending the alert get."""
    proxy = await start_proxy("--upstream-ca", str(upstream_ca_file), "-v")  # -vv: debug lines
    for _attempt in range(2):
        with pytest.raises(ssl.SSLCertVerificationError):
            async with ws_client(f"{wss_echo.url}/x", proxy, trusting(upstream_ca_file)):
                pass
    log = await proxy.wait_count(f"TLS handshake for {HOST} ended early", 2)
    assert "client TLS handshake for" not in log, log
    assert wss_echo.paths == []
