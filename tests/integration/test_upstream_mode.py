"""Upstream mode (``--mode upstream:http[s]://HOST:PORT``): a proxy whose own connections go
through the next proxy, tested end to end with real next proxies: a second wsproxy process,
tinyproxy (Debian package, with BasicAuth for the credential cases) and mitmdump (also the
``https://`` next proxy, so wss runs TLS to the origin inside TLS to the proxy).

Clients use the first proxy exactly as a regular one: CONNECT (websockets, aiohttp for
https) and absolute form (aiohttp for plain http). Each test checks the next proxy saw the
hop, so a first proxy that connected directly would fail it.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.harness import (
    HOST,
    AioServer,
    ProxyProcess,
    RawServerFactory,
    StartProxy,
    StartWsEcho,
    WsUpstream,
    aiohttp_app,
    free_port,
    program,
    server_process,
    wait_until,
)
from tests.integration.wsraw import RawConnection

pytestmark = pytest.mark.timeout(90)

TINYPROXY_HINT = "install the Debian package tinyproxy-bin (tests/run.sh does)"
MITMDUMP_HINT = "pip install '.[mitmproxy]' (tests/run.sh does)"


# -- helpers ---------------------------------------------------------------------------------------


def trusting(ca_file: Path) -> ssl.SSLContext:
    """A client context that trusts ``ca_file`` alone."""
    return ssl.create_default_context(cafile=str(ca_file))


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST, "localhost").configure_cert(ctx)
    return ctx


async def echo_once(proxy: ProxyProcess, url: str, ctx: ssl.SSLContext | None = None) -> str:
    """One text message to ``url`` through ``proxy`` (CONNECT), and its echo."""
    async with connect(
        url, proxy=proxy.url, ssl=ctx, open_timeout=15, close_timeout=5, ping_interval=None
    ) as ws:
        await ws.send("through the chain")
        answer = await ws.recv()
    assert isinstance(answer, str)
    return answer


async def refused_upgrade(proxy: ProxyProcess, url: str) -> InvalidStatus:
    """The status the proxy answers an upgrade to ``url`` with (inside its CONNECT tunnel)."""
    with pytest.raises(InvalidStatus) as refused:
        await echo_once(proxy, url)
    return refused.value


async def http_get(
    proxy: ProxyProcess, url: str, ctx: ssl.SSLContext | None = None
) -> tuple[int, str]:
    """``GET url`` through ``proxy``: absolute form for http, CONNECT for https."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, proxy=proxy.url, ssl=ctx if ctx is not None else True) as resp,
    ):
        return resp.status, await resp.text()


@contextlib.asynccontextmanager
async def https_app(ca: trustme.CA) -> AsyncIterator[AioServer]:
    """The harness's aiohttp application over TLS (a certificate of ``ca`` for HOST)."""
    state = AioServer()
    runner = web.AppRunner(aiohttp_app(state), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, ssl_context=server_context(ca))
    await site.start()
    server = site._server
    assert server is not None and server.sockets
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        await runner.cleanup()


def chain_mode(next_proxy: ProxyProcess | int, scheme: str = "http") -> list[str]:
    port = next_proxy if isinstance(next_proxy, int) else next_proxy.port
    return ["--mode", f"upstream:{scheme}://{HOST}:{port}"]


def hop(port: int) -> str:
    return f"via upstream proxy {HOST}:{port}"


# -- a second wsproxy as the next proxy ------------------------------------------------------------


@pytest.fixture
async def second(start_proxy: StartProxy, tmp_path: Path, upstream_ca_file: Path) -> ProxyProcess:
    """The next proxy: wsproxy in regular mode, trusting the origins' CA."""
    return await start_proxy("--upstream-ca", str(upstream_ca_file), confdir=tmp_path / "second")


