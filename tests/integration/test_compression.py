"""permessage-deflate (RFC 7692) end to end: real peers through a real proxy.

* Negotiation and payloads with ``websockets`` and ``aiohttp`` on both sides (and mixed), with
  and without context takeover, with reduced window bits, text and binary from 0 bytes to
  16 MiB, fragmented compressed messages. The proxy is the ``python -m wsproxy -v``
  subprocess (pass-through path; payloads checked in the ``-v`` previews) or an in-process
  ``ProxyServer`` with a message hook (hooked path; payloads checked in the hook).
* ``--no-compression`` strips the offer.
* The upstream's answer is checked against the offer (502).
* Deflate bombs from either side (1009, bounded memory), corrupt deflate data (1007), RSV1
  where it must not be (1002).
* A rewrite and a drop in the middle of a context-takeover stream, with the wire of both legs
  recorded by TCP taps: everything arrives, and the frames stay compressed.

Where ``websockets`` cannot go: neither it nor CPython's zlib compresses with an 8-bit window
(madler/zlib#171), so ``*_max_window_bits=8`` is only exercised by the sans-I/O tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import struct
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)

from tests.harness import (
    HOST,
    AioServer,
    Memory,
    Proxy,
    RawClient,
    RawServerFactory,
    StartProxy,
    WsUpstream,
    running_proxy,
    status_kib,
    ws_upstream,
)
from tests.integration.wsraw import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    Frame,
    RawConnection,
    close_payload,
    encode_frame,
    read_frame,
    read_head,
    read_until_close,
    switching_protocols,
    upgrade_request,
)
from wsproxy.model import Flow, Message

RSV1 = 0x40
MiB = 1024 * 1024
TIMEOUT = 20.0


# -- data ------------------------------------------------------------------------------------

WORDS = [
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "websocket", "proxy",
    "message", "frame", "opcode", "payload", "mask", "length", "deflate", "stream", "window",
    "buffer", "socket", "client", "server", "echo",
]  # fmt: skip


def wordy(size: int, seed: int) -> str:
    """``size`` ASCII characters of repetitive words: compressible, never all the same."""
    rng = random.Random(seed)
    parts: list[str] = []
    total = 0
    while total < size:
        word = rng.choice(WORDS) + (f"={rng.randrange(1000)} " if rng.random() < 0.2 else " ")
        parts.append(word)
        total += len(word)
    return "".join(parts)[:size]


def payloads(sizes: Sequence[int], tag: str) -> list[str | bytes]:
    """A text and a binary message of each size; each starts with a unique tag when it fits."""
    out: list[str | bytes] = []
    for i, n in enumerate(sizes):
        text = (f"<{tag}:t{i}>" + wordy(n, i))[:n] if n >= 16 else wordy(n, i)
        out.append(text)
        binary = (f"<{tag}:b{i}>".encode() + wordy(n, 100 + i).encode())[:n]
        if n > 64:  # not valid UTF-8: must stay binary
            binary = binary[:32] + os.urandom(32) + binary[64:]
        out.append(binary)
    return out


def expected_preview(message: str | bytes, width: int = 40) -> str:
    """What ``-v`` prints for a message that went out as one frame (wsproxy.proxy.session)."""
    data = (message.encode() if isinstance(message, str) else message)[:64]
    if isinstance(message, str):
        text = data.decode("utf-8", "replace")
        cut = len(text) > width or len(data) >= 64
        return repr(text[:width] + ("…" if cut else ""))
    return data[: width // 2].hex(" ") + (" …" if len(data) > width // 2 else "")


def deflate_raw(data: bytes, *, chunk: int = MiB) -> bytes:
    """RFC 7692 7.2.1: raw deflate, sync flush, the 00 00 ff ff tail stripped."""
    enc = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [enc.compress(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    tail = enc.flush(zlib.Z_SYNC_FLUSH)
    assert tail.endswith(b"\x00\x00\xff\xff")
    return b"".join(parts) + tail[:-4]


_BOMB: bytes | None = None


def inflate(payload: bytes) -> bytes:
    """One compressed message, no context takeover (RFC 7692 7.2.2: the tail added back)."""
    return zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")


def bomb() -> bytes:
    """100 MiB of zeros, deflated (about 100 KB); built once per session."""
    global _BOMB
    if _BOMB is None:
        enc = zlib.compressobj(9, zlib.DEFLATED, -15)
        zeros = bytes(MiB)
        parts = [enc.compress(zeros) for _ in range(100)]
        _BOMB = b"".join(parts) + enc.flush(zlib.Z_SYNC_FLUSH)[:-4]
    return _BOMB


# -- peers -----------------------------------------------------------------------------------


def recorder(
    extensions: Sequence[ServerExtensionFactory] | None = None,
) -> contextlib.AbstractAsyncContextManager[WsUpstream]:
    """The echo upstream (it records the handshake as it saw it), with websockets'
    permessage-deflate or with ``extensions``."""
    kwargs: dict[str, Any] = {"compression": "deflate"}
    if extensions is not None:
        kwargs = {"compression": None, "extensions": list(extensions)}
    return ws_upstream(**kwargs)


def offer_of(rec: WsUpstream, n: int = 0) -> str | None:
    return rec.requests[n].headers.get("Sec-WebSocket-Extensions")


def answer_of(rec: WsUpstream, n: int = 0) -> str | None:
    return rec.responses[n].headers.get("Sec-WebSocket-Extensions")


class Seen:
    """A message hook that records what it sees, decompressed."""

    def __init__(self) -> None:
        self.messages: list[tuple[bool, int, bytes, bool]] = []

    def message(self, flow: Flow, message: Message) -> None:
        self.messages.append(
            (message.from_client, message.opcode, message.content, message.compressed)
        )


@dataclass
class Tap:
    """A TCP forwarder that records the bytes of its one connection, both ways."""

    port: int = 0
    up: bytearray = field(default_factory=bytearray)  # what the connecting side sent
    down: bytearray = field(default_factory=bytearray)  # what the target answered
    done: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def tap(target_port: int) -> AsyncIterator[Tap]:
    state = Tap()
    tasks: set[asyncio.Task[None]] = set()

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, into: bytearray) -> None:
        try:
            while data := await src.read(65536):
                into += data
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.write_eof()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        t_reader, t_writer = await asyncio.open_connection(HOST, target_port)
        a = asyncio.ensure_future(pump(reader, t_writer, state.up))
        b = asyncio.ensure_future(pump(t_reader, writer, state.down))
        tasks.update((a, b))
        await asyncio.gather(a, b, return_exceptions=True)
        writer.close()
        t_writer.close()
        state.done.set()

    server = await asyncio.start_server(on_connect, HOST, 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5)


@dataclass
class WireFrame:
    fin: bool
    rsv: int
    opcode: int
    payload: bytes


def parse_wire(data: bytes) -> list[WireFrame]:
    """The frames after the HTTP head in a recorded byte stream (unmasked)."""
    pos = data.index(b"\r\n\r\n") + 4
    frames = []
    while pos + 2 <= len(data):
        b0, b1 = data[pos], data[pos + 1]
        n, pos = b1 & 0x7F, pos + 2
        if n == 126:
            (n,), pos = struct.unpack("!H", data[pos : pos + 2]), pos + 2
        elif n == 127:
            (n,), pos = struct.unpack("!Q", data[pos : pos + 8]), pos + 8
        key = data[pos : pos + 4] if b1 & 0x80 else b""
        pos += len(key)
        payload = data[pos : pos + n]
        assert len(payload) == n, "truncated frame in the recording"
        pos += n
        if key:
            payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
        frames.append(WireFrame(bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F, payload))
    return frames


def data_frames(frames: list[WireFrame]) -> list[WireFrame]:
    return [f for f in frames if f.opcode < 0x8]


def ext_header(ws: ClientConnection) -> str:
    assert ws.response is not None
    return ws.response.headers.get("Sec-WebSocket-Extensions", "")


def deflate_of(ws: ClientConnection | ServerConnection) -> PerMessageDeflate:
    (ext,) = ws.protocol.extensions
    assert isinstance(ext, PerMessageDeflate)
    return ext


# -- websockets on both sides ------------------------------------------------------------------

# name: (client extension factory, server extension factory or None for the default,
#        (server_no_context_takeover, client_no_context_takeover, server bits, client bits))
VARIANTS: dict[str, tuple[ClientPerMessageDeflateFactory, ServerExtensionFactory | None, Any]] = {
    "context-takeover": (ClientPerMessageDeflateFactory(), None, (False, False, 12, 12)),
    "no-context-takeover-client-offer": (
        ClientPerMessageDeflateFactory(
            client_no_context_takeover=True, server_no_context_takeover=True
        ),
        None,
        (True, True, 12, 12),
    ),
    "no-context-takeover-server-imposed": (
        ClientPerMessageDeflateFactory(),
        ServerPerMessageDeflateFactory(
            server_no_context_takeover=True, client_no_context_takeover=True
        ),
        (True, True, 15, 15),
    ),
    "client-offer-bits-c9-s10": (
        ClientPerMessageDeflateFactory(client_max_window_bits=9, server_max_window_bits=10),
        None,
        (False, False, 10, 9),
    ),
    "server-imposed-bits-c10-s9": (
        ClientPerMessageDeflateFactory(),
        ServerPerMessageDeflateFactory(client_max_window_bits=10, server_max_window_bits=9),
        (False, False, 9, 10),
    ),
}

SIZES = [0, 1, 1000, 65536, MiB]
FRAGMENTS = ["frag-one " * 30, "frag-two " * 3000, "", "frag-three " * 10]


def check_negotiation(ws: ClientConnection, rec: WsUpstream, expected: Any) -> None:
    snct, cnct, sbits, cbits = expected
    assert "permessage-deflate" in (offer_of(rec) or "")
    # the upstream's answer reached the client unchanged
    assert ext_header(ws) == answer_of(rec)
    client_side = deflate_of(ws)
    assert (
        client_side.remote_no_context_takeover,
        client_side.local_no_context_takeover,
        client_side.remote_max_window_bits,
        client_side.local_max_window_bits,
    ) == (snct, cnct, sbits, cbits)
    (server_side,) = rec.extensions[0]
    assert (
        server_side.local_no_context_takeover,
        server_side.remote_no_context_takeover,
        server_side.local_max_window_bits,
        server_side.remote_max_window_bits,
    ) == (snct, cnct, sbits, cbits)


async def exchange(ws: ClientConnection, messages: Sequence[str | bytes]) -> None:
    for message in messages:
        await ws.send(message)
        got = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert type(got) is type(message) and len(got) == len(message)
        assert got == message
    await ws.send(FRAGMENTS)
    assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "".join(FRAGMENTS)


_FLAGS = re.compile(r"\] \S+ -> \S+ \S+ (\S+) len=")


def flags_of(line: str) -> str:
    """The flags column of a ``-v`` frame line: F fin, 1 RSV1, z compressed (or "-")."""
    match = _FLAGS.search(line)
    assert match, line
    return match.group(1)


def log_lines(text: str, direction: str) -> list[str]:
    return [line for line in text.splitlines() if f"] {direction} " in line and " len=" in line]


def deflate_client(url: str, proxy_url: str, factory: Any) -> Any:
    """A websockets client through ``proxy_url`` offering exactly ``factory``'s extension."""
    return connect(
        url,
        proxy=proxy_url,
        compression=None,
        extensions=[factory],
        max_size=None,
        ping_interval=None,
    )


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_websockets_through_the_proxy_process(proxy: Proxy, variant: str) -> None:
    """Pass-through (no plugin): the -v log shows every frame compressed (``1z``) with the
    decompressed payload's preview, both ways."""
    client_factory, server_factory, expected = VARIANTS[variant]
    messages = payloads(SIZES, variant)
    if variant == "context-takeover":
        messages.append(f"<{variant}:16MiB>" + wordy(16 * MiB - 20, 16))
    async with (
        recorder(None if server_factory is None else [server_factory]) as rec,
        deflate_client(f"{rec.url}/x", proxy.url, client_factory) as ws,
    ):
        check_negotiation(ws, rec, expected)
        await exchange(ws, messages)
    assert rec.received == [*messages, "".join(FRAGMENTS)]
    log = await proxy.wait_count("WebSocket closed", 1)  # logged after its last frame
    for direction in ("client -> server", "server -> client"):
        lines = log_lines(log, direction)
        data = [line for line in lines if " CLOSE " not in line]
        for message, line in zip(messages, data, strict=False):
            opcode = "TEXT" if isinstance(message, str) else "BINARY"
            assert f" {opcode} F1z len=" in line, line
            assert line.endswith(" " + expected_preview(message)), (line, message[:64])
        fragments = data[len(messages) :]
        if direction == "server -> client":  # the echo server answers with one frame
            assert len(fragments) == 1 and flags_of(fragments[0]) == "F1z", lines
        else:
            # websockets ends a list of fragments with an empty final frame
            flags = [flags_of(line) for line in fragments]
            assert flags == ["1z", *["z"] * (len(flags) - 2), "Fz"], fragments
            assert len(flags) >= len(FRAGMENTS)
            assert all(" CONTINUATION " in f for f in fragments[1:])
        assert " TEXT " in fragments[0]
        assert fragments[0].endswith(repr(FRAGMENTS[0][:40] + "…"))


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_websockets_through_a_quiet_proxy(start_proxy: StartProxy, variant: str) -> None:
    """Quiet (no -v, no plugin): whole compressed messages take the fast path (inflated with
    the running context, forwarded as they came), the rest the general one; a long run of
    small messages under context takeover, each referring back into the ones before it, with
    large and fragmented ones between them, all echoed exactly, both ways."""
    client_factory, server_factory, expected = VARIANTS[variant]
    proxy = await start_proxy(verbose=False)
    small: list[str | bytes] = [
        f"{i:03}: " + wordy(50 + i % 40, i % 7) if i % 3 else wordy(60, i % 5).encode()
        for i in range(300)
    ]
    messages = small[:150] + payloads(SIZES, variant) + small[150:] + ["é€😀" * 20]
    async with (
        recorder(None if server_factory is None else [server_factory]) as rec,
        deflate_client(f"{rec.url}/q", proxy.url, client_factory) as ws,
    ):
        check_negotiation(ws, rec, expected)
        await exchange(ws, messages)
    assert rec.received == [*messages, "".join(FRAGMENTS)]


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_websockets_through_a_message_hook(tmp_path: Path, variant: str) -> None:
    """Hooked path (in-process proxy, regular mode through CONNECT): the hook sees every
    message decompressed, exactly as sent, and marked compressed."""
    client_factory, server_factory, expected = VARIANTS[variant]
    messages = payloads(SIZES, variant)
    seen = Seen()
    async with (
        recorder(None if server_factory is None else [server_factory]) as rec,
        running_proxy(tmp_path, [seen]) as server,
        deflate_client(f"{rec.url}/x", f"http://{HOST}:{server.port}", client_factory) as ws,
    ):
        check_negotiation(ws, rec, expected)
        await exchange(ws, messages)
    whole = [*messages, "".join(FRAGMENTS)]
    for from_client in (True, False):
        got = [(op, content, z) for c, op, content, z in seen.messages if c is from_client]
        assert [content for _, content, _ in got] == [
            m.encode() if isinstance(m, str) else m for m in whole
        ]
        assert [op for op, _, _ in got] == [
            OP_TEXT if isinstance(m, str) else OP_BINARY for m in whole
        ]
        assert all(z for _, _, z in got)


