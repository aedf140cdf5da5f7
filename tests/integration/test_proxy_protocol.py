"""--proxy-protocol: a real wsproxy behind PROXY protocol v1/v2 headers, from raw clients and
from a real HAProxy (``send-proxy-v2``, two backends, roundrobin)."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

from websockets.asyncio.client import connect

from tests.harness import (
    HOST,
    ProxyProcess,
    StartProxy,
    WsUpstream,
    free_port,
    program,
    server_process,
)
from wsproxy.capture.reader import read_capture
from wsproxy.capture.records import Connection
from wsproxy.sansio.proxyproto import V2_SIGNATURE

CLIENT = ("203.0.113.7", 4242)  # TEST-NET: a client only the header names


def v1(src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    return f"PROXY TCP4 {src[0]} {dst[0]} {src[1]} {dst[1]}\r\n".encode()


def v2(src: tuple[str, int], dst: tuple[str, int], *, local: bool = False) -> bytes:
    body = socket.inet_aton(src[0]) + socket.inet_aton(dst[0]) + struct.pack("!HH", src[1], dst[1])
    command = 0x20 if local else 0x21
    return V2_SIGNATURE + bytes([command, 0x11]) + struct.pack("!H", len(body)) + body


async def ws_after(port: int, header: bytes, host: str = HOST) -> str:
    """A WebSocket echo round trip on a connection that begins with ``header``."""
    sock = socket.create_connection((host, port))
    sock.sendall(header)
    sock.setblocking(False)
    async with connect(f"ws://{HOST}:{port}/chat", sock=sock, proxy=None) as ws:
        await ws.send("hello")
        return str(await ws.recv())


async def refused_without_answer(port: int, data: bytes, host: str = HOST) -> bytes:
    """Whatever the proxy answers ``data`` with before closing (b"": nothing)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:  # closed with our bytes unread: the kernel resets
        return b""
    finally:
        writer.close()