async def test_ws_through_a_second_wsproxy(
    start_proxy: StartProxy, second: ProxyProcess, ws_echo: WsUpstream
) -> None:
    first = await start_proxy(*chain_mode(second))
    assert await echo_once(first, f"{ws_echo.url}/chained") == "through the chain"
    await first.wait_log(
        lambda t: f"GET ws://{HOST}:{ws_echo.port}/chained {hop(second.port)}" in t
    )
    await second.wait_log(lambda t: f"CONNECT {HOST}:{ws_echo.port}" in t)
    await second.wait_log(lambda t: "WebSocket open" in t)
    # Both hops are on the upstream's request: the first proxy's Via entry reached it through
    # the second.
    assert ws_echo.headers[0]["via"].count("wsproxy-") == 2


async def test_wss_through_a_second_wsproxy_that_intercepts(
    start_proxy: StartProxy,
    second: ProxyProcess,
    start_ws_echo: StartWsEcho,
    upstream_ca: trustme.CA,
) -> None:
    wss = await start_ws_echo(ssl=server_context(upstream_ca))
    # The first proxy meets the second's certificates: it trusts the second's CA for them.
    first = await start_proxy(*chain_mode(second), "--upstream-ca", str(second.ca_cert))
    answer = await echo_once(first, f"{wss.url}/secure", trusting(first.ca_cert))
    assert answer == "through the chain"
    await first.wait_log(lambda t: f"GET wss://{HOST}:{wss.port}/secure {hop(second.port)}" in t)
    await second.wait_log(lambda t: f"CONNECT {HOST}:{wss.port}" in t)
    await second.wait_log(lambda t: f"GET wss://{HOST}:{wss.port}/secure" in t)


async def test_wss_fails_clearly_when_the_second_proxys_ca_is_not_trusted(
    start_proxy: StartProxy,
    second: ProxyProcess,
    start_ws_echo: StartWsEcho,
    upstream_ca: trustme.CA,
) -> None:
    wss = await start_ws_echo(ssl=server_context(upstream_ca))
    first = await start_proxy(*chain_mode(second))
    with pytest.raises(InvalidStatus) as refused:
        await echo_once(first, f"{wss.url}/secure", trusting(first.ca_cert))
    assert refused.value.response.status_code == 502
    await first.wait_log(lambda t: "certificate verify failed" in t and "(502)" in t)


async def test_plain_http_through_a_second_wsproxy_in_absolute_form(
    start_proxy: StartProxy, second: ProxyProcess, aiohttp_server: AioServer
) -> None:
    first = await start_proxy(*chain_mode(second))
    status, body = await http_get(first, f"{aiohttp_server.url}/hello?x=1")
    assert (status, body) == (200, "hello world")
    url = f"http://{HOST}:{aiohttp_server.port}/hello?x=1"
    await first.wait_log(lambda t: f"GET {url} {hop(second.port)}" in t)
    # No CONNECT at the second proxy: it got the request in absolute form.
    log = await second.wait_log(lambda t: f"GET {url}" in t)
    assert "CONNECT" not in log
    via = aiohttp_server.requests[0].headers["Via"]
    assert via.count("wsproxy-") == 2, via


async def test_https_through_a_second_wsproxy(
    start_proxy: StartProxy, second: ProxyProcess, upstream_ca: trustme.CA
) -> None:
    first = await start_proxy(*chain_mode(second), "--upstream-ca", str(second.ca_cert))
    async with https_app(upstream_ca) as origin:
        url = f"https://{HOST}:{origin.port}/hello"
        assert await http_get(first, url, trusting(first.ca_cert)) == (200, "hello world")
    await first.wait_log(lambda t: f"GET {url} {hop(second.port)}" in t)
    await second.wait_log(lambda t: f"CONNECT {HOST}:{origin.port}" in t and f"GET {url}" in t)


