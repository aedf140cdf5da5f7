"""Byte-level HTTP and WebSocket helpers for the integration and plugin tests.

Real clients (websockets, aiohttp) refuse to send broken frames or requests, so the tests
that need them (unmasked client frames, masked server frames, smuggling attempts, bad
handshakes) build the bytes here and read the proxy's answers byte by byte.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
from dataclasses import dataclass, field

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bool = False,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """One frame; ``length`` overrides the announced payload length (to half-send one)."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", first, mask_bit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + apply_mask(payload, key)


def apply_mask(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    repeated = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(data), "big"
    )


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes

    @property
    def close_code(self) -> int | None:
        assert self.opcode == OP_CLOSE
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> str:
        return self.payload[2:].decode()


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    """The next frame (unmasked); raises IncompleteReadError at EOF."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    masked = bool(b1 & 0x80)
    key = await reader.readexactly(4) if masked else b""
    payload = await reader.readexactly(n)
    if masked:
        payload = apply_mask(payload, key)
    return Frame(bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F, masked, payload)


async def read_until_close(reader: asyncio.StreamReader) -> tuple[list[Frame], Frame | None]:
    """Frames until a close frame (returned apart), or None if the connection ended first."""
    frames: list[Frame] = []
    while True:
        try:
            frame = await read_frame(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            return frames, None
        if frame.opcode == OP_CLOSE:
            return frames, frame
        frames.append(frame)


@dataclass
class Head:
    """A parsed HTTP head: request or response."""

    start: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def status(self) -> int:
        return int(self.start.split(" ", 2)[1])

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0]

    @property
    def target(self) -> str:
        return self.start.split(" ", 2)[1]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


async def read_head(reader: asyncio.StreamReader) -> Head:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw[:-4].decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return Head(lines[0], headers)


def switching_protocols(head: Head, extra: str = "", *, accept: str | None = None) -> bytes:
    """The 101 answer to the upgrade request ``head``; ``extra`` adds header lines (each
    ending in CRLF), ``accept`` replaces the right Sec-WebSocket-Accept value."""
    key = head.get("Sec-WebSocket-Key") or ""
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept or accept_for(key)}\r\n{extra}\r\n"
    ).encode()


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def read_response(reader: asyncio.StreamReader, *, method: str = "GET") -> Head:
    """A whole response: head and body (Content-Length, chunked, or until EOF)."""
    head = await read_head(reader)
    if method == "HEAD" or head.status in (101, 204, 304) or 100 <= head.status < 200:
        return head
    te = (head.get("Transfer-Encoding") or "").lower()
    if "chunked" in te:
        head.body = await read_chunked(reader)
    elif head.get("Content-Length") is not None:
        head.body = await reader.readexactly(int(head.get("Content-Length") or 0))
    else:
        head.body = await reader.read()
    return head


async def read_request(reader: asyncio.StreamReader) -> Head:
    """A whole request: head and body (Content-Length, chunked, or none)."""
    head = await read_head(reader)
    if "chunked" in (head.get("Transfer-Encoding") or "").lower():
        head.body = await read_chunked(reader)
    elif head.get("Content-Length") is not None:
        head.body = await reader.readexactly(int(head.get("Content-Length") or 0))
    return head


def upgrade_request(
    target: str,
    host: str | None,
    *,
    key: str | None = None,
    method: str = "GET",
    version: str = "HTTP/1.1",
    extra: list[tuple[str, str]] | None = None,
    drop: tuple[str, ...] = (),
) -> bytes:
    """An upgrade request; ``drop`` removes standard headers by (lower-case) name, ``extra``
    adds more after them."""
    headers = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key or new_key()),
        ("Sec-WebSocket-Version", "13"),
    ]
    headers = [(k, v) for k, v in headers if v is not None and k.lower() not in drop]
    lines = [f"{method} {target} {version}"]
    lines += [f"{k}: {v}" for k, v in [*headers, *(extra or [])]]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class RawConnection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    head: Head | None = None
    extra: dict[str, object] = field(default_factory=dict)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


async def accept_upgrade(conn: RawConnection) -> Head:
    """Read one upgrade request (kept as ``conn.head``) and answer it correctly, without
    extensions."""
    head = conn.head = await read_head(conn.reader)
    conn.writer.write(switching_protocols(head))
    await conn.writer.drain()
    return head