# -- aiohttp -----------------------------------------------------------------------------------


async def aiohttp_exchange(
    ws: aiohttp.ClientWebSocketResponse, messages: Sequence[str | bytes]
) -> None:
    for message in messages:
        if isinstance(message, str):
            await ws.send_str(message)
            assert await ws.receive_str(timeout=TIMEOUT) == message
        else:
            await ws.send_bytes(message)
            assert await ws.receive_bytes(timeout=TIMEOUT) == message


@pytest.mark.parametrize(
    ("compress", "expect"), [(15, "permessage-deflate"), (10, "server_max_window_bits=10")]
)
async def test_aiohttp_client_and_server(
    proxy: Proxy, aiohttp_server: AioServer, compress: int, expect: str
) -> None:
    messages = payloads(SIZES, f"aio{compress}")
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"{aiohttp_server.ws_url}/ws",
            proxy=proxy.url,
            compress=compress,
            max_msg_size=0,
        ) as ws,
    ):
        answer = ws._response.headers.get("Sec-WebSocket-Extensions", "")
        assert answer.startswith("permessage-deflate") and expect in answer
        await aiohttp_exchange(ws, messages)
    offer = aiohttp_server.requests[-1].headers.get("Sec-WebSocket-Extensions", "")
    assert offer.startswith("permessage-deflate")
    log = await proxy.wait_count("WebSocket closed", 1)  # logged after its last frame
    lines = [line for line in log_lines(log, "client -> server") if " CLOSE " not in line]
    assert len(lines) == len(messages)
    for message, line in zip(messages, lines, strict=True):
        assert "F1z len=" in line, line
        assert line.endswith(" " + expected_preview(message)), line


