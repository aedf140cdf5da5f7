"""The HTTP phase around the WebSocket under hostile peers, through a real proxy process.

Each test stands for a class of attack (issue 10): a reverse proxy used as an open proxy, a
peer that makes the proxy buffer without bound, a request answered twice or never, timeouts
that do not mean what they say, and requests that loop back into the proxy.
"""

from __future__ import annotations

import asyncio
import re
import ssl

import pytest

from tests.harness import (
    HOST,
    ProxyProcess,
    RawClient,
    RawConnection,
    RawServer,
    RawServerFactory,
    StartProxy,
    WsUpstream,
    status_kib,
)
from tests.integration import wsraw

TIMEOUT = 10.0
MiB = 1024 * 1024


class Recorder:
    """A raw upstream that keeps the head of every request it gets and answers 200 "ok"."""

    def __init__(self) -> None:
        self.heads: list[wsraw.Head] = []
        self.server: RawServer | None = None

    async def handle(self, conn: RawConnection) -> None:
        head = await wsraw.read_head(conn.reader)
        self.heads.append(head)
        if head.get("Upgrade"):
            conn.writer.write(wsraw.switching_protocols(head))
            await conn.writer.drain()
            await conn.reader.read()
            return
        conn.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await conn.writer.drain()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port


async def recorder(raw_server: RawServerFactory) -> Recorder:
    rec = Recorder()
    rec.server = await raw_server(rec.handle)
    return rec


async def exchange(conn: RawConnection, request: bytes, *, method: str = "GET") -> wsraw.Head:
    conn.writer.write(request)
    await conn.writer.drain()
    return await asyncio.wait_for(wsraw.read_response(conn.reader, method=method), TIMEOUT)


async def closed_by_proxy(conn: RawConnection) -> bytes:
    """Everything the proxy still sends until it closes the connection (EOF or reset)."""
    try:
        return await asyncio.wait_for(conn.reader.read(), TIMEOUT)
    except ConnectionResetError:
        return b""


# -- 1. reverse mode goes to its upstream and nowhere else -----------------------------------


@pytest.mark.parametrize("scheme", ["http", "https", "ws", "wss"])
async def test_reverse_mode_sends_absolute_form_to_its_upstream(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient, scheme: str
) -> None:
    """``GET scheme://127.0.0.1:SECRET/`` sent to a reverse proxy reaches the configured
    upstream (with the path), never the server it names."""
    upstream, secret = await recorder(raw_server), await recorder(raw_server)
    proxy = await start_proxy("--mode", f"reverse:ws://{HOST}:{upstream.port}")
    authority = f"{HOST}:{secret.port}"
    for upgrade in (False, True):
        conn = await raw_client(proxy.port)
        if upgrade:
            request = wsraw.upgrade_request(f"{scheme}://{authority}/secret", authority)
            conn.writer.write(request)
            head = await asyncio.wait_for(wsraw.read_head(conn.reader), TIMEOUT)
            assert head.status == 101, head
        else:
            request = f"GET {scheme}://{authority}/secret HTTP/1.1\r\nHost: {authority}\r\n\r\n"
            head = await exchange(conn, request.encode())
            assert head.status == 200 and head.body == b"ok", head
        await conn.close()
    assert secret.heads == []
    assert [h.target for h in upstream.heads] == ["/secret", "/secret"]
    assert all(h.get("Host") == f"{HOST}:{upstream.port}" for h in upstream.heads)