async def test_ignored_host_is_piped_through_the_next_proxy(
    start_proxy: StartProxy,
    second: ProxyProcess,
    start_ws_echo: StartWsEcho,
    upstream_ca: trustme.CA,
    upstream_ca_file: Path,
) -> None:
    wss = await start_ws_echo(ssl=server_context(upstream_ca))
    first = await start_proxy(*chain_mode(second), "--ignore-hosts", f":{wss.port}$")
    # Piped through the first proxy: the client meets the second's interception, not the first's.
    answer = await echo_once(first, f"{wss.url}/piped", trusting(second.ca_cert))
    assert answer == "through the chain"
    await first.wait_log(
        lambda t: f"{HOST}:{wss.port}: tunnelled untouched (--ignore-hosts) {hop(second.port)}" in t
    )
    await second.wait_log(lambda t: f"CONNECT {HOST}:{wss.port}" in t)


# -- credentials: a second wsproxy with --proxyauth ------------------------------------------------


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        (None, "requires authentication (use --upstream-auth)"),
        (
            "alice:wrong",
            "refused the --upstream-auth credentials (407 Proxy Authentication Required)",
        ),
        ("alice:s3cret", None),
    ],
    ids=["missing", "wrong", "right"],
)
async def test_upstream_auth_against_a_wsproxy_with_proxyauth(
    start_proxy: StartProxy,
    tmp_path: Path,
    ws_echo: WsUpstream,
    aiohttp_server: AioServer,
    credentials: str | None,
    expected: str | None,
) -> None:
    guarded = await start_proxy("--proxyauth", "alice:s3cret", confdir=tmp_path / "second")
    auth = ["--upstream-auth", credentials] if credentials else []
    first = await start_proxy(*chain_mode(guarded), *auth)
    if expected is None:
        assert await echo_once(first, f"{ws_echo.url}/auth") == "through the chain"
        assert await http_get(first, f"{aiohttp_server.url}/hello") == (200, "hello world")
    else:
        refused = await refused_upgrade(first, f"{ws_echo.url}/auth")
        assert refused.response.status_code == 502
        assert expected in refused.response.body.decode()
        status, body = await http_get(first, f"{aiohttp_server.url}/hello")
        assert status == 502 and expected in body  # the 407 of plain http is not relayed
        await first.wait_log(lambda t: t.count(expected) >= 2)
        assert aiohttp_server.requests == []
    secrets = ("s3cret", "wrong", base64.b64encode(b"alice:s3cret").decode())
    assert not any(secret in first.stderr() for secret in secrets)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream-auth", "alice:s3cret"], "--upstream-auth is for the next proxy of --mode"),
        (
            ["--mode", f"upstream:http://{HOST}:3128", "--upstream-auth", "s3cret"],
            "--upstream-auth takes USER:PASS",
        ),
    ],
    ids=["no-upstream-listener", "no-colon"],
)
async def test_upstream_auth_refused_on_the_command_line(
    start_proxy: StartProxy, args: list[str], message: str
) -> None:
    proc = await start_proxy(*args, ready=False)
    proc.expect_exit()
    assert await proc.wait_exit(15) == 2
    assert message in proc.stderr()
    assert "s3cret" not in proc.stderr()


# -- tinyproxy as the next proxy -------------------------------------------------------------------

TinyProxy = Callable[..., Awaitable[int]]


@pytest.fixture
async def tinyproxy(tmp_path: Path) -> AsyncIterator[TinyProxy]:
    """``await tinyproxy(auth="user:pass")``: tinyproxy on 127.0.0.1 with a generated
    config; returns its port. Its log is ``tmp_path/tinyproxy-PORT.log``."""
    binary = program("tinyproxy", TINYPROXY_HINT)
    async with contextlib.AsyncExitStack() as stack:

        async def start(auth: str | None = None) -> int:
            port = free_port()
            config = tmp_path / f"tinyproxy-{port}.conf"
            lines = [
                f"Port {port}",
                f"Listen {HOST}",
                "Timeout 30",
                "LogLevel Connect",  # one line per request: the test reads them
                "MaxClients 50",
                f"Allow {HOST}",
            ]
            if auth is not None:
                user, _, password = auth.partition(":")
                lines.append(f"BasicAuth {user} {password}")
            config.write_text("\n".join(lines) + "\n")
            log = tmp_path / f"tinyproxy-{port}.log"
            await stack.enter_async_context(
                server_process([binary, "-d", "-c", str(config)], port, log)
            )
            return port

        yield start