async def test_aiohttp_client_and_websockets_server(tmp_path: Path) -> None:
    messages = payloads(SIZES, "mixed")
    seen = Seen()
    async with (
        recorder() as rec,
        running_proxy(tmp_path, [seen]) as server,
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"{rec.url}/mixed",
            proxy=f"http://{HOST}:{server.port}",
            compress=15,
            max_msg_size=0,
        ) as ws,
    ):
        answer = ws._response.headers.get("Sec-WebSocket-Extensions", "")
        assert answer == answer_of(rec) and answer.startswith("permessage-deflate")
        assert (offer_of(rec) or "").startswith("permessage-deflate")
        await aiohttp_exchange(ws, messages)
    assert rec.received == messages
    encoded = [m.encode() if isinstance(m, str) else m for m in messages]
    assert [content for c, _, content, _ in seen.messages if c] == encoded
    assert [content for c, _, content, _ in seen.messages if not c] == encoded
    assert all(z for *_, z in seen.messages)


# -- --no-compression --------------------------------------------------------------------------


async def test_no_compression_strips_the_offer_for_every_client(
    start_proxy: StartProxy, aiohttp_server: AioServer, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--no-compression")
    text, binary = "plain " * 100, os.urandom(3000)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{aiohttp_server.ws_url}/ws", proxy=proxy.url, compress=15) as ws,
    ):
        assert "Sec-WebSocket-Extensions" not in ws._response.headers
        assert ws.compress == 0
        await aiohttp_exchange(ws, [text, binary])
    assert "Sec-WebSocket-Extensions" not in aiohttp_server.requests[-1].headers
    offer = "permessage-deflate; client_max_window_bits, x-other-ext"
    async with connect(
        f"{ws_echo.url}/echo",
        proxy=proxy.url,
        additional_headers={"Sec-WebSocket-Extensions": offer},
        compression=None,
    ) as ws2:
        await ws2.send(text)
        assert await ws2.recv() == text
    # nothing is offered upstream: the proxy only offers what it can decode (README)
    assert "Sec-WebSocket-Extensions" not in ws_echo.requests[-1].headers
    log = await proxy.wait_count("WebSocket closed", 2)  # each logged after its last frame
    lines = [line for line in log.splitlines() if " len=" in line]
    data = [line for line in lines if " TEXT " in line or " BINARY " in line]
    assert len(data) == 6
    assert all(flags_of(line) == "F" for line in data), data  # no RSV1, not compressed
    assert any(line.endswith(expected_preview(text)) for line in data)


