"""Helpers for the plugin hook tests (the in-process proxy and the ``websockets`` upstream
are ``tests.harness.running_proxy`` and ``tests.harness.ws_upstream``).

* ``raw_upstream()`` is a bare WebSocket server that records every frame exactly as it came
  (fin, opcode, rsv, payload) and echoes data frames, answers pings and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tests.harness import HOST, raw_servers
from tests.integration.wsraw import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    Frame,
    RawConnection,
    encode_frame,
    read_frame,
    read_head,
    switching_protocols,
)


def ws_url(port: int, path: str = "/") -> str:
    return f"ws://{HOST}:{port}{path}"


# -- a raw upstream that records frames ------------------------------------------------------


@dataclass
class RawUpstream:
    port: int = 0
    frames: list[Frame] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def data_frames(self) -> list[tuple[bool, int, bytes]]:
        return [(f.fin, f.opcode, f.payload) for f in self.frames if f.opcode < 0x8]


@contextlib.asynccontextmanager
async def raw_upstream(bad_on: bytes | None = None) -> AsyncIterator[RawUpstream]:
    """A minimal WebSocket server (no extensions, on ``tests.harness.raw_servers``) that
    records frames exactly and echoes each data frame as it came; a data frame carrying
    ``bad_on`` is answered with a frame of the reserved opcode 0x3 (a protocol error)."""
    up = RawUpstream()

    async def handle(conn: RawConnection) -> None:
        reader, writer = conn.reader, conn.writer
        try:
            writer.write(switching_protocols(await read_head(reader)))
            while True:
                frame = await read_frame(reader)
                up.frames.append(frame)
                if frame.opcode == OP_CLOSE:
                    writer.write(encode_frame(OP_CLOSE, frame.payload))
                    await writer.drain()
                    break
                if frame.opcode == OP_PING:
                    writer.write(encode_frame(OP_PONG, frame.payload))
                elif bad_on is not None and frame.payload == bad_on:
                    writer.write(encode_frame(0x3, b"reserved opcode"))
                elif frame.opcode < 0x8:
                    writer.write(encode_frame(frame.opcode, frame.payload, fin=frame.fin))
                await writer.drain()
        finally:
            up.closed.set()

    async with raw_servers() as start:
        up.port = (await start(handle)).port
        yield up


# -- data ------------------------------------------------------------------------------------

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
    "websocket",
    "proxy",
    "deflate",
    "window",
    "frame",
    "message",
]


def wordy_texts(count: int, seed: int = 7, low: int = 20, high: int = 400) -> list[str]:
    """Random-ish text from a small vocabulary: later messages repeat earlier ones' words, so
    a context-takeover compressor points back across messages."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(low, high) // 6 + 1)]
        out.append(f"{i}: " + " ".join(words) + f" #{rng.randrange(10**6)}")
    return out


def wordy_bytes(size: int, seed: int = 3) -> bytes:
    rng = random.Random(seed)
    parts: list[bytes] = []
    total = 0
    while total < size:
        piece = (
            rng.randbytes(rng.randint(1, 64))
            if rng.random() < 0.3
            else rng.choice(WORDS).encode() * rng.randint(1, 8)
        )
        parts.append(piece)
        total += len(piece)
    return b"".join(parts)[:size]
