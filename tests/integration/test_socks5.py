"""``--mode socks5@PORT`` through a real proxy process: curl (``--socks5`` and
``--socks5-hostname``) for HTTP and intercepted HTTPS, websockets through python-socks for
ws:// (IPv4, IPv6 and a name) and intercepted wss://, RFC 1929 username/password, the
``--ignore-hosts`` pipe, admission, and a raw socket for each reply a bad input earns."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import ProxyError

from tests.harness import (
    HOST,
    AioServer,
    ProxyProcess,
    RawClient,
    StartProxy,
    WsUpstream,
    aiohttp_upstream,
    free_port,
    proxy_free_env,
    ws_upstream,
)
from wsproxy.sansio.socks5 import SOCKS4_REJECTED, Reply, reply

pytestmark = pytest.mark.timeout(90)

USER, PASSWORD = "alice", "s3cret-Pw"
NO_AUTH = b"\x05\x01\x00"


def ipv4(host: str, port: int, command: int = 1) -> bytes:
    return bytes([5, command, 0, 1]) + socket.inet_aton(host) + port.to_bytes(2, "big")


def name(host: bytes, port: int) -> bytes:
    return bytes([5, 1, 0, 3, len(host)]) + host + port.to_bytes(2, "big")


def refused(code: Reply) -> bytes:
    return reply(code)


async def socks5(start_proxy: StartProxy, *args: str) -> ProxyProcess:
    """A proxy process whose one listener is ``--mode socks5@PORT``."""
    proxy = await start_proxy("--mode", "socks5@{port}", *args)
    await proxy.wait_log(lambda t: f"listening on {HOST}:{proxy.port} (socks5 mode)" in t)
    return proxy


def server_context(upstream_ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    upstream_ca.issue_cert("localhost", HOST).configure_cert(ctx)
    return ctx


def trusting(ca_file: Path) -> ssl.SSLContext:
    """A client context that trusts this CA file and nothing else."""
    return ssl.create_default_context(cafile=str(ca_file))


async def curl(*args: str) -> tuple[int, str, str]:
    """curl's exit status, stdout and stderr (no proxy variables from the environment)."""
    binary = shutil.which("curl")
    assert binary is not None, "curl is needed (apt-get install curl; tests/run.sh does)"
    process = await asyncio.create_subprocess_exec(
        binary, "-sS", "--max-time", "20", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=proxy_free_env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def echo_through(url: str, proxy: str, **kwargs: object) -> str:
    async with connect(url, proxy=proxy, open_timeout=10, **kwargs) as ws:  # type: ignore[arg-type]
        await ws.send(f"hello {url}")
        answer = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(answer, str)
    return answer


async def exchange(conn_reader: asyncio.StreamReader) -> bytes:
    """Everything the proxy sends until it closes the connection."""
    return await asyncio.wait_for(conn_reader.read(), 15)


# -- curl ----------------------------------------------------------------------------------------


async def test_curl_plain_http_by_name_and_by_address(
    start_proxy: StartProxy, aiohttp_server: AioServer
) -> None:
    proxy = await socks5(start_proxy)
    socks = f"{HOST}:{proxy.port}"
    port = aiohttp_server.port
    for flag, host in (
        ("--socks5-hostname", "localhost"),  # the proxy resolves the name
        ("--socks5-hostname", HOST),
        ("--socks5", HOST),  # curl sends the IPv4 address
    ):
        code, out, err = await curl(flag, socks, f"http://{host}:{port}/hello")
        assert (code, out) == (0, "hello world"), err
    log = await proxy.wait_log(lambda t: t.count(f"GET http://{HOST}:{port}/hello") == 2)
    assert f"SOCKS5 CONNECT localhost:{port}" in log
    assert f"GET http://localhost:{port}/hello" in log
    # The connection each CONNECT opened before its reply served the request: none wasted.
    assert aiohttp_server.connections == 3


async def test_curl_https_is_intercepted(
    start_proxy: StartProxy, upstream_ca: trustme.CA, upstream_ca_file: Path
) -> None:
    async with aiohttp_upstream(ssl=server_context(upstream_ca)) as server:
        proxy = await socks5(start_proxy, "--upstream-ca", str(upstream_ca_file))
        socks = f"{HOST}:{proxy.port}"
        # curl trusts only the proxy's CA: the answer can only come through interception.
        trust = ("--cacert", str(proxy.ca_cert))
        for flag, host in (("--socks5-hostname", "localhost"), ("--socks5", HOST)):
            url = f"https://{host}:{server.port}/hello"
            code, out, err = await curl(*trust, flag, socks, url)
            assert (code, out) == (0, "hello world"), f"{err}\n{proxy.stderr()}"
            await proxy.wait_log(lambda t, url=url: f"GET {url}" in t)
        assert server.connections == 2  # TLS went over the CONNECT's own connection


async def test_the_ca_page_is_served_through_socks5(start_proxy: StartProxy) -> None:
    proxy = await socks5(start_proxy)
    socks = f"{HOST}:{proxy.port}"
    code, out, err = await curl("--socks5-hostname", socks, "http://wsproxy.invalid/cert/pem")
    assert (code, out) == (0, proxy.ca_cert.read_text()), err
    await proxy.wait_log(lambda t: "SOCKS5 CONNECT wsproxy.invalid:80" in t)


async def test_curl_hears_why_the_upstream_cannot_be_had(start_proxy: StartProxy) -> None:
    proxy = await socks5(start_proxy)
    closed = free_port()
    code, _, err = await curl("--socks5", f"{HOST}:{proxy.port}", f"http://{HOST}:{closed}/")
    assert code == 97 and "(5)" in err  # 05: connection refused
    await proxy.wait_log(
        lambda t: f"SOCKS5: cannot connect to {HOST}:{closed}: Connection refused (reply 0x05)" in t
    )


# -- WebSocket clients (python-socks) -------------------------------------------------------------


async def test_websockets_through_socks5_ipv4_ipv6_and_a_name(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await socks5(start_proxy)
    socks = f"{HOST}:{proxy.port}"
    async with ws_upstream(host="::1") as v6_echo:
        cases = [
            (f"{ws_echo.url}/v4", f"socks5://{socks}", f"{HOST}:{ws_echo.port}"),
            (f"{v6_echo.url}/v6", f"socks5://{socks}", f"[::1]:{v6_echo.port}"),
            (f"ws://localhost:{ws_echo.port}/name", f"socks5h://{socks}", None),
        ]
        for url, via, _ in cases:
            assert await echo_through(url, via) == f"hello {url}"
        assert v6_echo.paths == ["/v6"]
    assert ws_echo.paths == ["/v4", "/name"]
    log = await proxy.wait_log(lambda t: f"GET ws://localhost:{ws_echo.port}/name" in t)
    for _, _, where in cases:
        if where is not None:
            assert f"SOCKS5 CONNECT {where}" in log
    assert f"SOCKS5 CONNECT localhost:{ws_echo.port}" in log
    assert f"GET ws://[::1]:{v6_echo.port}/v6" in log
    assert "client -> server" in log and "server -> client" in log  # frames were relayed
    assert ws_echo.connections == 2  # one per tunnel: the CONNECT's connection was used


async def test_wss_through_socks5_is_intercepted(
    start_proxy: StartProxy, upstream_ca: trustme.CA, upstream_ca_file: Path
) -> None:
    async with ws_upstream(ssl=server_context(upstream_ca)) as wss_echo:
        proxy = await socks5(start_proxy, "--upstream-ca", str(upstream_ca_file))
        url = f"wss://localhost:{wss_echo.port}/secure"
        ctx = trusting(proxy.ca_cert)  # the proxy's CA only: the proxy must have re-signed
        assert await echo_through(url, f"socks5h://{HOST}:{proxy.port}", ssl=ctx) == (
            f"hello {url}"
        )
        assert wss_echo.paths == ["/secure"]
    await proxy.wait_log(lambda t: f"GET {url}" in t)


async def test_ignored_hosts_are_piped_untouched(
    start_proxy: StartProxy, upstream_ca: trustme.CA, upstream_ca_file: Path
) -> None:
    async with ws_upstream(ssl=server_context(upstream_ca)) as wss_echo:
        proxy = await socks5(start_proxy, "--ignore-hosts", f"^localhost:{wss_echo.port}$")
        url = f"wss://localhost:{wss_echo.port}/piped"
        ctx = trusting(upstream_ca_file)  # the server's own CA: only an untouched pipe works
        assert await echo_through(url, f"socks5h://{HOST}:{proxy.port}", ssl=ctx) == (
            f"hello {url}"
        )
        assert wss_echo.connections == 1
    log = await proxy.wait_log(lambda t: f"SOCKS5 CONNECT localhost:{wss_echo.port}" in t)
    assert "GET wss://" not in log


# -- username/password ----------------------------------------------------------------------------


async def test_proxyauth_with_websockets_and_curl(
    start_proxy: StartProxy, ws_echo: WsUpstream, aiohttp_server: AioServer
) -> None:
    proxy = await socks5(start_proxy, "--proxyauth", f"{USER}:{PASSWORD}")
    socks = f"{HOST}:{proxy.port}"
    url = f"{ws_echo.url}/auth"
    assert await echo_through(url, f"socks5h://{USER}:{PASSWORD}@{socks}") == f"hello {url}"
    with pytest.raises(ProxyError):
        await echo_through(url, f"socks5h://{USER}:bad-guess-42@{socks}")
    assert ws_echo.paths == ["/auth"]

    hello = f"http://{HOST}:{aiohttp_server.port}/hello"
    code, out, err = await curl("--socks5", socks, "--proxy-user", f"{USER}:{PASSWORD}", hello)
    assert (code, out) == (0, "hello world"), err
    code, _, err = await curl("--socks5", socks, "--proxy-user", f"{USER}:nope-77", hello)
    assert code == 97 and "rejected" in err, err
    code, _, err = await curl("--socks5", socks, hello)  # offers no authentication only
    assert code == 97 and "acceptable" in err, err

    log = await proxy.wait_log(
        lambda t: (
            t.count("SOCKS5: username/password: wrong username or password") == 2
            and "this proxy takes username/password (--proxyauth is set)" in t
        )
    )
    assert "SOCKS5: greeting: offers no authentication" in log  # curl adds GSSAPI
    for secret in (PASSWORD, "bad-guess-42", "nope-77"):
        assert secret not in log
    assert aiohttp_server.connections == 1


# -- bad input, byte for byte ---------------------------------------------------------------------

BAD_INPUTS = [
    # (what the client sends, what it gets before the proxy closes, the log line's reason)
    (b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00", SOCKS4_REJECTED, "SOCKS4 is not supported"),
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"", "an HTTP request, not SOCKS5"),
    (b"\x05\x00", b"\x05\xff", "greeting: offers none; this proxy takes no authentication"),
    (
        NO_AUTH + ipv4(HOST, 80, command=2),
        b"\x05\x00" + refused(Reply.COMMAND_NOT_SUPPORTED),
        f"request: BIND {HOST}:80 is not supported, only CONNECT (reply 0x07)",
    ),
    (
        NO_AUTH + ipv4(HOST, 53, command=3),
        b"\x05\x00" + refused(Reply.COMMAND_NOT_SUPPORTED),
        "UDP ASSOCIATE",
    ),
    (
        NO_AUTH + b"\x05\x01\x00\x08\x00\x00",
        b"\x05\x00" + refused(Reply.ADDRESS_TYPE_NOT_SUPPORTED),
        "request: unknown address type 0x08 (reply 0x08)",
    ),
    (
        NO_AUTH + b"\x04" + ipv4(HOST, 80)[1:],
        b"\x05\x00" + refused(Reply.GENERAL_FAILURE),
        "request: version 0x04, not 5 (reply 0x01)",
    ),
    (
        NO_AUTH + name(b"two words", 80),
        b"\x05\x00" + refused(Reply.HOST_UNREACHABLE),
        "request: 'two words' is not a host name (reply 0x04)",
    ),
]


async def test_each_bad_input_gets_its_reply_and_a_log_line(
    start_proxy: StartProxy, raw_client: RawClient
) -> None:
    proxy = await socks5(start_proxy)
    for data, expected, reason in BAD_INPUTS:
        conn = await raw_client(proxy.port)
        conn.writer.write(data)
        assert await exchange(conn.reader) == expected, data
        await proxy.wait_log(lambda t, reason=reason: reason in t)


async def test_truncated_messages_and_the_connect_failures(
    start_proxy: StartProxy, raw_client: RawClient
) -> None:
    proxy = await socks5(start_proxy)
    cases = [
        (b"\x05\x02\x00", b"", "closed the connection mid-greeting (3 bytes of it)"),
        (
            NO_AUTH + b"\x05\x01\x00\x03\x09loc",
            b"\x05\x00" + refused(Reply.GENERAL_FAILURE),
            "closed the connection mid-request (8 bytes of it) (reply 0x01)",
        ),
    ]
    for data, expected, reason in cases:
        conn = await raw_client(proxy.port)
        conn.writer.write(data)
        conn.writer.write_eof()  # truncated: the client ends its side there
        assert await exchange(conn.reader) == expected, data
        await proxy.wait_log(lambda t, reason=reason: reason in t)

    closed = free_port()
    for target, code, reason in (
        (closed, Reply.CONNECTION_REFUSED, f"cannot connect to {HOST}:{closed}"),
        (proxy.port, Reply.NOT_ALLOWED, "loop: "),  # the proxy's own listener
    ):
        conn = await raw_client(proxy.port)
        conn.writer.write(NO_AUTH + ipv4(HOST, target))
        assert await exchange(conn.reader) == b"\x05\x00" + refused(code)
        await proxy.wait_log(lambda t, reason=reason: reason in t)


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A port whose connections hang: a listener with a full backlog that never accepts
    (Linux drops the SYNs beyond it, so a connect waits until its timeout)."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind((HOST, 0))
        listener.listen(0)
        filler.connect(listener.getsockname())  # fills the backlog
        yield listener.getsockname()[1]


async def test_an_upstream_connect_timeout_is_reply_6(
    start_proxy: StartProxy, raw_client: RawClient
) -> None:
    proxy = await socks5(start_proxy, "--connect-timeout", "1")
    with unanswered_port() as port:
        conn = await raw_client(proxy.port)
        conn.writer.write(NO_AUTH + ipv4(HOST, port))
        assert await exchange(conn.reader) == b"\x05\x00" + refused(Reply.TTL_EXPIRED)
    await proxy.wait_log(
        lambda t: f"timed out connecting to {HOST}:{port} (--connect-timeout 1 s) (reply 0x06)" in t
    )


async def test_a_slow_greeting_or_request_is_closed_after_the_handshake_timeout(
    start_proxy: StartProxy, raw_client: RawClient
) -> None:
    proxy = await socks5(start_proxy, "--handshake-timeout", "1")
    slow_greeting = await raw_client(proxy.port)
    slow_greeting.writer.write(b"\x05")
    slow_request = await raw_client(proxy.port)
    slow_request.writer.write(NO_AUTH + b"\x05\x01")
    assert await exchange(slow_greeting.reader) == b""
    assert await exchange(slow_request.reader) == b"\x05\x00" + refused(Reply.GENERAL_FAILURE)
    log = await proxy.wait_log(
        lambda t: (
            "no complete greeting in time (1 byte of it) (--handshake-timeout 1 s)" in t
            and "no complete request in time (2 bytes of it) (--handshake-timeout 1 s)" in t
        )
    )
    assert "Traceback" not in log


async def test_over_max_connections_is_closed_without_an_http_answer(
    start_proxy: StartProxy, raw_client: RawClient
) -> None:
    proxy = await socks5(start_proxy, "--max-connections", "1")
    # The harness's readiness probe (c1) is a connection too: until its handler is done.
    await proxy.wait_log(lambda t: "[c1] 127.0.0.1 SOCKS5: closed the connection before" in t)
    first = await raw_client(proxy.port)
    first.writer.write(NO_AUTH)
    assert await asyncio.wait_for(first.reader.readexactly(2), 10) == b"\x05\x00"
    second = await raw_client(proxy.port)
    second.writer.write(NO_AUTH)
    # Closed without a byte (no "HTTP/1.1 503" to a SOCKS client); unread, the greeting may
    # turn the close into a reset.
    with contextlib.suppress(ConnectionResetError):
        assert await exchange(second.reader) == b""
    await proxy.wait_log(lambda t: "refused: over --max-connections 1" in t)
