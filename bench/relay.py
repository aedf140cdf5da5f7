"""A plain asyncio TCP byte relay: the floor for any Python proxy.

    python bench/relay.py --port 9001 --upstream 127.0.0.1:9000 [--impl streams]

Listens on 127.0.0.1:PORT; for every accepted connection it opens one connection to
the fixed upstream and copies bytes both ways, nothing more: no parsing, no
buffering beyond what the transports hold, flow control by pausing the reading side
when the writing side's buffer is full, half-close passed on. On asyncio's own event
loop, or with --loop uvloop on uvloop's (wsproxy's default loop when it is installed):
the floor for a Python proxy on the loop wsproxy runs on.

--impl protocol (default) uses asyncio protocols and transports: the cheapest
pure-asyncio path. --impl streams uses StreamReader/StreamWriter with one copy task
per direction (read(64 KiB), write, drain): the floor for a streams-based proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import cast


class _Half(asyncio.Protocol):
    """One side of a relayed pair; writes what it reads to its peer's transport."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None
        self._pending: list[bytes] = []  # bytes read before the peer was connected
        self._pending_eof = False
        self._closed = False

    # -- wiring
    def attach(self, peer: _Half) -> None:
        self.peer = peer
        assert peer.transport is not None
        if self._pending:
            peer.transport.writelines(self._pending)
            self._pending.clear()
        if self._pending_eof and peer.transport.can_write_eof():
            peer.transport.write_eof()

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's only implement asyncio.Transport's methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self._pending.append(data)
            return
        peer.transport.write(data)

    def eof_received(self) -> bool:
        peer = self.peer
        if peer is None or peer.transport is None:
            self._pending_eof = True
        elif peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True  # keep our write side open until the peer is done too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer._closed:
            peer.transport.close()

    # Our transport's write buffer is full: stop reading from the peer.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _Downstream(_Half):
    """The accepted client side: opens the upstream connection when it is made."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__()
        self._upstream = upstream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        # Until the upstream is connected we could only buffer: stop reading.
        self.transport.pause_reading()
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self._upstream
        try:
            _, up = await asyncio.wait_for(loop.create_connection(_Half, host, port), timeout=10)
        except (OSError, TimeoutError) as e:
            print(f"relay: upstream {host}:{port}: {e}", file=sys.stderr)
            if self.transport is not None:
                self.transport.close()
            return
        if self._closed:
            if up.transport is not None:
                up.transport.close()
            return
        up.peer = self
        self.peer = up
        self.attach(up)
        up.attach(self)
        assert self.transport is not None
        self.transport.resume_reading()


def _parse_hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return (host or "127.0.0.1"), int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


async def _stream_client(
    upstream: tuple[str, int], c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter
) -> None:
    try:
        u_reader, u_writer = await asyncio.wait_for(asyncio.open_connection(*upstream), 10)
    except (OSError, TimeoutError) as e:
        print(f"relay: upstream {upstream[0]}:{upstream[1]}: {e}", file=sys.stderr)
        c_writer.close()
        return
    try:
        await asyncio.gather(_pipe(c_reader, u_writer), _pipe(u_reader, c_writer))
    finally:
        for w in (c_writer, u_writer):
            w.close()


async def serve(host: str, port: int, upstream: tuple[str, int], impl: str = "protocol") -> None:
    loop = asyncio.get_running_loop()
    if impl == "streams":
        server = await asyncio.start_server(
            lambda r, w: _stream_client(upstream, r, w),
            host,
            port,
            backlog=4096,
            reuse_address=True,
        )
    else:
        server = await loop.create_server(
            lambda: _Downstream(upstream), host, port, backlog=4096, reuse_address=True
        )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--port", "-p", type=int, required=True, help="port to listen on")
    ap.add_argument("--upstream", required=True, help="HOST:PORT to relay to")
    ap.add_argument("--impl", choices=["protocol", "streams"], default="protocol")
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = ap.parse_args(argv)
    relay = serve(args.host, args.port, _parse_hostport(args.upstream), args.impl)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(relay)
    else:
        asyncio.run(relay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