def tinyproxy_log(tmp_path: Path, port: int) -> str:
    return (tmp_path / f"tinyproxy-{port}.log").read_text("utf-8", "replace")


async def test_ws_wss_and_http_through_tinyproxy(
    start_proxy: StartProxy,
    tinyproxy: TinyProxy,
    tmp_path: Path,
    ws_echo: WsUpstream,
    start_ws_echo: StartWsEcho,
    upstream_ca: trustme.CA,
    upstream_ca_file: Path,
    aiohttp_server: AioServer,
) -> None:
    port = await tinyproxy()
    wss = await start_ws_echo(ssl=server_context(upstream_ca))
    # tinyproxy only tunnels: the first proxy meets the origin's own certificate.
    first = await start_proxy(*chain_mode(port), "--upstream-ca", str(upstream_ca_file))
    assert await echo_once(first, f"{ws_echo.url}/tiny") == "through the chain"
    assert await echo_once(first, f"{wss.url}/tiny", trusting(first.ca_cert)) == "through the chain"
    assert await http_get(first, f"{aiohttp_server.url}/hello") == (200, "hello world")
    await first.wait_log(lambda t: t.count(hop(port)) >= 3)
    await wait_until(
        lambda: all(
            line in tinyproxy_log(tmp_path, port)
            for line in (
                f"CONNECT {HOST}:{ws_echo.port} HTTP/1.1",
                f"CONNECT {HOST}:{wss.port} HTTP/1.1",
                f"GET http://{HOST}:{aiohttp_server.port}/hello HTTP/1.1",
            )
        ),
        what=lambda: f"tinyproxy's log of the three requests\n{tinyproxy_log(tmp_path, port)}",
    )


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        (None, "requires authentication (use --upstream-auth)"),
        # tinyproxy answers wrong credentials with 401 (to CONNECT that is the proxy's own).
        ("alice:wrong", "refused the --upstream-auth credentials (401 Unauthorized)"),
        ("alice:tiny-s3cret", None),
    ],
    ids=["missing", "wrong", "right"],
)
async def test_upstream_auth_against_tinyproxy(
    start_proxy: StartProxy,
    tinyproxy: TinyProxy,
    ws_echo: WsUpstream,
    aiohttp_server: AioServer,
    credentials: str | None,
    expected: str | None,
) -> None:
    port = await tinyproxy(auth="alice:tiny-s3cret")
    auth = ["--upstream-auth", credentials] if credentials else []
    first = await start_proxy(*chain_mode(port), *auth)
    if expected is None:
        assert await echo_once(first, f"{ws_echo.url}/auth") == "through the chain"
        assert await http_get(first, f"{aiohttp_server.url}/hello") == (200, "hello world")
        return
    refused = await refused_upgrade(first, f"{ws_echo.url}/auth")
    assert refused.response.status_code == 502
    assert expected in refused.response.body.decode()
    status, body = await http_get(first, f"{aiohttp_server.url}/hello")
    if credentials is None:
        assert status == 502 and expected in body  # its 407 to plain http
        await first.wait_log(lambda t: t.count(expected) >= 2)
    else:
        # Its 401 to a plain request could as well be the origin's: relayed as it came.
        assert status == 401 and "tinyproxy" in body.lower()
        await first.wait_log(lambda t: expected in t)
    assert ws_echo.connections == 0 and aiohttp_server.requests == []
    assert "s3cret" not in first.stderr() and "wrong" not in first.stderr()