# -- the upstream's answer ---------------------------------------------------------------------


async def answer_with(
    raw_server: RawServerFactory, raw_client: RawClient, proxy: Proxy, offer: str, answer: str
) -> tuple[int, str | None]:
    async def handler(conn: RawConnection) -> None:
        head = await read_head(conn.reader)
        conn.head = head
        conn.writer.write(switching_protocols(head, f"Sec-WebSocket-Extensions: {answer}\r\n"))
        await conn.writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await read_until_close(conn.reader)

    upstream = await raw_server(handler)
    client = await raw_client(proxy.port)
    client.writer.write(
        upgrade_request(
            f"ws://{HOST}:{upstream.port}/",
            f"{HOST}:{upstream.port}",
            extra=[("Sec-WebSocket-Extensions", offer)],
        )
    )
    head = await asyncio.wait_for(read_head(client.reader), TIMEOUT)
    assert upstream.connections and upstream.connections[0].head is not None
    assert upstream.connections[0].head.get("Sec-WebSocket-Extensions") == offer
    if head.status == 101:
        client.writer.write(encode_frame(OP_CLOSE, close_payload(1000), mask=True))
        await client.writer.drain()
    return head.status, head.get("Sec-WebSocket-Extensions")


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        (
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=7",
        ),
        ("permessage-deflate", "permessage-deflate; server_max_window_bits=7"),
        ("permessage-deflate", "permessage-deflate; server_max_window_bits=16"),
        (
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=12",
        ),
        ("permessage-deflate; server_max_window_bits=10", "permessage-deflate"),
        ("permessage-deflate", "x-webkit-deflate-frame"),
        ("permessage-deflate", "permessage-deflate, x-webkit-deflate-frame"),
        ("permessage-deflate", "permessage-deflate; client_max_window_bits=10"),
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits",
        ),
        ("permessage-deflate", "permessage-deflate, permessage-deflate"),
        ("permessage-deflate", "permessage-deflate; unknown_param"),
        ("permessage-deflate", "permessage-deflate; client_no_context_takeover=1"),
        ("permessage-deflate; server_no_context_takeover", "permessage-deflate"),
    ],
)
async def test_invalid_answer_is_502(
    proxy: Proxy,
    raw_server: RawServerFactory,
    raw_client: RawClient,
    offer: str,
    answer: str,
) -> None:
    status, relayed = await answer_with(raw_server, raw_client, proxy, offer, answer)
    assert status == 502
    assert relayed is None
    await proxy.wait_log(lambda text: "502" in text or "permessage-deflate" in text)


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        ("permessage-deflate", "permessage-deflate"),
        ("permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
        (
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=8",
        ),
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=9",
        ),
        ("permessage-deflate", "permessage-deflate; client_no_context_takeover"),
        (
            "permessage-deflate; server_max_window_bits=10, permessage-deflate",
            "permessage-deflate",
        ),
        ("permessage-deflate", ""),
    ],
)
async def test_valid_answer_is_relayed(
    proxy: Proxy,
    raw_server: RawServerFactory,
    raw_client: RawClient,
    offer: str,
    answer: str,
) -> None:
    status, relayed = await answer_with(raw_server, raw_client, proxy, offer, answer)
    assert status == 101
    assert (relayed or "") == answer