async def test_v1_and_v2_headers_name_the_client(
    start_proxy: StartProxy, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    capture = tmp_path / "flows.jsonl"
    proxy = await start_proxy(
        "--mode", f"reverse:{ws_echo.url}", "--proxy-protocol",
        "--allow-clients", "203.0.113.0/24", "-w", str(capture),
    )  # fmt: skip
    dst = (HOST, proxy.port)
    assert await ws_after(proxy.port, v1(CLIENT, dst)) == "hello"
    assert await ws_after(proxy.port, v2(("203.0.113.8", 65000), dst)) == "hello"
    text = await proxy.wait_log(lambda t: "203.0.113.8 GET ws://" in t)
    assert "client 203.0.113.7:4242 via balancer 127.0.0.1:" in text
    assert "(PROXY v1)" in text and "(PROXY v2)" in text
    assert "203.0.113.7 GET ws://" in text
    proxy.signal(2)
    await proxy.stop()
    clients = [r.client for r in read_capture(capture) if isinstance(r, Connection)]
    assert clients == ["203.0.113.7:4242", "203.0.113.8:65000"]


async def test_admission_judges_the_real_client(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--mode", f"reverse:{ws_echo.url}", "--proxy-protocol")
    request = b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = await refused_without_answer(proxy.port, v1(CLIENT, (HOST, proxy.port)) + request)
    assert answer.startswith(b"HTTP/1.1 403")
    await proxy.wait_log(lambda t: "203.0.113.7 403: client 203.0.113.7 is not on loopback" in t)
    # LOCAL (a health check) keeps the balancer's own address, which is allowed
    assert await ws_after(proxy.port, v2(CLIENT, (HOST, 1), local=True)) == "hello"
    await proxy.wait_log(lambda t: "PROXY v2 LOCAL: keeping its address" in t)


async def test_missing_or_bad_header_is_closed_unanswered(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy(
        "--mode", f"reverse:{ws_echo.url}", "--proxy-protocol", "--handshake-timeout", "2"
    )
    assert await refused_without_answer(proxy.port, b"GET /chat HTTP/1.1\r\n\r\n") == b""
    await proxy.wait_log(lambda t: "refused: no PROXY protocol header" in t)
    bad_port = b"PROXY TCP4 203.0.113.7 127.0.0.1 70000 80\r\n"
    assert await refused_without_answer(proxy.port, bad_port) == b""
    await proxy.wait_log(lambda t: "refused: v1 header: source port 70000 is over 65535" in t)
    assert await refused_without_answer(proxy.port, b"PROXY TCP4 203.0") == b""
    await proxy.wait_log(lambda t: "no whole PROXY header within --handshake-timeout 2s" in t)
    assert ws_echo.connections == 0


async def test_a_header_from_a_disallowed_balancer_is_refused(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy(
        "--mode", f"reverse:{ws_echo.url}", "--proxy-protocol",
        "--proxy-protocol-from", "192.0.2.0/24",
    )  # fmt: skip
    assert await refused_without_answer(proxy.port, v1(CLIENT, (HOST, proxy.port))) == b""
    await proxy.wait_log(
        lambda t: "127.0.0.1:" in t and "refused: not allowed to send a PROXY protocol header" in t
    )
    assert ws_echo.connections == 0


async def test_socks5_uses_the_real_client(start_proxy: StartProxy, ws_echo: WsUpstream) -> None:
    proxy = await start_proxy(
        "--mode", "socks5", "--proxy-protocol", "--allow-clients", "203.0.113.0/24"
    )
    reader, writer = await asyncio.open_connection(HOST, proxy.port)
    try:
        writer.write(v2(CLIENT, (HOST, proxy.port)) + b"\x05\x01\x00")
        assert await reader.readexactly(2) == b"\x05\x00"
        writer.write(b"\x05\x01\x00\x01" + socket.inet_aton(HOST) + struct.pack("!H", ws_echo.port))
        reply = await reader.readexactly(10)
        assert reply[:2] == b"\x05\x00"
    finally:
        writer.close()
    text = await proxy.wait_log(lambda t: "203.0.113.7 SOCKS5 CONNECT 127.0.0.1:" in t)
    assert "client 203.0.113.7:4242 via balancer" in text


async def test_per_client_limit_counts_real_clients(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    """One connection per client: two clients behind one balancer each get theirs; the
    first one's second connection is refused."""
    proxy = await start_proxy(
        "--mode", f"reverse:{ws_echo.url}", "--proxy-protocol",
        "--allow-clients", "203.0.113.0/24", "--max-connections-per-client", "1",
    )  # fmt: skip
    dst = (HOST, proxy.port)
    held = socket.create_connection((HOST, proxy.port))
    try:
        held.sendall(v1(CLIENT, dst))
        await proxy.wait_log(lambda t: "client 203.0.113.7:4242 via balancer" in t)
        assert await ws_after(proxy.port, v1(("203.0.113.9", 1), dst)) == "hello"
        request = b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n"
        again = await refused_without_answer(proxy.port, v1((CLIENT[0], 4243), dst) + request)
        assert again.startswith(b"HTTP/1.1 503")
        await proxy.wait_log(lambda t: "over --max-connections-per-client 1" in t)
    finally:
        held.close()


SAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "docs" / "haproxy.cfg"


async def test_through_haproxy_to_two_instances(
    start_proxy: StartProxy, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    haproxy = program("haproxy", "apt-get install haproxy")
    backends = [
        await start_proxy("--mode", f"reverse:{ws_echo.url}", "--proxy-protocol") for _ in range(2)
    ]
    front = free_port()
    config = tmp_path / "haproxy.cfg"
    text = SAMPLE_CONFIG.read_text("utf-8")  # the README's sample, on free ports
    for sample, port in (("8080", front), ("8081", backends[0].port), ("8082", backends[1].port)):
        assert f"127.0.0.1:{sample}" in text
        text = text.replace(f"127.0.0.1:{sample}", f"127.0.0.1:{port}")
    config.write_text(text)
    async with server_process([haproxy, "-db", "-f", str(config)], front, tmp_path / "haproxy.log"):
        ports = []
        for _ in range(6):
            async with connect(f"ws://{HOST}:{front}/chat", proxy=None) as ws:
                ports.append(ws.local_address[1])
                await ws.send("hi")
                assert await ws.recv() == "hi"

        def served_by(backend: ProxyProcess) -> list[int]:
            text = backend.stderr()
            return [p for p in ports if f"client 127.0.0.1:{p} via balancer 127.0.0.1:" in text]

        # Every client reaches one instance, which logs the client's own port; roundrobin
        # spreads them over both (not strictly two by two: HAProxy's threads and its
        # readiness probe's connection shift the turn).
        await backends[0].wait_log(
            lambda _: sorted(served_by(backends[0]) + served_by(backends[1])) == sorted(ports)
        )
        assert served_by(backends[0]) and served_by(backends[1]), [b.stderr() for b in backends]
