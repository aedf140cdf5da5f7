"""Memory under hostile peers: does the proxy's RSS stay bounded when one side pushes as fast
as it can and the other side does not read? By hand, never as a test.

    .venv/bin/python bench/memory_bench.py                        # every case, about 1 minute
    .venv/bin/python bench/memory_bench.py --cases upgrade-flood,ws-relay-100m
    .venv/bin/python bench/memory_bench.py --proxy-python ../other/.venv/bin/python

Every case starts a fresh ``python -m wsproxy`` (``--proxy-python``, run from a temporary
directory so that the interpreter's own install of wsproxy is the one measured), runs its own
peers in this process on 127.0.0.1 (raw asyncio sockets, and a ``websockets`` echo server for
the WebSocket cases), and samples the proxy's ``VmRSS`` every 20 ms from /proc/PID/status;
``VmHWM`` (reset with /proc/PID/clear_refs when the case starts) is read at the end. Peak is
the larger of the two; growth is peak minus the RSS at the start of the case. Nothing pushes
without a bound: a case stops pushing when it has sent its bytes, after its time limit, when
the peer has stopped taking data for 3 s (backpressure works), or as soon as the proxy has
grown past ``--cap`` (2 GiB), which the table shows as "> 2 GiB (cut)".

A case is "bounded" when the growth stays within its budget (the column "budget MiB"): the
memory a proxy that applies backpressure needs, with room to spare. The cases are listed by
``--help`` and described in bench/README.md. The table goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from _common import (
    HOST,
    SetupError,
    free_port,
    hwm_kib,
    render,
    require_modules,
    reset_hwm,
    rss_kib,
    spawn,
    stop_group,
    wait_port_sync,
)

T = TypeVar("T")
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
CHUNK = 1 * MiB  # one write of a pusher
WRITE_HIGH = 1 * MiB  # a pusher's transport buffer before drain() waits
STALL = 3.0  # seconds a drain() may wait before the peer counts as stalled
SAMPLE_EVERY = 0.02  # seconds between two VmRSS readings
PATTERN = bytes(range(256)) * (CHUNK // 256)


def log(msg: str) -> None:
    print(f"[memory {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def size(n: float) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}" if unit == "GiB" else f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def cap_label(mib: int) -> str:
    return f"{mib / 1024:g} GiB" if mib >= 1024 else f"{mib} MiB"


# -- the proxy's memory ----------------------------------------------------------------------


class Sampler(threading.Thread):
    """VmRSS of one process every ``SAMPLE_EVERY`` s, in a thread so that a busy event loop
    cannot delay the readings; sets ``cut`` once the growth passes ``cap_kib``."""

    def __init__(self, pid: int, cap_kib: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.cap_kib = pid, cap_kib
        reset_hwm([pid])
        self.baseline = rss_kib([pid])
        self.peak = self.baseline
        self.cut = threading.Event()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_EVERY):
            rss = rss_kib([self.pid])
            self.peak = max(self.peak, rss)
            if rss - self.baseline > self.cap_kib:
                self.cut.set()

    def finish(self) -> int:
        """Stop sampling; the peak in KiB, VmHWM included (read while the process lives)."""
        self._done.set()
        self.join()
        self.peak = max(self.peak, rss_kib([self.pid]), hwm_kib([self.pid]))
        return self.peak


# -- WebSocket bytes, written by hand (the proxy must see exactly what a peer sends) ---------


def mask(data: bytes, key: bytes) -> bytes:
    """RFC 6455 5.3: XOR with the 4-byte key, repeated."""
    n = len(data)
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")


def frame_head(length: int, key: bytes, opcode: int = 0x2, rsv1: bool = False) -> bytes:
    """A client frame's head, FIN set, masked with ``key`` (RFC 6455 5.2)."""
    b0 = 0x80 | (0x40 if rsv1 else 0) | opcode
    if length < 126:
        return struct.pack("!BB", b0, 0x80 | length) + key
    if length < 1 << 16:
        return struct.pack("!BBH", b0, 0x80 | 126, length) + key
    return struct.pack("!BBQ", b0, 0x80 | 127, length) + key