async def test_reverse_mode_refuses_connect_and_ignores_host(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """CONNECT gets 405; an origin-form request with another Host still goes upstream; the
    CA page of regular mode is not served (the name goes upstream like any other)."""
    upstream, secret = await recorder(raw_server), await recorder(raw_server)
    proxy = await start_proxy("--mode", f"reverse:ws://{HOST}:{upstream.port}")
    conn = await raw_client(proxy.port)
    authority = f"{HOST}:{secret.port}"
    head = await exchange(
        conn, f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()
    )
    assert head.status == 405, head
    for host in (authority, "wsproxy.invalid"):
        conn = await raw_client(proxy.port)
        head = await exchange(conn, f"GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert head.status == 200 and head.body == b"ok", head
    assert secret.heads == []
    assert [h.target for h in upstream.heads] == ["/x", "/x"]


async def test_a_tunnel_serves_only_its_own_host(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """Inside ``CONNECT A``, an absolute-form request for B is refused with 400, so a tunnel
    (which --ignore-hosts and access checks looked at) cannot be turned towards another."""
    allowed, other = await recorder(raw_server), await recorder(raw_server)
    proxy = await start_proxy()
    conn = await raw_client(proxy.port)
    a = f"{HOST}:{allowed.port}"
    conn.writer.write(f"CONNECT {a} HTTP/1.1\r\nHost: {a}\r\n\r\n".encode())
    assert (await wsraw.read_head(conn.reader)).status == 200
    b = f"{HOST}:{other.port}"
    head = await exchange(conn, f"GET http://{b}/ HTTP/1.1\r\nHost: {b}\r\n\r\n".encode())
    assert head.status == 400 and b"names another server" in head.body, head
    assert other.heads == [] and allowed.heads == []


# -- 2. bounded memory ----------------------------------------------------------------------


async def push_until_blocked(conn: RawConnection, block: bytes, limit: int) -> int:
    """Write ``block`` until the peer stops taking it (drain blocks for 1 s) or ``limit``."""
    sent = 0
    while sent < limit:
        conn.writer.write(block)
        try:
            await asyncio.wait_for(conn.writer.drain(), 1.0)
        except TimeoutError:
            break
        sent += len(block)
    return sent


def rss_growth_mib(proxy: ProxyProcess, before_kib: int) -> float:
    return (status_kib(proxy.proc.pid, "VmHWM") - before_kib) / 1024


async def test_client_sending_ahead_of_an_unanswered_upgrade_is_held_back(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """A client keeps sending after its upgrade request while the upstream has not answered:
    the proxy stops reading it; what it pushed waits in the kernel, not in the proxy."""
    got_request = asyncio.Event()

    async def silent(conn: RawConnection) -> None:
        await wsraw.read_head(conn.reader)
        got_request.set()
        await conn.reader.read()

    upstream = await raw_server(silent)
    proxy = await start_proxy("--handshake-timeout", "60")
    before = status_kib(proxy.proc.pid, "VmHWM")
    conn = await raw_client(proxy.port)
    authority = f"{HOST}:{upstream.port}"
    conn.writer.write(wsraw.upgrade_request(f"ws://{authority}/", authority))
    await asyncio.wait_for(got_request.wait(), TIMEOUT)
    sent = await push_until_blocked(conn, b"\x82\x7f" + bytes(1 * MiB), 1024 * MiB)
    assert sent < 64 * MiB, f"the proxy took {sent / MiB:.0f} MiB and kept reading"
    assert rss_growth_mib(proxy, before) < 16


async def test_plain_http_download_to_a_client_that_does_not_read(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """An upstream streams a 1 GiB body to a client that reads nothing: the proxy passes on
    what the client's socket takes and stops reading the upstream."""
    pushed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def streaming(conn: RawConnection) -> None:
        await wsraw.read_head(conn.reader)
        conn.writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {1024 * MiB}\r\n\r\n".encode())
        pushed.set_result(await push_until_blocked(conn, bytes(MiB), 1024 * MiB))
        await conn.reader.read()

    upstream = await raw_server(streaming)
    proxy = await start_proxy()
    before = status_kib(proxy.proc.pid, "VmHWM")
    conn = await raw_client(proxy.port)
    authority = f"{HOST}:{upstream.port}"
    conn.writer.write(f"GET http://{authority}/big HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    sent = await asyncio.wait_for(pushed, 60)  # ends when a drain waited for 1 s
    assert sent < 64 * MiB, f"the proxy read {sent / MiB:.0f} MiB ahead"
    assert rss_growth_mib(proxy, before) < 16


async def test_plain_http_upload_to_a_server_that_does_not_read(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """A client uploads a 1 GiB body to an upstream that reads only the head: the proxy
    stops reading the client once the upstream's socket is full."""
    got_head = asyncio.Event()

    async def not_reading(conn: RawConnection) -> None:
        await wsraw.read_head(conn.reader)
        got_head.set()
        await asyncio.Event().wait()  # never reads the body: cancelled at teardown

    upstream = await raw_server(not_reading)
    proxy = await start_proxy("--handshake-timeout", "60")
    before = status_kib(proxy.proc.pid, "VmHWM")
    conn = await raw_client(proxy.port)
    authority = f"{HOST}:{upstream.port}"
    conn.writer.write(
        f"POST http://{authority}/up HTTP/1.1\r\nHost: {authority}\r\n"
        f"Content-Length: {1024 * MiB}\r\n\r\n".encode()
    )
    await asyncio.wait_for(got_head.wait(), TIMEOUT)
    sent = await push_until_blocked(conn, bytes(MiB), 1024 * MiB)
    assert sent < 64 * MiB, f"the proxy took {sent / MiB:.0f} MiB and kept reading"
    assert rss_growth_mib(proxy, before) < 16


# -- 3. one request, exactly one answer -------------------------------------------------------


async def answering(raw_server: RawServerFactory, answer: bytes) -> RawServer:
    """An upstream that reads a request head, sends ``answer`` (which may stop anywhere) and
    then only waits for the proxy to close."""

    async def handle(conn: RawConnection) -> None:
        await wsraw.read_head(conn.reader)
        conn.writer.write(answer)
        await conn.writer.drain()
        await conn.reader.read()

    return await raw_server(handle)


BAD_CHUNKED = b"5\r\nhello\r\nzz\r\n"  # a chunk-size line that is not hex


def chunked_post(authority: str) -> bytes:
    return (
        f"POST http://{authority}/up HTTP/1.1\r\nHost: {authority}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()


async def test_malformed_body_before_any_answer_gets_one_400(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """The upstream waits for the whole body; the body turns out malformed: the client gets
    400 at once (not a 504 after the idle timeout) and both connections are closed."""
    upstream_eof = asyncio.Event()

    async def waits_for_body(conn: RawConnection) -> None:
        await wsraw.read_head(conn.reader)
        await conn.reader.read()  # until the proxy closes this connection
        upstream_eof.set()

    upstream = await raw_server(waits_for_body)
    proxy = await start_proxy()
    conn = await raw_client(proxy.port)
    authority = f"{HOST}:{upstream.port}"
    conn.writer.write(chunked_post(authority))
    head = await exchange(conn, BAD_CHUNKED)
    assert head.status == 400, head
    assert await closed_by_proxy(conn) == b""
    await asyncio.wait_for(upstream_eof.wait(), TIMEOUT)


async def test_malformed_body_after_the_answer_began_aborts_the_client(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """The upstream answers 200 before reading the body; then the body turns out malformed:
    the client has its 200 and the connection ends; no second status line ever comes."""

    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    upstream = await answering(raw_server, chunked + b"5\r\nfirst\r\n")
    proxy = await start_proxy()
    conn = await raw_client(proxy.port)
    authority = f"{HOST}:{upstream.port}"
    conn.writer.write(chunked_post(authority))
    head = await asyncio.wait_for(wsraw.read_head(conn.reader), TIMEOUT)
    assert head.status == 200
    conn.writer.write(BAD_CHUNKED)
    rest = await closed_by_proxy(conn)
    assert b"HTTP/1.1" not in rest, rest
    await proxy.wait_log(lambda text: "aborting the client connection" in text)


async def test_malformed_response_body_never_gets_a_second_status(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """The same rule the other way: a response whose chunked body breaks after its head was
    relayed ends the client connection instead of adding a 502 after the 200."""

    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    upstream = await answering(raw_server, chunked + b"zz\r\n")
    proxy = await start_proxy()
    conn = await raw_client(proxy.port)
    authority = f"{HOST}:{upstream.port}"
    conn.writer.write(f"GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    head = await asyncio.wait_for(wsraw.read_head(conn.reader), TIMEOUT)
    assert head.status == 200
    rest = await closed_by_proxy(conn)
    assert b"HTTP/1.1" not in rest, rest


# -- 4. timeouts mean what they say -----------------------------------------------------------


async def test_plain_http_upstream_that_never_answers_gets_504_in_handshake_time(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """--handshake-timeout 1, --idle-timeout 600: an upstream that accepts and never answers
    gets the client a 504 well before the idle timeout."""

    async def silent(conn: RawConnection) -> None:
        await conn.reader.read()

    upstream = await raw_server(silent)
    proxy = await start_proxy("--handshake-timeout", "1")
    conn = await raw_client(proxy.port)
    authority = f"{HOST}:{upstream.port}"
    request = f"GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    head = await exchange(conn, request.encode())
    assert head.status == 504 and b"did not answer in time" in head.body, head


async def test_idle_timeout_zero_means_never(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """--idle-timeout 0: a 3,000,000-byte body, sent in pieces, arrives whole."""
    body = bytes(range(256)) * (3_000_000 // 256) + bytes(3_000_000 % 256)

    async def pieces(conn: RawConnection) -> None:
        await wsraw.read_head(conn.reader)
        conn.writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        for start in range(0, len(body), 100_000):
            conn.writer.write(body[start : start + 100_000])
            await conn.writer.drain()

    upstream = await raw_server(pieces)
    proxy = await start_proxy("--idle-timeout", "0")
    conn = await raw_client(proxy.port)
    authority = f"{HOST}:{upstream.port}"
    request = f"GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    head = await exchange(conn, request.encode())
    assert head.status == 200 and head.body == body


async def test_a_body_that_stops_moving_is_cut_after_the_idle_timeout(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """--idle-timeout 1: a response body that stops halfway ends the client connection after
    a second of silence, without a second status line."""

    upstream = await answering(raw_server, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
    proxy = await start_proxy("--idle-timeout", "1")
    conn = await raw_client(proxy.port)
    authority = f"{HOST}:{upstream.port}"
    conn.writer.write(f"GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    head = await asyncio.wait_for(wsraw.read_head(conn.reader), TIMEOUT)
    assert head.status == 200
    assert await closed_by_proxy(conn) == b"half"
    await proxy.wait_log(lambda text: "nothing moved for 1 s" in text)


# -- 5. loops stop at the first hop -----------------------------------------------------------


async def test_reverse_proxy_pointed_at_itself_answers_508(
    start_proxy: StartProxy, raw_client: RawClient
) -> None:
    proxy = await start_proxy("--mode", f"reverse:ws://{HOST}:{{port}}")
    for request in (
        b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n",
        wsraw.upgrade_request("/ws", "x"),
    ):
        conn = await raw_client(proxy.port)
        head = await exchange(conn, request)
        assert head.status == 508, head
    text = await proxy.wait_log(lambda text: text.count(" 508: loop detected") >= 2)
    # The one extra connection each attempt made was to itself; nothing multiplied.
    assert len(re.findall(r"\] 127\.0\.0\.1 GET ", text)) == 2, text


async def test_connect_back_to_the_proxy_answers_508(
    start_proxy: StartProxy, raw_client: RawClient
) -> None:
    """A CONNECT to the proxy's own address, tunnelled raw (--ignore-hosts) or inspected."""
    proxy = await start_proxy("--ignore-hosts", ":{port}$")
    for target in (f"{HOST}:{proxy.port}", f"localhost:{proxy.port}"):
        conn = await raw_client(proxy.port)
        head = await exchange(conn, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        assert head.status == 508, head
    inspected = await start_proxy()
    conn = await raw_client(inspected.port)
    target = f"{HOST}:{inspected.port}"
    conn.writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    assert (await wsraw.read_head(conn.reader)).status == 200
    head = await exchange(conn, b"GET /x HTTP/1.1\r\nHost: " + target.encode() + b"\r\n\r\n")
    assert head.status == 508, head


async def test_via_is_added_and_a_request_carrying_ours_is_refused(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """Relayed requests and responses carry the proxy's Via entry (after any earlier one);
    a request that arrives with that entry already in it gets 508, as from a loop through
    another proxy; another wsproxy's entry is fine."""
    upstream = await recorder(raw_server)
    proxy = await start_proxy()
    authority = f"{HOST}:{upstream.port}"
    conn = await raw_client(proxy.port)
    request = f"GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\nVia: 1.0 fred\r\n\r\n"
    head = await exchange(conn, request.encode())
    assert head.status == 200
    via = upstream.heads[0].get("Via")
    assert via is not None and re.fullmatch(r"1\.0 fred, 1\.1 wsproxy-[0-9a-f]{8}", via), via
    assert head.get("Via") == via.split(", ")[1]
    conn = await raw_client(proxy.port)
    upgrade = wsraw.upgrade_request(f"ws://{authority}/ws", authority)
    assert (await asyncio.wait_for(send_head(conn, upgrade), TIMEOUT)).get("Via") == head.get("Via")
    assert upstream.heads[1].get("Via") == head.get("Via")
    for value, status in ((head.get("Via"), 508), ("1.1 wsproxy-00000000", 200)):
        conn = await raw_client(proxy.port)
        request = f"GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\nVia: {value}\r\n\r\n"
        assert (await exchange(conn, request.encode())).status == status


async def send_head(conn: RawConnection, request: bytes) -> wsraw.Head:
    conn.writer.write(request)
    return await wsraw.read_head(conn.reader)


async def test_a_tls_client_on_a_plain_port_is_told_it_is_not_served(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    """A client speaking TLS to a listener that serves plain HTTP (reverse:wss:// listens in
    the clear) fails its handshake at once, and the log says why in words."""
    proxy = await start_proxy("--mode", f"reverse:ws://{HOST}:{ws_echo.port}")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.wait_for(
            asyncio.open_connection(HOST, proxy.port, ssl=context, server_hostname="localhost"),
            TIMEOUT,
        )
    log = await proxy.wait_log(lambda text: "TLS handshake on a port" in text)
    assert "malformed request line" not in log and "Traceback" not in log