async def test_an_offer_spelled_in_another_case_is_kept(
    proxy: Proxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    """Extension names are case-insensitive tokens: ``PerMessage-Deflate`` reaches the
    upstream as the client spelled it, and the compressed frames pass both ways."""
    received: list[Frame] = []

    async def handler(conn: RawConnection) -> None:
        head = conn.head = await read_head(conn.reader)
        conn.writer.write(
            switching_protocols(head, "Sec-WebSocket-Extensions: permessage-deflate\r\n")
        )
        received.append(await read_frame(conn.reader))
        conn.writer.write(encode_frame(OP_TEXT, deflate_raw(b"HELLO"), rsv=RSV1))
        await conn.writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await read_until_close(conn.reader)

    upstream = await raw_server(handler)
    client = await raw_client(proxy.port)
    offer = "PerMessage-Deflate; client_max_window_bits"
    client.writer.write(
        upgrade_request(
            f"ws://{HOST}:{upstream.port}/",
            f"{HOST}:{upstream.port}",
            extra=[("Sec-WebSocket-Extensions", offer)],
        )
    )
    head = await asyncio.wait_for(read_head(client.reader), TIMEOUT)
    assert head.status == 101
    assert head.get("Sec-WebSocket-Extensions") == "permessage-deflate"
    assert upstream.connections[0].head is not None
    assert upstream.connections[0].head.get("Sec-WebSocket-Extensions") == offer
    client.writer.write(encode_frame(OP_TEXT, deflate_raw(b"hello"), mask=True, rsv=RSV1))
    answer = await asyncio.wait_for(read_frame(client.reader), TIMEOUT)
    assert (answer.opcode, answer.rsv) == (OP_TEXT, RSV1)
    assert inflate(answer.payload) == b"HELLO"
    (frame,) = received
    assert (frame.opcode, frame.rsv) == (OP_TEXT, RSV1)
    assert inflate(frame.payload) == b"hello"
    client.writer.write(encode_frame(OP_CLOSE, close_payload(1000), mask=True))
    await client.writer.drain()


# -- a raw client through the proxy process ---------------------------------------------------


async def raw_ws(
    raw_client: RawClient, proxy: Proxy, upstream_port: int, offer: str | None
) -> RawConnection:
    conn = await raw_client(proxy.port)
    extra = [] if offer is None else [("Sec-WebSocket-Extensions", offer)]
    conn.writer.write(
        upgrade_request(f"ws://{HOST}:{upstream_port}/raw", f"{HOST}:{upstream_port}", extra=extra)
    )
    head = await asyncio.wait_for(read_head(conn.reader), TIMEOUT)
    assert head.status == 101, head
    if offer is None:
        assert head.get("Sec-WebSocket-Extensions") is None
    else:
        assert (head.get("Sec-WebSocket-Extensions") or "").startswith("permessage-deflate")
    return conn


def frames_of(kind: str, compressed: bytes) -> list[tuple[int, bytes, bool, int]]:
    """(opcode, payload, fin, rsv) of a compressed binary message sent one way or another."""
    if kind == "one-frame":
        return [(OP_BINARY, compressed, True, RSV1)]
    pieces = [compressed[i : i + 1000] for i in range(0, len(compressed), 1000)]
    return [
        (OP_BINARY if i == 0 else OP_CONT, piece, i == len(pieces) - 1, RSV1 if i == 0 else 0)
        for i, piece in enumerate(pieces)
    ]


@pytest.mark.parametrize("verbose", [True, False], ids=["-v", "quiet"])
@pytest.mark.parametrize("kind", ["one-frame", "fragmented"])
async def test_client_deflate_bomb(
    start_proxy: StartProxy, ws_echo: WsUpstream, raw_client: RawClient, kind: str, verbose: bool
) -> None:
    """Quiet, the first (small) message takes the fast path, the bomb the general one."""
    payload = bomb()
    assert len(payload) < 200_000
    proxy = await start_proxy("--max-message-size", "1MiB", verbose=verbose)
    conn = await raw_ws(raw_client, proxy, ws_echo.port, "permessage-deflate")
    # a message within the limit goes through first (and warms the proxy up)
    conn.writer.write(encode_frame(OP_TEXT, deflate_raw(b"x" * 1000), mask=True, rsv=RSV1))
    echo = await asyncio.wait_for(read_frame(conn.reader), TIMEOUT)
    assert echo.opcode == OP_TEXT and echo.rsv == RSV1
    assert zlib.decompressobj(-15).decompress(echo.payload + b"\x00\x00\xff\xff") == b"x" * 1000
    before = status_kib(proxy.proc.pid, "VmHWM")
    for opcode, piece, fin, rsv in frames_of(kind, payload):
        conn.writer.write(encode_frame(opcode, piece, fin=fin, mask=True, rsv=rsv))
    with contextlib.suppress(ConnectionError):
        await conn.writer.drain()
    frames, close = await asyncio.wait_for(read_until_close(conn.reader), TIMEOUT)
    assert frames == []
    assert close is not None and close.close_code == 1009
    assert (await ws_echo.next_close()).code == 1001
    growth = status_kib(proxy.proc.pid, "VmHWM") - before
    assert growth < 24 * 1024, f"the proxy's peak RSS grew by {growth} KiB"
    assert proxy.returncode is None


async def bomb_upstream(
    conn: RawConnection, frames: list[tuple[int, bytes, bool, int]], *, deflate: bool = True
) -> None:
    """A raw upstream: accepts permessage-deflate (if ``deflate``), sends ``frames``, answers
    and records the close it gets."""
    head = await read_head(conn.reader)
    answer = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    conn.writer.write(switching_protocols(head, answer))
    for opcode, payload, fin, rsv in frames:
        conn.writer.write(encode_frame(opcode, payload, fin=fin, rsv=rsv))
    await conn.writer.drain()
    got, close = await read_until_close(conn.reader)
    conn.extra["data"] = got
    conn.extra["close"] = close
    if close is not None:
        conn.writer.write(encode_frame(OP_CLOSE, close.payload))
        with contextlib.suppress(ConnectionError):
            await conn.writer.drain()


async def test_upstream_deflate_bomb(start_proxy: StartProxy, raw_server: RawServerFactory) -> None:
    proxy = await start_proxy("--max-message-size", "1MiB")
    ok = (OP_TEXT, deflate_raw(b"hello " * 100), True, RSV1)
    upstream = await raw_server(
        lambda conn: bomb_upstream(conn, [ok, *frames_of("one-frame", bomb())])
    )
    async with connect(
        f"{upstream.url}/bomb", proxy=proxy.url, max_size=None, ping_interval=None
    ) as ws:
        assert "permessage-deflate" in ext_header(ws)
        before = status_kib(proxy.proc.pid, "VmHWM")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hello " * 100
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1014
    await asyncio.wait_for(upstream.finished.get(), TIMEOUT)  # bomb_upstream has its close
    close = upstream.connections[0].extra["close"]
    assert isinstance(close, Frame) and close.close_code == 1009
    growth = status_kib(proxy.proc.pid, "VmHWM") - before
    assert growth < 24 * 1024, f"the proxy's peak RSS grew by {growth} KiB"


# -- corrupt data and RSV1 in the wrong place -------------------------------------------------

GARBAGE = b"\xff\xfe\xfd\xfc garbage"  # first block: BTYPE 11, reserved: "invalid block type"
PART = deflate_raw(b"first part " * 10)

# name: (offer the extension?, frames (opcode, payload, fin, rsv), expected code)
BAD: dict[str, tuple[bool, list[tuple[int, bytes, bool, int]], int]] = {
    "corrupt-deflate": (True, [(OP_TEXT, GARBAGE, True, RSV1)], 1007),
    "corrupt-deflate-in-continuation": (
        True,
        [(OP_BINARY, PART, False, RSV1), (OP_CONT, GARBAGE, True, 0)],
        1007,
    ),
    "rsv1-on-ping": (True, [(OP_PING, b"ping", True, RSV1)], 1002),
    "rsv1-on-continuation": (
        True,
        [(OP_TEXT, PART, False, RSV1), (OP_CONT, PART, True, RSV1)],
        1002,
    ),
    "rsv1-without-extension": (False, [(OP_TEXT, PART, True, RSV1)], 1002),
}


@pytest.mark.parametrize("verbose", [True, False], ids=["-v", "quiet"])
@pytest.mark.parametrize("case", list(BAD))
async def test_client_sends_bad_compressed_frames(
    start_proxy: StartProxy,
    ws_echo: WsUpstream,
    raw_client: RawClient,
    case: str,
    verbose: bool,
) -> None:
    """Quiet, a whole bad frame fails on the fast path, with the same close."""
    offer, frames, code = BAD[case]
    proxy = await start_proxy(verbose=verbose)
    conn = await raw_ws(raw_client, proxy, ws_echo.port, "permessage-deflate" if offer else None)
    for opcode, payload, fin, rsv in frames:
        conn.writer.write(encode_frame(opcode, payload, fin=fin, mask=True, rsv=rsv))
    await conn.writer.drain()
    got, close = await asyncio.wait_for(read_until_close(conn.reader), TIMEOUT)
    assert got == []
    assert close is not None and close.close_code == code, close
    assert (await ws_echo.next_close()).code == 1001


@pytest.mark.parametrize("verbose", [True, False], ids=["-v", "quiet"])
@pytest.mark.parametrize("case", list(BAD))
async def test_upstream_sends_bad_compressed_frames(
    start_proxy: StartProxy, raw_server: RawServerFactory, case: str, verbose: bool
) -> None:
    offer, frames, code = BAD[case]
    proxy = await start_proxy(verbose=verbose)

    async def handler(conn: RawConnection) -> None:
        await bomb_upstream(conn, frames, deflate=offer)

    upstream = await raw_server(handler)
    async with connect(
        f"{upstream.url}/bad",
        proxy=proxy.url,
        compression="deflate" if offer else None,
        ping_interval=None,
    ) as ws:
        assert ("permessage-deflate" in ext_header(ws)) is offer
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1014
    await asyncio.wait_for(upstream.finished.get(), TIMEOUT)  # bomb_upstream has its close
    close = upstream.connections[0].extra["close"]
    assert isinstance(close, Frame) and close.close_code == code


# -- a rewrite in the middle of a context-takeover stream -------------------------------------


class Rewrite50:
    """Changes message #50 both ways (the client's, and the server's echo of it)."""

    def message(self, flow: Flow, message: Message) -> None:
        if message.text.startswith("050:"):
            message.text += " [rewritten by the proxy towards the " + (
                "server]" if message.from_client else "client]"
            )


class Drop70:
    """Drops the client's message #70 and the server's echo of #90."""

    def message(self, flow: Flow, message: Message) -> None:
        if message.text.startswith("070:" if message.from_client else "090:"):
            message.drop()


def stream_texts(count: int) -> list[str]:
    """Repetitive texts: later messages repeat whole phrases of earlier ones, so a
    context-takeover compressor's back-references reach across messages."""
    phrases = [wordy(300, seed) for seed in range(8)]
    rng = random.Random(5)
    return [
        f"{i:03d}: " + " | ".join(rng.choice(phrases) for _ in range(rng.randint(1, 4)))
        for i in range(count)
    ]


def inflate_all(frames: list[WireFrame], no_context_takeover: bool) -> list[bytes]:
    """Decompress a direction's messages as a receiver would (each message one frame)."""
    out = []
    decoder = zlib.decompressobj(-15)
    for frame in frames:
        assert frame.fin and frame.rsv == RSV1, frame
        if no_context_takeover:
            decoder = zlib.decompressobj(-15)
        out.append(decoder.decompress(frame.payload + b"\x00\x00\xff\xff"))
    return out


@pytest.mark.parametrize(
    "client_factory",
    [
        ClientPerMessageDeflateFactory(),
        ClientPerMessageDeflateFactory(server_max_window_bits=9, client_max_window_bits=9),
    ],
    ids=["default-windows", "9-bit-windows"],
)
async def test_rewrite_and_drop_mid_stream_keep_the_stream_compressed(
    tmp_path: Path, client_factory: ClientPerMessageDeflateFactory
) -> None:
    sent = stream_texts(300)
    rewritten_c = sent[50] + " [rewritten by the proxy towards the server]"
    to_upstream = [rewritten_c if i == 50 else t for i, t in enumerate(sent) if i != 70]
    to_client = [
        t + " [rewritten by the proxy towards the client]" if t.startswith("050:") else t
        for t in to_upstream
        if not t.startswith("090:")
    ]
    seen = Seen()
    async with (
        recorder() as rec,
        tap(rec.port) as upstream_leg,
        running_proxy(tmp_path, [seen, Rewrite50(), Drop70()], upstream_leg.port) as server,
        tap(server.port) as client_leg,
    ):
        async with connect(
            f"ws://{HOST}:{client_leg.port}/stream",
            compression=None,
            extensions=[client_factory],
            ping_interval=None,
        ) as ws:
            params = deflate_of(ws)
            assert not params.local_no_context_takeover
            assert not params.remote_no_context_takeover
            for text in sent:
                await ws.send(text)
            got = [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in to_client]
            await ws.send("last")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "last"
        await asyncio.wait_for(client_leg.done.wait(), TIMEOUT)
        await asyncio.wait_for(upstream_leg.done.wait(), TIMEOUT)
    assert got == to_client
    assert rec.received == [*to_upstream, "last"]
    # the hooks saw every message decompressed, as its sender sent it
    assert [c.decode() for f, _, c, _ in seen.messages if f] == [*sent, "last"]
    assert [c.decode() for f, _, c, _ in seen.messages if not f] == [*to_upstream, "last"]

    # Every data frame on both legs, both ways, is one compressed frame (RSV1): the
    # proxy kept compressing after the rewrite and the drop.
    from_client = data_frames(parse_wire(bytes(client_leg.up)))
    to_server = data_frames(parse_wire(bytes(upstream_leg.up)))
    from_server = data_frames(parse_wire(bytes(upstream_leg.down)))
    to_client_wire = data_frames(parse_wire(bytes(client_leg.down)))
    assert [len(from_client), len(to_server)] == [301, 300]
    assert [len(from_server), len(to_client_wire)] == [300, 299]
    assert [m.decode() for m in inflate_all(to_server, False)] == [*to_upstream, "last"]
    assert [m.decode() for m in inflate_all(to_client_wire, False)] == [*to_client, "last"]
    # Unchanged messages before the first change are forwarded as they came (README).
    assert [f.payload for f in to_server[:50]] == [f.payload for f in from_client[:50]]
    assert [f.payload for f in to_client_wire[:50]] == [f.payload for f in from_server[:50]]
    # What follows is the proxy's own compression: about as good as the sender's, which
    # means back-references into earlier messages work (with 9-bit windows both are weaker).
    for ours, theirs in (
        (to_server[51:], from_client[51:]),
        (to_client_wire[51:], from_server[51:]),
    ):
        ours_size = sum(len(f.payload) for f in ours)
        theirs_size = sum(len(f.payload) for f in theirs)
        assert ours_size <= 1.5 * theirs_size, (ours_size, theirs_size)


# -- memory: an inflated message costs its size once -------------------------------------------

LIMIT = 64 * MiB
BIG_MESSAGE = LIMIT - 64 * 1024  # just under --max-message-size
# What the proxy may use beyond the message itself: read buffers, zlib's window, the
# compressed frames in flight and the allocator's slack.
MARGIN_KIB = 12 * 1024


@pytest.mark.parametrize("path", ["message-hook", "message-hook+capture", "pass-through"])
async def test_an_inflated_message_costs_its_size_once(
    start_proxy: StartProxy, tmp_path: Path, path: str
) -> None:
    """A compressed binary message just under ``--max-message-size`` (it inflates about
    1000:1) through the proxy process and back. With a message hook (the rewrite plugin,
    with a rule that never matches) the proxy must hold the message whole, once: its peak
    RSS grows by at most the message plus a margin, also when a capture records it (it
    records the same bytes, cut into lines as it writes them). Without plugins the proxy
    streams it (inflated in pieces, forwarded as it came): the margin only."""
    args = ["--max-message-size", "64MiB", "--max-frame-size", "64MiB"]
    if path.startswith("message-hook"):
        rules = tmp_path / "rules.json"
        rules.write_text(json.dumps({"rules": [{"match": "^never$", "replace": "x"}]}))
        args += ["-s", "rewrite", "--set", f"rewrite_rules={rules}"]
    if path.endswith("capture"):
        args += ["-w", str(tmp_path / "big.jsonl")]
    proxy = await start_proxy(*args)
    message = os.urandom(1024) * (BIG_MESSAGE // 1024)  # fits a 4 KiB window
    async with (
        recorder() as rec,
        deflate_client(f"{rec.url}/big", proxy.url, ClientPerMessageDeflateFactory()) as ws,
    ):
        await ws.send(b"warm up")
        assert await ws.recv() == b"warm up"
        memory = Memory(proxy.proc.pid)
        await ws.send(message)
        echo = await asyncio.wait_for(ws.recv(), TIMEOUT)
        growth = memory.growth_kib()
    assert echo == message
    held = BIG_MESSAGE // 1024 if path.startswith("message-hook") else 0
    print(f"{path}: peak RSS growth {growth / 1024:.1f} MiB")
    assert growth < held + MARGIN_KIB, (
        f"the proxy's peak RSS grew by {growth / 1024:.1f} MiB for a "
        f"{BIG_MESSAGE / MiB:.1f} MiB message ({path})"
    )