# -- mitmdump as the next proxy, also over TLS (upstream:https://) ---------------------------------


@pytest.fixture
async def mitmdump(tmp_path: Path, upstream_ca_file: Path) -> AsyncIterator[tuple[int, Path]]:
    """mitmdump in regular mode on 127.0.0.1, trusting the origins' CA; (port, its CA file).
    It also takes TLS from its clients (a "secure web proxy"), so it serves https:// too."""
    binary = program("mitmdump", MITMDUMP_HINT)
    port = free_port()
    confdir = tmp_path / "mitmdump"
    command = [
        binary,
        "--listen-host",
        HOST,
        "-p",
        str(port),
        "--set",
        f"confdir={confdir}",
        "--set",
        f"ssl_verify_upstream_trusted_ca={upstream_ca_file}",
    ]
    async with server_process(command, port, tmp_path / "mitmdump.log", timeout=30):
        yield port, confdir / "mitmproxy-ca-cert.pem"


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_wss_and_http_through_mitmdump(
    start_proxy: StartProxy,
    mitmdump: tuple[int, Path],
    tmp_path: Path,
    start_ws_echo: StartWsEcho,
    upstream_ca: trustme.CA,
    aiohttp_server: AioServer,
    scheme: str,
) -> None:
    port, mitm_ca = mitmdump
    wss = await start_ws_echo(ssl=server_context(upstream_ca))
    # mitmdump intercepts too, and for https:// its own listener's certificate is from that
    # CA as well: one --upstream-ca covers the TLS to the proxy and to the origin behind it.
    first = await start_proxy(*chain_mode(port, scheme), "--upstream-ca", str(mitm_ca))
    assert await echo_once(first, f"{wss.url}/mitm", trusting(first.ca_cert)) == "through the chain"
    assert await http_get(first, f"{aiohttp_server.url}/hello") == (200, "hello world")
    await first.wait_log(lambda t: t.count(hop(port)) >= 2)
    mitm_log = tmp_path / "mitmdump.log"
    await wait_until(
        lambda: (
            f"GET http://{HOST}:{aiohttp_server.port}/hello" in mitm_log.read_text()
            and f"GET https://{HOST}:{wss.port}/mitm" in mitm_log.read_text()
        ),
        what=lambda: f"mitmdump's log of both requests\n{mitm_log.read_text()}",
    )


# -- a next proxy that is down, loops, or answers garbage ------------------------------------------


async def test_next_proxy_down_is_a_502_with_a_clear_log_line(
    start_proxy: StartProxy, ws_echo: WsUpstream, aiohttp_server: AioServer
) -> None:
    down = free_port()
    first = await start_proxy(*chain_mode(down))
    refused = await refused_upgrade(first, f"{ws_echo.url}/down")
    assert refused.response.status_code == 502
    status, _ = await http_get(first, f"{aiohttp_server.url}/hello")
    assert status == 502
    line = f"cannot connect to upstream proxy {HOST}:{down}: Connection refused (502)"
    await first.wait_log(lambda t: t.count(line) == 2)


async def test_next_proxy_answering_garbage_is_a_502(
    start_proxy: StartProxy,
    raw_server: RawServerFactory,
    ws_echo: WsUpstream,
    aiohttp_server: AioServer,
) -> None:
    async def ssh_banner(conn: RawConnection) -> None:
        await conn.reader.readuntil(b"\r\n\r\n")
        conn.writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n")
        await conn.writer.drain()
        await conn.reader.read()  # until the proxy hangs up

    garbage = await raw_server(ssh_banner)
    first = await start_proxy(*chain_mode(garbage.port))
    refused = await refused_upgrade(first, f"{ws_echo.url}/garbage")
    assert refused.response.status_code == 502
    await first.wait_log(
        lambda t: (
            f"upstream proxy {HOST}:{garbage.port} sent a malformed answer to CONNECT "
            f"{HOST}:{ws_echo.port}: malformed status line" in t
        )
    )
    status, _ = await http_get(first, f"{aiohttp_server.url}/hello")  # absolute form
    assert status == 502
    await first.wait_log(lambda t: "502: malformed status line: b'SSH-2.0" in t)
    assert aiohttp_server.requests == []