def upgrade_request(target: str, host: str, extensions: str | None = None) -> bytes:
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_frame(reader: asyncio.StreamReader, keep: bool = True) -> tuple[int, bytes, int]:
    """One frame from the server: (first byte, payload or b"" when not ``keep``, length)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    if b1 & 0x80:
        await reader.readexactly(4)
    if keep:
        return b0, await reader.readexactly(n), n
    left = n
    while left:
        data = await reader.read(min(left, CHUNK))
        if not data:
            raise asyncio.IncompleteReadError(b"", left)
        left -= len(data)
    return b0, b"", n


# -- one case --------------------------------------------------------------------------------


class Discard(asyncio.Protocol):
    """An upstream that reads everything and never answers."""

    received = 0

    def data_received(self, data: bytes) -> None:
        Discard.received += len(data)


class NonReader(asyncio.Protocol):
    """An upstream that accepts and never reads a byte."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()


class Run:
    """One case: its proxy, its peers, what was pushed and how it ended."""

    def __init__(self, case: Case, opts: argparse.Namespace, workdir: Path) -> None:
        self.case, self.opts, self.workdir = case, opts, workdir
        self.proxy: subprocess.Popen[bytes] | None = None
        self.sampler: Sampler | None = None
        self.closers: list[Callable[[], Awaitable[None] | None]] = []
        self.pushed = 0  # bytes written by push(), less what is still in our buffers at the end
        self.pushers: set[asyncio.StreamWriter] = set()
        self.notes: list[str] = []
        self.limit: int | None = None  # a case's --max-message-size, for the growth ratio
        self.started = time.monotonic()
        self.deadline = self.started + case.seconds

    # peers

    async def serve(self, factory: Callable[[], asyncio.Protocol]) -> int:
        server = await asyncio.get_running_loop().create_server(factory, HOST, 0)
        self.closers.append(server.close)
        return int(server.sockets[0].getsockname()[1])

    async def serve_streams(
        self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> int:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.closers.append(writer.close)
            await handler(reader, writer)

        server = await asyncio.start_server(tracked, HOST, 0)
        self.closers.append(server.close)
        return int(server.sockets[0].getsockname()[1])

    async def echo_server(self, compression: bool) -> int:
        """A ``websockets`` echo server: every message back, no size limit."""
        from websockets.asyncio.server import ServerConnection, serve

        async def echo(ws: ServerConnection) -> None:
            with contextlib.suppress(Exception):
                async for message in ws:
                    await ws.send(message)

        server = await serve(
            echo,
            HOST,
            0,
            max_size=None,
            ping_interval=None,
            compression="deflate" if compression else None,
        )

        async def close() -> None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

        self.closers.append(close)
        return int(next(iter(server.sockets)).getsockname()[1])

    async def connect(
        self, port: int, rcvbuf: int | None = None, limit: int = MiB
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so that the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
        writer.transport.set_write_buffer_limits(high=WRITE_HIGH)
        self.closers.append(writer.close)
        return reader, writer

    async def ws_open(
        self, port: int, path: str = "/", extensions: str | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        """A WebSocket through the (reverse-mode) proxy; the response head as text."""
        reader, writer = await self.connect(port)
        writer.write(upgrade_request(path, f"{HOST}:{port}", extensions))
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)).decode("latin-1")
        if not head.startswith("HTTP/1.1 101"):
            raise SetupError(f"upgrade refused: {head.splitlines()[0]!r}")
        return reader, writer, head

    # the proxy

    def start_proxy(self, *flags: str) -> int:
        port = free_port()
        cmd = [
            self.opts.proxy_python, "-m", "wsproxy",
            "--listen-host", HOST, "-p", str(port),
            "--confdir", str(self.workdir / "confdir"),
            "-q", *flags,
        ]  # fmt: skip
        self.proxy = spawn(
            cmd,
            cwd=self.workdir,  # not a checkout: the interpreter's own wsproxy is imported
            stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / f"{self.case.name}.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        wait_port_sync(port, self.proxy, 30)
        time.sleep(0.5)  # let the start settle before the baseline
        self.sampler = Sampler(self.proxy.pid, self.opts.cap * 1024)
        self.sampler.start()
        self.started = time.monotonic()
        self.deadline = self.started + self.case.seconds
        log(f"{self.case.name}: proxy pid {self.proxy.pid} {' '.join(flags)}")
        return port

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def note(self, text: str) -> None:
        self.notes.append(text)

    def stopping(self) -> str | None:
        """Why everything should stop now, or None."""
        if self.sampler is not None and self.sampler.cut.is_set():
            return "cut"
        if self.proxy is not None and self.proxy.poll() is not None:
            return f"proxy died (status {self.proxy.returncode})"
        if time.monotonic() > self.deadline:
            return "time limit"
        return None

    async def within(self, aw: Awaitable[T]) -> T | None:
        """``await aw``, given up (None) as soon as ``stopping()`` says so."""
        task = asyncio.ensure_future(aw)
        while not task.done():
            await asyncio.wait({task}, timeout=0.05)
            if not task.done() and self.stopping():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                return None
        return task.result()

    async def hold(self, seconds: float) -> None:
        """Keep everything open (and sampled) for ``seconds``, or until ``stopping()``."""
        await self.within(asyncio.sleep(seconds))

    async def push(self, writer: asyncio.StreamWriter, chunk: bytes, total: int | None) -> str:
        """Write ``chunk`` again and again (``total`` bytes at most, else no end) as fast as
        the other end takes it. Returns why it stopped: done, cut, time limit, stalled (no
        drain for ``STALL`` s: backpressure), closed, proxy died."""
        loop = asyncio.get_running_loop()
        sent = 0
        try:
            while total is None or sent < total:
                reason = self.stopping()
                if reason:
                    return reason
                piece = (
                    chunk if total is None or total - sent >= len(chunk) else chunk[: total - sent]
                )
                writer.write(piece)
                sent += len(piece)
                self.pushed += len(piece)
                waited = loop.time()
                drain = asyncio.ensure_future(writer.drain())
                while not drain.done():
                    await asyncio.wait({drain}, timeout=0.05)
                    if drain.done():
                        break
                    reason = self.stopping()
                    if reason is None and loop.time() - waited > STALL:
                        reason = "stalled"
                    if reason:
                        drain.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await drain
                        return reason
                drain.result()
            return "done"
        except (ConnectionError, OSError):
            return "closed"
        finally:
            self.pushers.add(writer)

    async def finish(self) -> Row:
        peak = self.sampler.finish() if self.sampler is not None else 0
        for writer in self.pushers:
            with contextlib.suppress(Exception):  # what never left this process
                self.pushed -= writer.transport.get_write_buffer_size()
        elapsed = self.elapsed()
        died = self.proxy is not None and self.proxy.poll() is not None
        stop_group(self.proxy)
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                result = close()
                if result is not None:
                    await result
        baseline = self.sampler.baseline if self.sampler is not None else 0
        cut = self.sampler is not None and self.sampler.cut.is_set()
        if self.limit:
            growth = (peak - baseline) * KiB
            self.note(f"growth / limit {growth / self.limit:.2f}x (limit {size(self.limit)})")
        return Row(self.case, self.pushed, baseline, peak, cut, died, elapsed, self.notes)


@dataclass
class Row:
    case: Case
    pushed: int
    baseline_kib: int
    peak_kib: int
    cut: bool
    died: bool
    seconds: float
    notes: list[str]

    def cells(self, cap_mib: int) -> list[str]:
        growth = (self.peak_kib - self.baseline_kib) / 1024
        if self.cut:
            growth_cell, bounded = f"> {cap_label(cap_mib)} (cut)", "no"
        else:
            growth_cell = f"{growth:.1f}"
            bounded = "no (died)" if self.died else "yes" if growth <= self.case.budget else "no"
        return [
            self.case.name,
            size(self.pushed),
            f"{self.baseline_kib / 1024:.1f}",
            f"{self.peak_kib / 1024:.1f}",
            growth_cell,
            f"{self.case.budget:g}",
            bounded,
            f"{self.seconds:.1f}",
        ]


# -- the cases -------------------------------------------------------------------------------


async def upgrade_flood(run: Run) -> None:
    """Regular mode, ``GET ws://127.0.0.1:UP/`` upgrade; the upstream reads it and never
    answers; the client sends bytes after the request head as fast as it can."""
    Discard.received = 0
    upstream = await run.serve(Discard)
    port = run.start_proxy()
    reader, writer = await run.connect(port)
    writer.write(upgrade_request(f"ws://{HOST}:{upstream}/", f"{HOST}:{upstream}"))
    answer: dict[str, Any] = {}

    async def read_answer() -> None:
        with contextlib.suppress(Exception):
            line = await reader.readline()
            answer["line"], answer["at"] = line.decode("latin-1").strip(), run.elapsed()

    reading = asyncio.ensure_future(read_answer())
    why = await run.push(writer, PATTERN, None)
    run.note(f"push stopped: {why} after {run.elapsed():.1f} s")
    await asyncio.wait({reading}, timeout=0.5)  # an answer that came with the end
    if answer.get("line"):
        run.note(f"proxy answered {answer['line']!r} after {answer['at']:.1f} s")
    run.note(f"upstream received {size(Discard.received)} (it never answers)")
    reading.cancel()


async def http_download_slow_client(run: Run) -> None:
    """Regular mode, plain ``GET http://127.0.0.1:UP/``; the upstream answers with a 1 GiB
    body as fast as it can; the client reads 16 KiB every 100 ms (64 KiB receive buffer)."""
    body = 1 * GiB
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.set_write_buffer_limits(high=WRITE_HIGH)
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {body}\r\n\r\n".encode()
        writer.write(head)
        why = await run.push(writer, PATTERN, body)  # pushed counts the body only
        if not outcome.done():
            outcome.set_result(why)

    upstream = await run.serve_streams(handler)
    port = run.start_proxy()
    reader, writer = await run.connect(port, rcvbuf=64 * KiB, limit=16 * KiB)
    writer.write(
        f"GET http://{HOST}:{upstream}/big HTTP/1.1\r\nHost: {HOST}:{upstream}\r\n\r\n".encode()
    )
    got = 0
    while not outcome.done() and not run.stopping():
        data = await run.within(reader.read(16 * KiB))
        if not data:
            break
        got += len(data)
        await asyncio.sleep(0.1)
    why = outcome.result() if outcome.done() else run.stopping() or "client saw EOF"
    run.note(f"upstream push stopped: {why} after {run.elapsed():.1f} s")
    await run.hold(2)
    run.note(f"the client read {size(got)}")


async def _upload(run: Run, chunked: bool) -> None:
    body = 1 * GiB
    upstream = await run.serve(NonReader)
    port = run.start_proxy()
    _, writer = await run.connect(port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {body}"
    head = (
        f"POST http://{HOST}:{upstream}/up HTTP/1.1\r\nHost: {HOST}:{upstream}\r\n{framing}\r\n\r\n"
    )
    writer.write(head.encode())
    chunk = f"{len(PATTERN):x}\r\n".encode() + PATTERN + b"\r\n" if chunked else PATTERN
    why = await run.push(writer, chunk, body // len(PATTERN) * len(chunk))
    run.note(f"push stopped: {why} after {run.elapsed():.1f} s")
    await run.hold(2)


async def http_upload_nonreading_server(run: Run) -> None:
    """Regular mode, ``POST http://127.0.0.1:UP/`` with Content-Length 1 GiB sent as fast as
    possible; the upstream accepts and never reads."""
    await _upload(run, chunked=False)


async def chunked_upload(run: Run) -> None:
    """The same with ``Transfer-Encoding: chunked`` (1 MiB chunks, 1 GiB, no last chunk)."""
    await _upload(run, chunked=True)


async def capture_stalled_frames(run: Run) -> None:
    """Reverse mode to a ``websockets`` echo server, ``-w FILE.jsonl``; 16 WebSockets, each
    sends the head of a 60 MiB binary frame and 40 MiB of its payload, then stalls."""
    conns, frame, sent = 16, 60 * MiB, 40 * MiB
    echo = await run.echo_server(compression=False)
    port = run.start_proxy(
        "--mode", f"reverse:ws://{HOST}:{echo}", "-w", str(run.workdir / "cap.jsonl")
    )
    key = os.urandom(4)
    chunk = mask(PATTERN, key)  # CHUNK is a multiple of 4: every chunk masks alike
    writers = []
    for i in range(conns):
        _, writer, _ = await run.ws_open(port, f"/stall{i}")
        writer.write(frame_head(frame, key))
        writers.append(writer)
    results = await asyncio.gather(*(run.push(w, chunk, sent) for w in writers))
    run.note(f"pushes: {', '.join(sorted(set(results)))} after {run.elapsed():.1f} s")
    await run.hold(3)


async def inflate_message(run: Run) -> None:
    """Reverse mode to a ``websockets`` echo server with permessage-deflate,
    ``--max-message-size 32MiB -w FILE.jsonl``; 3 times, one binary message of 32 MiB - 1 KiB
    of zeros (about 32 KiB compressed) and its echo."""
    limit, count = 32 * MiB, 3
    message = bytes(limit - KiB)
    echo = await run.echo_server(compression=True)
    port = run.start_proxy(
        "--mode", f"reverse:ws://{HOST}:{echo}",
        "--max-message-size", "32MiB",
        "-w", str(run.workdir / "cap.jsonl"),
    )  # fmt: skip
    reader, writer, head = await run.ws_open(
        port, "/inflate", "permessage-deflate; client_max_window_bits"
    )
    if "permessage-deflate" not in head:
        raise SetupError("permessage-deflate was not negotiated")
    bits = re.search(r"client_max_window_bits=(\d+)", head)
    wbits = int(bits.group(1)) if bits else 15
    inflater = zlib.decompressobj(-15)  # the server may keep its context between messages
    echoed = 0
    for _ in range(count):
        deflater = zlib.compressobj(
            wbits=-wbits
        )  # a fresh context is valid with or without takeover
        data = deflater.compress(message) + deflater.flush(zlib.Z_SYNC_FLUSH)
        data = data[:-4]  # RFC 7692 7.2.1: without the trailing 00 00 ff ff
        key = os.urandom(4)
        writer.write(frame_head(len(data), key, rsv1=True) + mask(data, key))
        run.pushed += len(data)
        frame = await run.within(read_frame(reader))
        if frame is None:
            break
        b0, payload, _ = frame
        if b0 & 0x0F == 0x8:
            run.note(f"the proxy closed: {payload[:2].hex()} {payload[2:]!r}")
            break
        plain = inflater.decompress(payload + b"\x00\x00\xff\xff") if b0 & 0x40 else payload
        echoed += plain == message
    run.note(f"{echoed}/{count} echoes of {size(len(message))} ({size(len(data))} on the wire)")
    run.limit = limit
    await run.hold(1)


async def ws_relay_100m(run: Run) -> None:
    """Control: reverse mode to a ``websockets`` echo server, no capture or plugin,
    ``--max-frame-size 128MiB --max-message-size 128MiB``; one 100 MiB binary frame and
    its echo, read as it comes."""
    frame = 100 * MiB
    echo = await run.echo_server(compression=False)
    port = run.start_proxy(
        "--mode", f"reverse:ws://{HOST}:{echo}",
        "--max-frame-size", "128MiB", "--max-message-size", "128MiB",
    )  # fmt: skip
    reader, writer, _ = await run.ws_open(port, "/relay")
    key = os.urandom(4)
    writer.write(frame_head(frame, key))
    echoing = asyncio.ensure_future(read_frame(reader, keep=False))
    why = await run.push(writer, mask(PATTERN, key), frame)
    result = await run.within(echoing)
    got = result[2] if result is not None else 0
    run.note(f"push: {why}; echo of {size(got)} back after {run.elapsed():.1f} s")


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Run], Awaitable[None]]
    budget: float  # MiB of growth a proxy with backpressure stays under
    seconds: float  # time limit of the pushing


CASES = [
    Case("upgrade-flood", upgrade_flood, 32, 15),
    Case("http-download-slow-client", http_download_slow_client, 32, 12),
    Case("http-upload-nonreading-server", http_upload_nonreading_server, 32, 12),
    Case("chunked-upload", chunked_upload, 32, 12),
    Case("capture-stalled-frames", capture_stalled_frames, 64, 20),
    Case("inflate-message", inflate_message, 32 + 16, 20),
    Case("ws-relay-100m", ws_relay_100m, 32, 20),
]


# -- the driver ------------------------------------------------------------------------------


def describe_proxy(python: str, workdir: Path) -> str:
    """Which wsproxy ``python`` imports (from ``workdir``, as the cases run it), and its commit."""
    try:
        path = subprocess.run(
            [python, "-c", "import wsproxy; print(wsproxy.__file__)"],
            cwd=workdir, capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError) as error:
        raise SetupError(f"{python} cannot import wsproxy: {error}") from None
    commit = subprocess.run(
        ["git", "-C", str(Path(path).parent), "log", "-1", "--format=%h %s"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return f"{path} ({commit or 'not in git'})"


async def run_case(case: Case, opts: argparse.Namespace, workdir: Path) -> Row:
    run = Run(case, opts, workdir)
    try:
        await asyncio.wait_for(case.run(run), case.seconds + 30)
    except (SetupError, OSError, asyncio.IncompleteReadError, TimeoutError) as error:
        run.note(f"case failed: {error!r}")
    row = await run.finish()
    log(f"{case.name}: {' | '.join(row.cells(opts.cap))}")
    return row


async def amain(opts: argparse.Namespace, cases: list[Case], workdir: Path) -> list[Row]:
    rows = []
    for case in cases:
        rows.append(await run_case(case, opts, workdir))
    return rows


def main(argv: list[str] | None = None) -> int:
    names = [case.name for case in CASES]
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cases", default=",".join(names), help=f"comma-separated, from: {', '.join(names)}"
    )
    parser.add_argument(
        "--proxy-python",
        default=sys.executable,
        help="interpreter that runs python -m wsproxy (default: this one)",
    )
    parser.add_argument(
        "--cap", type=int, default=2048, metavar="MIB", help="MiB of growth that cuts a case (2048)"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary directory")
    opts = parser.parse_args(argv)
    require_modules("bench/memory_bench.py", "websockets")
    chosen = [name.strip() for name in opts.cases.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in names]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; from: {', '.join(names)}")
    cases = [case for case in CASES if case.name in chosen]

    workdir = Path(tempfile.mkdtemp(prefix="wsproxy-memory-"))
    try:
        proxy = describe_proxy(opts.proxy_python, workdir)
        log(f"proxy: {opts.proxy_python} -> {proxy}")
        rows = asyncio.run(amain(opts, cases, workdir))
    except SetupError as error:
        log(f"set-up failed: {error}")
        return 2
    finally:
        if opts.keep_logs:
            log(f"logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    header = [
        "case",
        "pushed",
        "baseline MiB",
        "peak MiB",
        "growth MiB",
        "budget MiB",
        "bounded",
        "s",
    ]
    print(f"wsproxy memory under hostile peers; proxy {proxy}")
    print(render([header] + [row.cells(opts.cap) for row in rows]))
    print()
    for row in rows:
        print(f"{row.case.name}: {'; '.join(row.notes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
