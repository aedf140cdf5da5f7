"""Who may use the proxy: client addresses (AccessPolicy, and a real client on a public
address in a network namespace), Basic proxy authentication, and secrets kept out of logs."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidProxyStatus

from tests.harness import (
    HOST,
    AioServer,
    ProxyProcess,
    RawClient,
    RawServerFactory,
    StartProxy,
    WsUpstream,
    proxy_process,
)
from tests.integration import wsraw
from tests.integration.wsraw import OP_TEXT, RawConnection
from wsproxy.exceptions import ConfigError, HttpError
from wsproxy.proxy.access import REALM, VERDICTS_KEPT, AccessPolicy

pytestmark = pytest.mark.timeout(60)

USER, PASSWORD = "alice", "s3cr3t-Pa55"
GOOD = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
WRONG = "Basic " + base64.b64encode(f"{USER}:nope".encode()).decode()


# -- AccessPolicy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "169.254.3.4",
        "::1",
        "fd12:3456::1",
        "fe80::1",
        "fe80::1%eth0",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.7",
        "::ffff:192.168.0.1",
    ],
)
def test_loopback_and_private_clients_are_allowed_by_default(address: str) -> None:
    assert AccessPolicy().allows(address)


@pytest.mark.parametrize(
    "address",
    [
        "203.0.113.2",
        "8.8.8.8",
        "172.32.0.1",
        "192.169.0.1",
        "100.64.0.1",
        "2001:db8::1",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "::ffff:203.0.113.9",
        "",
        "not an address",
        "300.1.1.1",
    ],
)
def test_public_or_unparsable_clients_are_refused_by_default(address: str) -> None:
    assert not AccessPolicy().allows(address)


def test_allow_clients_adds_networks() -> None:
    policy = AccessPolicy(("203.0.113.0/24", "2001:db8::/32"))
    assert policy.allows("203.0.113.2")
    assert policy.allows("::ffff:203.0.113.200")  # v4-mapped, as a dual-stack socket reports it
    assert policy.allows("2001:db8:1::5")
    assert not policy.allows("203.0.114.1")
    assert not policy.allows("2001:db9::1")
    assert policy.allows("127.0.0.1")  # the defaults stay
    assert AccessPolicy(("0.0.0.0/0",)).allows("8.8.8.8")


def test_remembered_verdicts_stay_right_and_bounded() -> None:
    """Verdicts are remembered per address (a client opens many connections), at most
    VERDICTS_KEPT of them: past that the memory starts again, the answers stay the same."""
    policy = AccessPolicy()
    for _ in range(2):
        assert policy.allows("10.1.2.3") and not policy.allows("8.8.8.8")
    for n in range(VERDICTS_KEPT + 10):
        assert policy.allows(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    assert len(policy._verdicts) <= VERDICTS_KEPT
    assert not policy.allows("8.8.8.8") and policy.allows("10.1.2.3")
    assert AccessPolicy(("198.51.100.7",)).allows("198.51.100.7")  # a single address
    assert AccessPolicy(("198.51.100.7/24",)).allows("198.51.100.1")  # host bits tolerated


@pytest.mark.parametrize("cidr", ["203.0.113.0/33", "nonsense", "1.2.3", "::g/64", "", "10.0.0.0/"])
def test_malformed_cidr_is_a_config_error(cidr: str) -> None:
    with pytest.raises(ConfigError, match="--allow-clients"):
        AccessPolicy((cidr,))


def test_proxy_auth_checks() -> None:
    policy = AccessPolicy(proxyauth=f"{USER}:{PASSWORD}")
    policy.check_proxy_auth(GOOD)
    policy.check_proxy_auth("basic " + GOOD.split()[1])  # the scheme is case-insensitive
    for header in (
        None,
        WRONG,
        "Bearer " + GOOD.split()[1],
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(USER.encode()).decode(),
        "Basic " + base64.b64encode(f"{USER}:{PASSWORD}x".encode()).decode(),
    ):
        with pytest.raises(HttpError) as info:
            policy.check_proxy_auth(header)
        assert info.value.status == 407
        assert ("Proxy-Authenticate", REALM) in info.value.headers
        assert PASSWORD not in info.value.reason
    AccessPolicy().check_proxy_auth(None)  # no --proxyauth: nothing to check
    with pytest.raises(ConfigError):
        AccessPolicy(proxyauth="no-colon")


@pytest.mark.parametrize("args", [["--allow-clients", "10.0.0.0/99"], ["--proxyauth", "nocolon"]])
def test_bad_access_flags_exit_with_a_message(args: list[str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsproxy", "-p", "0", "--confdir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert args[0] in result.stderr


# -- --proxyauth end to end ------------------------------------------------------------------


async def send(
    raw_client: RawClient, proxy: ProxyProcess, data: bytes
) -> tuple[RawConnection, wsraw.Head]:
    conn = await raw_client(proxy.port)
    conn.writer.write(data)
    return conn, await asyncio.wait_for(wsraw.read_response(conn.reader), 10)


def auth_header(value: str | None) -> list[tuple[str, str]]:
    return [] if value is None else [("Proxy-Authorization", value)]


@pytest.mark.parametrize("value", [None, WRONG, "Basic", "Digest username=alice"])
@pytest.mark.parametrize("kind", ["ws", "http", "connect"])
async def test_missing_or_wrong_credentials_get_407(
    start_proxy: StartProxy,
    ws_echo: WsUpstream,
    raw_client: RawClient,
    value: str | None,
    kind: str,
) -> None:
    proxy = await start_proxy("--proxyauth", f"{USER}:{PASSWORD}")
    authority = f"{HOST}:{ws_echo.port}"
    if kind == "ws":
        data = wsraw.upgrade_request(f"ws://{authority}/", authority, extra=auth_header(value))
    elif kind == "http":
        extra = "".join(f"{k}: {v}\r\n" for k, v in auth_header(value))
        data = f"GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n{extra}\r\n".encode()
    else:
        extra = "".join(f"{k}: {v}\r\n" for k, v in auth_header(value))
        data = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{extra}\r\n".encode()
    _, head = await send(raw_client, proxy, data)
    assert head.status == 407
    assert head.get("Proxy-Authenticate") == 'Basic realm="wsproxy"'
    assert ws_echo.connections == 0


async def test_right_credentials_work_for_every_way_in(
    start_proxy: StartProxy,
    ws_echo: WsUpstream,
    aiohttp_server: AioServer,
    raw_client: RawClient,
) -> None:
    proxy = await start_proxy("-vv", "--proxyauth", f"{USER}:{PASSWORD}")
    secret_url = f"http://{USER}:{PASSWORD}@{HOST}:{proxy.port}"
    # CONNECT (websockets sends the credentials of the proxy URL on the CONNECT).
    async with connect(f"{ws_echo.url}/connect", proxy=secret_url, ping_interval=None) as ws:
        await ws.send("through CONNECT")
        assert await ws.recv() == "through CONNECT"
    # Absolute-form GET ws:// (aiohttp sends Proxy-Authorization with the upgrade itself).
    auth = {"Proxy-Authorization": GOOD}  # aiohttp sends it with the request itself
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            f"{ws_echo.url}/absolute", proxy=proxy.url, headers=auth
        ) as ws2:
            await ws2.send_str("absolute form")
            assert (await ws2.receive()).data == "absolute form"
        async with session.get(
            f"{aiohttp_server.url}/hello", proxy=proxy.url, headers=auth
        ) as resp:
            assert resp.status == 200
            assert await resp.text() == "hello world"
    # A raw client too, CONNECT then the upgrade inside the tunnel, credentials on both.
    authority = f"{HOST}:{ws_echo.port}"
    conn = await raw_client(proxy.port)
    conn.writer.write(
        f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        f"Proxy-Authorization: {GOOD}\r\n\r\n".encode()
    )
    assert (await asyncio.wait_for(wsraw.read_head(conn.reader), 10)).status == 200
    conn.writer.write(
        wsraw.upgrade_request("/tunnel", authority, extra=[("Proxy-Authorization", GOOD)])
    )
    assert (await asyncio.wait_for(wsraw.read_head(conn.reader), 10)).status == 101
    conn.writer.write(wsraw.encode_frame(OP_TEXT, b"raw", mask=True))
    assert (await asyncio.wait_for(wsraw.read_frame(conn.reader), 10)).payload == b"raw"
    await conn.close()

    # The upstreams never saw the credentials.
    assert len(ws_echo.requests) == 3
    for req in ws_echo.requests:
        assert "Proxy-Authorization" not in req.headers, req.path
    for request in aiohttp_server.requests:
        assert "Proxy-Authorization" not in request.headers
    assert await proxy.stop() == 0  # a stopped proxy has logged all it ever will
    log = proxy.stderr()
    token = GOOD.split()[1]
    for secret in (PASSWORD, token, f"{USER}:{PASSWORD}"):
        assert secret not in log, f"{secret!r} in the log\n{log}"


# -- secrets never reach the console ---------------------------------------------------------


async def test_authorization_and_cookies_are_not_logged_at_debug_level(
    start_proxy: StartProxy,
    ws_echo: WsUpstream,
    aiohttp_server: AioServer,
    raw_server: RawServerFactory,
    raw_client: RawClient,
) -> None:
    """Request and response headers with secrets pass through a -vv proxy; none of their
    values appear on its console."""
    secrets = {
        "Authorization": "Bearer AUTH-SECRET-1",
        "Cookie": "session=COOKIE-SECRET-2; other=COOKIE-SECRET-3",
        "Proxy-Authorization": GOOD,
    }

    async def upstream(conn: RawConnection) -> None:
        head = await wsraw.read_head(conn.reader)
        conn.writer.write(
            wsraw.switching_protocols(
                head,
                "Set-Cookie: token=SETCOOKIE-SECRET-4; HttpOnly\r\n"
                "WWW-Authenticate: Bearer realm=WWWAUTH-SECRET-5\r\n",
            )
        )
        await conn.writer.drain()
        frame = await wsraw.read_frame(conn.reader)
        conn.writer.write(wsraw.encode_frame(frame.opcode, frame.payload))
        await wsraw.read_until_close(conn.reader)

    server = await raw_server(upstream)
    proxy = await start_proxy("-vv", "--proxyauth", f"{USER}:{PASSWORD}")
    for port in (ws_echo.port, server.port):
        authority = f"{HOST}:{port}"
        conn = await raw_client(proxy.port)
        conn.writer.write(
            wsraw.upgrade_request(f"ws://{authority}/s", authority, extra=list(secrets.items()))
        )
        head = await asyncio.wait_for(wsraw.read_head(conn.reader), 10)
        assert head.status == 101
        conn.writer.write(wsraw.encode_frame(OP_TEXT, b"hello", mask=True))
        assert (await asyncio.wait_for(wsraw.read_frame(conn.reader), 10)).payload == b"hello"
        await conn.close()
    authority = f"{HOST}:{aiohttp_server.port}"
    extra = "".join(f"{k}: {v}\r\n" for k, v in secrets.items())
    conn, head = await send(
        raw_client,
        proxy,
        f"GET http://{authority}/missing HTTP/1.1\r\nHost: {authority}\r\n{extra}\r\n".encode(),
    )
    assert head.status == 404
    # Upstreams did get the end-to-end ones (Authorization, Cookie): only logs must not.
    assert ws_echo.requests[0].headers["Authorization"] == secrets["Authorization"]
    assert await proxy.stop() == 0  # a stopped proxy has logged all it ever will
    log = proxy.stderr()
    assert "DEBUG" in log or log.count("\n") > 5  # it did log at length
    for secret in (
        "AUTH-SECRET-1",
        "COOKIE-SECRET-2",
        "COOKIE-SECRET-3",
        "SETCOOKIE-SECRET-4",
        PASSWORD,
        GOOD.split()[1],
    ):
        assert secret not in log, f"{secret} in the log\n{log}"


# -- confdir ---------------------------------------------------------------------------------


async def test_confdir_is_created_private(start_proxy: StartProxy, tmp_path: Path) -> None:
    confdir = tmp_path / "new" / "confdir"
    old = os.umask(0o022)
    try:
        await start_proxy(confdir=confdir)
    finally:
        os.umask(old)
    assert stat.S_IMODE(confdir.stat().st_mode) == 0o700
    for path in confdir.iterdir():
        assert not stat.S_IMODE(path.stat().st_mode) & 0o002, path


# -- a public client address, for real (network namespace) -----------------------------------

NS_HOST, NS_CLIENT, NS_NET = "203.0.113.1", "203.0.113.2", "203.0.113.0/24"

NS_CLIENT_SCRIPT = r"""
import asyncio, base64, os, sys
async def main(port, target):
    reader, writer = await asyncio.open_connection(sys.argv[3], port)
    key = base64.b64encode(os.urandom(16)).decode()
    host = target.split("/")[2]
    writer.write((f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status = head.split(b" ", 2)[1].decode()
    if status == "101":
        mask = os.urandom(4)
        payload = b"from the namespace"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        frame = await asyncio.wait_for(reader.readexactly(2 + len(payload)), 10)
        status += " " + frame[2:].decode()
    print(status)
    writer.close()
asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=20)


@pytest.fixture
def public_client_netns() -> Iterator[str]:
    """A namespace whose only address, 203.0.113.2, reaches this host's 203.0.113.1 over a
    veth pair. Skipped (outside CI) when namespaces cannot be made here."""
    tag = f"{os.getpid() % 100000}"
    ns, host_if, ns_if = f"wsph{tag}", f"wsph{tag}h", f"wsph{tag}n"
    ip = shutil.which("ip")
    why = None
    if ip is None:
        why = "iproute2 is not installed (no 'ip' command)"
    elif os.geteuid() != 0:
        why = "network namespaces need root"
    else:
        made = _run(ip, "netns", "add", ns)
        if made.returncode != 0:
            why = f"'ip netns add' failed: {made.stderr.strip()}"
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the network-namespace test, but {why}")
        pytest.skip(why)
    assert ip is not None
    try:
        steps = [
            (ip, "link", "add", host_if, "type", "veth", "peer", "name", ns_if),
            (ip, "link", "set", ns_if, "netns", ns),
            (ip, "addr", "add", f"{NS_HOST}/24", "dev", host_if),
            (ip, "link", "set", host_if, "up"),
            (ip, "netns", "exec", ns, ip, "addr", "add", f"{NS_CLIENT}/24", "dev", ns_if),
            (ip, "netns", "exec", ns, ip, "link", "set", ns_if, "up"),
            (ip, "netns", "exec", ns, ip, "link", "set", "lo", "up"),
        ]
        for step in steps:
            result = _run(*step)
            assert result.returncode == 0, f"{' '.join(step)}: {result.stderr}"
        yield ns
    finally:
        _run(ip, "link", "del", host_if)  # deletes both ends of the pair
        _run(ip, "netns", "del", ns)
        assert host_if not in _run(ip, "-o", "link", "show").stdout
        assert ns not in _run(ip, "netns", "list").stdout


def proxy_on(host: str, tmp_path: Path, *args: str) -> AbstractAsyncContextManager[ProxyProcess]:
    return proxy_process(args, tmp_path / "confdir", tmp_path, host=host)


async def run_in_netns(ns: str, port: int, target: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, sys.executable, "-c", NS_CLIENT_SCRIPT,
        str(port), target, NS_HOST,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


async def test_public_client_gets_403_unless_allowed(
    public_client_netns: str, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    target = f"ws://{HOST}:{ws_echo.port}/ns"
    assert ipaddress.ip_address(NS_CLIENT).is_global or NS_CLIENT.startswith("203.0.113.")
    async with proxy_on(NS_HOST, tmp_path / "refused") as proxy:
        assert await run_in_netns(public_client_netns, proxy.port, target) == "403"
        await proxy.wait_log(
            lambda t: f"{NS_CLIENT} 403: client {NS_CLIENT} is not on loopback" in t
        )
    assert ws_echo.connections == 0  # checked once the proxy is stopped
    async with proxy_on(NS_HOST, tmp_path / "allowed", "--allow-clients", NS_NET) as proxy:
        answer = await run_in_netns(public_client_netns, proxy.port, target)
        assert answer == "101 from the namespace"
    assert ws_echo.connections == 1


async def test_refused_client_is_refused_before_anything_else(
    public_client_netns: str, tmp_path: Path
) -> None:
    """403 comes before proxy authentication: a public client learns nothing more."""
    async with proxy_on(NS_HOST, tmp_path, "--proxyauth", f"{USER}:{PASSWORD}") as proxy:
        assert await run_in_netns(public_client_netns, proxy.port, "ws://127.0.0.1:9/") == "403"


async def test_websockets_client_without_credentials_gets_407(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--proxyauth", f"{USER}:{PASSWORD}")
    with pytest.raises(InvalidProxyStatus) as info:
        async with connect(f"{ws_echo.url}/", proxy=proxy.url, open_timeout=10):
            pass
    assert info.value.response.status_code == 407


def test_proxyauth_is_refused_in_reverse_mode(tmp_path: Path) -> None:
    """Reverse-mode clients send no proxy credentials: the flag would protect nothing."""
    result = subprocess.run(
        [sys.executable, "-m", "wsproxy", "--confdir", str(tmp_path / "conf"),
         "--mode", "reverse:ws://127.0.0.1:9", "--proxyauth", "u:p"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--proxyauth guards a regular, upstream or socks5 listener" in result.stderr
    assert "Traceback" not in result.stderr