async def test_next_proxy_refusing_connect_names_its_status_line(
    start_proxy: StartProxy, raw_server: RawServerFactory, ws_echo: WsUpstream
) -> None:
    async def forbid(conn: RawConnection) -> None:
        await conn.reader.readuntil(b"\r\n\r\n")
        conn.writer.write(b"HTTP/1.1 403 Filtered by policy\r\nContent-Length: 0\r\n\r\n")
        await conn.writer.drain()
        await conn.reader.read()

    refusing = await raw_server(forbid)
    first = await start_proxy(*chain_mode(refusing.port))
    refused = await refused_upgrade(first, f"{ws_echo.url}/x")
    assert refused.response.status_code == 502
    await first.wait_log(
        lambda t: f"refused CONNECT {HOST}:{ws_echo.port}: 403 Filtered by policy" in t
    )


async def test_next_proxy_that_never_answers_is_a_504(
    start_proxy: StartProxy, raw_server: RawServerFactory, ws_echo: WsUpstream
) -> None:
    async def silent(conn: RawConnection) -> None:
        await conn.reader.read()

    quiet = await raw_server(silent)
    first = await start_proxy(*chain_mode(quiet.port), "--handshake-timeout", "1")
    refused = await refused_upgrade(first, f"{ws_echo.url}/x")
    assert refused.response.status_code == 504
    await first.wait_log(lambda t: f"did not answer CONNECT {HOST}:{ws_echo.port} in time" in t)


async def test_next_proxy_being_this_proxy_is_a_508(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    first = await start_proxy("--mode", f"upstream:http://{HOST}:{{port}}")
    refused = await refused_upgrade(first, f"{ws_echo.url}/loop")
    assert refused.response.status_code == 508
    await first.wait_log(
        lambda t: f"loop detected: upstream proxy {HOST}:{first.port} is this proxy's own" in t
    )
    assert ws_echo.connections == 0


async def test_https_next_proxy_is_verified_like_an_upstream(
    start_proxy: StartProxy, mitmdump: tuple[int, Path], aiohttp_server: AioServer
) -> None:
    port, _ = mitmdump
    untrusting = await start_proxy(*chain_mode(port, "https"))
    status, body = await http_get(untrusting, f"{aiohttp_server.url}/hello")
    assert status == 502 and "certificate verify failed" in body
    await untrusting.wait_log(
        lambda t: f"TLS with upstream proxy {HOST}:{port} failed: certificate verify failed" in t
    )
    assert aiohttp_server.requests == []
    insecure = await start_proxy(*chain_mode(port, "https"), "-k", confdir=untrusting.confdir)
    assert await http_get(insecure, f"{aiohttp_server.url}/hello") == (200, "hello world")


async def test_plain_http_connections_to_the_next_proxy_are_kept_alive(
    start_proxy: StartProxy, second: ProxyProcess, aiohttp_server: AioServer
) -> None:
    first = await start_proxy(*chain_mode(second))
    async with aiohttp.ClientSession() as session:
        for n in range(3):
            url = f"{aiohttp_server.url}/hello?n={n}"
            async with session.get(url, proxy=first.url) as resp:
                assert (resp.status, await resp.text()) == (200, "hello world")
    log = await second.wait_count(f"GET http://{HOST}:{aiohttp_server.port}/hello?n=", 3)
    # One connection from the first proxy carried all three (the pool, keyed on the origin).
    lines = [line for line in log.splitlines() if "/hello?n=" in line]
    assert len({line.split()[1] for line in lines}) == 1, log
