"""Flow control through a real proxy process.

* Backpressure: a fast sender and a slow reader. The sender is slowed down to the reader's
  pace (it can only be ahead by what the sockets' buffers hold), and the proxy's memory stays
  bounded however much goes through: it streams, it never queues what the reader cannot take.
  Each runs with ``-v`` (frames recorded, the general path) and without (the quiet path,
  where payloads stream through as views of each read).
* RFC 6455 4.1: one upgrade in CONNECTING per (client address, upstream host, port); others
  wait their turn as long as their client stays; the handshake timeout starts with the turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.harness import (
    HOST,
    Memory,
    ProxyProcess,
    RawClient,
    RawServerFactory,
    StartProxy,
)
from tests.integration import wsraw
from tests.integration.wsraw import OP_BINARY, OP_CLOSE, RawConnection
from wsproxy.capture.messages import reassemble
from wsproxy.capture.reader import read_capture
from wsproxy.capture.records import Frame

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20
KiB = 1 << 10
TIMEOUT = 20.0

SLOW_CHUNK = 64 * KiB  # the slow reader takes this much...
SLOW_PAUSE = 0.05  # ... every this many seconds: 1.25 MiB/s
SLOW_PHASE = 2.0  # seconds of slow reading before the checkpoint
# What the sender may be ahead of the reader at the checkpoint: the kernel's socket buffers
# on both legs (loopback autotuning grows them to a few MiB each), the proxy's transport
# buffer and read size, the sender's own transport buffer and message in progress.
MAX_AHEAD = 40 * MiB
MAX_GROWTH_KIB = 40 * 1024  # the proxy's peak RSS over the run, above its RSS at the start


# -- frames, read at a pace ---------------------------------------------------------------------


@dataclass
class Pace:
    """How fast a reader goes: slow until ``fast`` is set; counts what it read."""

    fast: asyncio.Event = field(default_factory=asyncio.Event)
    read: int = 0

    async def step(self, n: int) -> None:
        self.read += n
        if not self.fast.is_set():
            await asyncio.sleep(SLOW_PAUSE)

    @property
    def chunk(self) -> int:
        return MiB if self.fast.is_set() else SLOW_CHUNK


def unmask_at(data: bytes, key: bytes, offset: int) -> bytes:
    """Unmask ``data`` found at ``offset`` in a masked payload."""
    if not key:
        return data
    shift = offset % 4
    return wsraw.apply_mask(data, key[shift:] + key[:shift])


async def read_frame_paced(
    reader: asyncio.StreamReader, pace: Pace, expected: Callable[[int, int], bytes]
) -> tuple[int, int]:
    """One frame, its payload read at ``pace`` and compared piece by piece with
    ``expected(offset, length)``; returns (opcode, payload length)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    head = 2
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
        head += 2
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
        head += 8
    key = await reader.readexactly(4) if b1 & 0x80 else b""
    await pace.step(head + len(key))
    offset = 0
    while offset < n:
        piece = await reader.readexactly(min(pace.chunk, n - offset))
        data = unmask_at(piece, key, offset)
        if data != expected(offset, len(data)):
            raise AssertionError(f"payload differs at byte {offset} of a {n}-byte frame")
        offset += len(piece)
        await pace.step(len(piece))
    assert b0 & 0x80, "a fragment: the proxy changed the framing"
    return b0 & 0x0F, n


def repeating(block: bytes) -> Callable[[int, int], bytes]:
    """``expected`` for a payload made of ``block`` repeated (pieces never exceed a block)."""
    doubled = block * 2

    def expected(offset: int, length: int) -> bytes:
        start = offset % len(block)
        return doubled[start : start + length]

    return expected


async def raw_ws(raw_client: RawClient, proxy: ProxyProcess, port: int, path: str) -> RawConnection:
    """A raw client with a completed upgrade through the proxy (absolute form)."""
    conn = await raw_client(proxy.port)
    authority = f"{HOST}:{port}"
    key = wsraw.new_key()
    conn.writer.write(wsraw.upgrade_request(f"ws://{authority}{path}", authority, key=key))
    head = await asyncio.wait_for(wsraw.read_head(conn.reader), TIMEOUT)
    assert head.status == 101, head
    assert head.get("Sec-WebSocket-Accept") == wsraw.accept_for(key)
    return conn


async def answer_101(conn: RawConnection, head: wsraw.Head) -> None:
    conn.writer.write(wsraw.switching_protocols(head))
    await conn.writer.drain()


async def finish_close_as_server(conn: RawConnection) -> None:
    """Read up to the proxy's close frame, answer it and end the connection."""
    _, close = await wsraw.read_until_close(conn.reader)
    if close is not None:
        conn.writer.write(wsraw.encode_frame(OP_CLOSE, close.payload))
        with contextlib.suppress(ConnectionError):
            await conn.writer.drain()
    await conn.close()


async def wait_for_checkpoint(pace: Pace) -> None:
    """Let the slow reader read for SLOW_PHASE seconds (it must have read something)."""
    await asyncio.sleep(SLOW_PHASE)  # the scenario's length, not a wait for an event
    assert pace.read > 0, "the reader read nothing: the relay is stuck"


def assert_slowed(sent: int, total: int, pace: Pace) -> None:
    ahead = sent - pace.read
    assert ahead < MAX_AHEAD, (
        f"the sender got {sent / MiB:.1f} MiB out of {total / MiB:.0f} MiB while the reader "
        f"had read {pace.read / MiB:.1f} MiB: it was not slowed down"
    )


def assert_bounded(memory: Memory, through: int) -> None:
    growth = memory.growth_kib()
    assert growth < MAX_GROWTH_KIB, (
        f"the proxy's peak RSS grew by {growth / 1024:.1f} MiB while {through / MiB:.0f} MiB "
        "went through it"
    )


# -- backpressure ---------------------------------------------------------------------------------


@dataclass
class Flood:
    """A websockets server that sends ``count`` binary messages of ``block`` at full speed
    once ``go`` is set, counting the sends that returned, then closes with 1000."""

    block: bytes
    count: int
    go: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0
    port: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None


@pytest.fixture
async def flood() -> AsyncIterator[Flood]:
    state = Flood(os.urandom(MiB), 200)

    async def handler(ws: ServerConnection) -> None:
        try:
            await state.go.wait()
            for _ in range(state.count):
                await ws.send(state.block)
                state.sent += 1
            await ws.close(1000, "all sent")
        except ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            state.close_code = ws.close_code
            state.done.set()

    async with serve(
        handler, HOST, 0, max_size=None, ping_interval=None, compression=None
    ) as server:
        state.port = server.sockets[0].getsockname()[1]
        yield state


@pytest.mark.parametrize("verbose", [True, False], ids=["recorded", "quiet"])
async def test_server_to_slow_client(
    start_proxy: StartProxy, flood: Flood, raw_client: RawClient, verbose: bool
) -> None:
    """200 MiB from a websockets upstream as fast as it can to a client reading 1.25 MiB/s:
    the upstream's sends block, and the proxy's memory does not grow with what is sent."""
    proxy = await start_proxy(verbose=verbose)
    conn = await raw_ws(raw_client, proxy, flood.port, "/flood")
    memory = Memory(proxy.proc.pid)
    total = flood.count * len(flood.block)
    pace = Pace()
    expected = repeating(flood.block)

    async def read_all() -> int:
        for _ in range(flood.count):
            opcode, n = await read_frame_paced(conn.reader, pace, expected)
            assert (opcode, n) == (OP_BINARY, len(flood.block))
        return flood.count

    reading = asyncio.ensure_future(read_all())
    try:
        flood.go.set()
        await wait_for_checkpoint(pace)
        assert_slowed(flood.sent * len(flood.block), total, pace)
        pace.fast.set()
        assert await asyncio.wait_for(reading, TIMEOUT) == flood.count
    finally:
        reading.cancel()
    close = await asyncio.wait_for(wsraw.read_frame(conn.reader), TIMEOUT)
    assert close.opcode == OP_CLOSE and close.close_code == 1000
    conn.writer.write(wsraw.encode_frame(OP_CLOSE, close.payload, mask=True))
    await asyncio.wait_for(flood.done.wait(), TIMEOUT)
    assert flood.close_code == 1000
    assert_bounded(memory, total)


@pytest.mark.parametrize("verbose", [True, False], ids=["recorded", "quiet"])
async def test_client_to_slow_server(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient, verbose: bool
) -> None:
    """200 MiB from a client writing as fast as it can to an upstream reading 1.25 MiB/s."""
    block, count = os.urandom(MiB), 200
    total = count * len(block)
    pace = Pace()
    received: list[int] = []

    async def slow_upstream(conn: RawConnection) -> None:
        await answer_101(conn, await wsraw.read_head(conn.reader))
        expected = repeating(block)
        for _ in range(count):
            opcode, n = await read_frame_paced(conn.reader, pace, expected)
            assert (opcode, n) == (OP_BINARY, len(block))
            received.append(n)
        await finish_close_as_server(conn)

    upstream = await raw_server(slow_upstream)
    proxy = await start_proxy(verbose=verbose)
    conn = await raw_ws(raw_client, proxy, upstream.port, "/slow")
    memory = Memory(proxy.proc.pid)
    frame = wsraw.encode_frame(OP_BINARY, block, mask=True)
    sent = 0

    async def send_all() -> None:
        nonlocal sent
        for _ in range(count):
            conn.writer.write(frame)
            await conn.writer.drain()
            sent += 1

    sending = asyncio.ensure_future(send_all())
    try:
        await wait_for_checkpoint(pace)
        assert not sending.done(), "the client sent everything to a reader that read little"
        assert_slowed(sent * len(block), total, pace)
        pace.fast.set()
        await asyncio.wait_for(sending, TIMEOUT)
    finally:
        sending.cancel()
    conn.writer.write(wsraw.encode_frame(OP_CLOSE, wsraw.close_payload(1000), mask=True))
    close = await asyncio.wait_for(wsraw.read_frame(conn.reader), TIMEOUT)
    assert close.opcode == OP_CLOSE and close.close_code == 1000
    assert len(received) == count
    assert_bounded(memory, total)


@pytest.mark.parametrize("verbose", [True, False], ids=["recorded", "quiet"])
async def test_one_100_mib_frame_to_slow_server(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient, verbose: bool
) -> None:
    """A single 100 MiB frame (one message) to a slow upstream: streamed, never held whole."""
    block, blocks = os.urandom(MiB), 100
    total = blocks * len(block)
    pace = Pace()
    received: list[tuple[int, int]] = []

    async def slow_upstream(conn: RawConnection) -> None:
        await answer_101(conn, await wsraw.read_head(conn.reader))
        received.append(await read_frame_paced(conn.reader, pace, repeating(block)))
        await finish_close_as_server(conn)

    upstream = await raw_server(slow_upstream)
    proxy = await start_proxy(
        "--max-frame-size", "128MiB", "--max-message-size", "128MiB", verbose=verbose
    )
    conn = await raw_ws(raw_client, proxy, upstream.port, "/big")
    memory = Memory(proxy.proc.pid)
    key = os.urandom(4)
    masked_block = wsraw.apply_mask(block, key)  # a block is a multiple of 4 bytes long
    sent = 0

    async def send_frame() -> None:
        nonlocal sent
        conn.writer.write(struct.pack("!BBQ", 0x80 | OP_BINARY, 0x80 | 127, total) + key)
        for _ in range(blocks):
            conn.writer.write(masked_block)
            await conn.writer.drain()
            sent += len(masked_block)

    sending = asyncio.ensure_future(send_frame())
    try:
        await wait_for_checkpoint(pace)
        assert not sending.done(), "the client sent 100 MiB to a reader that read little"
        assert_slowed(sent, total, pace)
        pace.fast.set()
        await asyncio.wait_for(sending, TIMEOUT)
    finally:
        sending.cancel()
    conn.writer.write(wsraw.encode_frame(OP_CLOSE, wsraw.close_payload(1000), mask=True))
    close = await asyncio.wait_for(wsraw.read_frame(conn.reader), TIMEOUT)
    assert close.opcode == OP_CLOSE and close.close_code == 1000
    assert received == [(OP_BINARY, total)]
    assert_bounded(memory, total)


# -- one handshake in CONNECTING per (client, upstream host, port) ---------------------------------


@dataclass
class Upstream:
    """A raw upstream that records when connections and upgrade requests arrive and when it
    answered them; ``answer`` decides, from the request's rank, after how long (None: never)."""

    answer: Callable[[int], float | None]
    connected: list[float] = field(default_factory=list)
    requests: list[tuple[str, float]] = field(default_factory=list)
    answered: list[tuple[str, float]] = field(default_factory=list)
    port: int = 0
    in_handshake: int = 0  # requests read and not answered yet
    most_in_handshake: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def seen(self, count: int) -> None:
        """Wait until ``count`` upgrade requests arrived."""
        while len(self.requests) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), TIMEOUT)

    async def handle(self, conn: RawConnection) -> None:
        self.connected.append(time.monotonic())
        head = await wsraw.read_head(conn.reader)
        rank = len(self.requests)
        self.requests.append((head.target, time.monotonic()))
        self.in_handshake += 1
        self.most_in_handshake = max(self.most_in_handshake, self.in_handshake)
        self.changed.set()
        delay = self.answer(rank)
        if delay is None:
            await conn.reader.read()  # never answer: wait for the proxy to give up
            return
        await asyncio.sleep(delay)  # the upstream's own pace, not a wait for an event
        self.in_handshake -= 1
        await answer_101(conn, head)
        self.answered.append((head.target, time.monotonic()))
        await finish_close_as_server(conn)


async def start_upstream(
    raw_server: RawServerFactory, answer: Callable[[int], float | None]
) -> Upstream:
    upstream = Upstream(answer)
    upstream.port = (await raw_server(upstream.handle)).port
    return upstream


async def send_upgrade(
    proxy_port: int, upstream_port: int, path: str, *, local: str = HOST
) -> tuple[RawConnection, float]:
    """A client connection that has sent its upgrade request; and when it sent it."""
    reader, writer = await asyncio.open_connection(HOST, proxy_port, local_addr=(local, 0))
    conn = RawConnection(reader, writer)
    authority = f"{HOST}:{upstream_port}"
    conn.writer.write(wsraw.upgrade_request(f"ws://{authority}{path}", authority))
    await conn.writer.drain()
    return conn, time.monotonic()


async def answer_of(conn: RawConnection, timeout: float = TIMEOUT) -> tuple[wsraw.Head, float]:
    """The proxy's answer to an upgrade (with the body of an error) and when it came."""
    head = await asyncio.wait_for(wsraw.read_response(conn.reader), timeout)
    return head, time.monotonic()


async def close_client(conn: RawConnection) -> None:
    conn.writer.write(wsraw.encode_frame(OP_CLOSE, wsraw.close_payload(1000), mask=True))
    close = await asyncio.wait_for(wsraw.read_frame(conn.reader), TIMEOUT)
    assert close.opcode == OP_CLOSE and close.close_code == 1000
    await conn.close()


@pytest.fixture
async def clients() -> AsyncIterator[list[RawConnection]]:
    """Connections the test opened itself (``send_upgrade``), closed at teardown."""
    conns: list[RawConnection] = []
    yield conns
    for conn in conns:
        await conn.close()


FIRST_DELAY = 1.0


async def test_second_upgrade_waits_until_the_first_is_answered(
    start_proxy: StartProxy, raw_server: RawServerFactory, clients: list[RawConnection]
) -> None:
    """Two upgrades at once from one client address to one upstream: the upstream gets the
    second (not even its TCP connection) only after it answered the first. An upgrade to
    another port of the same host, or from another client address, does not wait."""
    slow = await start_upstream(raw_server, lambda rank: FIRST_DELAY if rank == 0 else 0)
    other_port = await start_upstream(raw_server, lambda rank: 0)
    proxy = await start_proxy()
    a, sent_a = await send_upgrade(proxy.port, slow.port, "/a")
    b, _ = await send_upgrade(proxy.port, slow.port, "/b")
    clients += [a, b]
    # The first is in CONNECTING (the upstream has it), and the proxy has read the second.
    await slow.seen(1)
    await proxy.wait_log(
        lambda t: f"GET ws://{HOST}:{slow.port}/a" in t and f"GET ws://{HOST}:{slow.port}/b" in t
    )
    assert slow.answered == []

    c, sent_c = await send_upgrade(proxy.port, other_port.port, "/c")
    d, sent_d = await send_upgrade(proxy.port, slow.port, "/d", local="127.0.0.2")
    clients += [c, d]
    (head_c, got_c), (head_d, got_d) = await asyncio.gather(answer_of(c), answer_of(d))
    assert head_c.status == 101 and head_d.status == 101
    assert [path for path, _ in slow.answered] == ["/d"], "/a or /b answered before /c and /d"
    # /c and /d, sent after the proxy read the second, went through; the second still waits
    # in the proxy: the upstream saw the first and /d only (requests and TCP connections).
    assert [path for path, _ in slow.requests][1:] == ["/d"], slow.requests
    assert len(slow.connected) == 2
    assert got_c - sent_c < FIRST_DELAY / 2, "another port waited for the pending upgrade"
    assert got_d - sent_d < FIRST_DELAY / 2, "another client address waited for it"

    (head_a, got_a), (head_b, got_b) = await asyncio.gather(answer_of(a), answer_of(b))
    assert head_a.status == 101 and head_b.status == 101
    first, d_path, second = [path for path, _ in slow.requests]
    assert d_path == "/d" and {first, second} == {"/a", "/b"}
    answered = dict(slow.answered)
    requested = dict(slow.requests)
    # The upstream met the second request, and its TCP connection, only after it answered the
    # first one (connections: the first, /d, the second).
    assert requested[second] >= answered[first], (slow.requests, slow.answered)
    assert len(slow.connected) == 3 and slow.connected[2] >= answered[first]
    assert min(got_a, got_b) - sent_a >= FIRST_DELAY * 0.9
    for conn in (a, b, c, d):
        await close_client(conn)


async def test_waiting_upgrade_goes_on_when_the_first_times_out(
    start_proxy: StartProxy, raw_server: RawServerFactory, clients: list[RawConnection]
) -> None:
    """--handshake-timeout 1, an upstream that never answers the first upgrade: the first gets
    504 after 1 s, which ends its CONNECTING state; the second, sent 0.3 s after the first,
    then gets its turn (within its own 1 s wait) and is answered."""
    upstream = await start_upstream(raw_server, lambda rank: None if rank == 0 else 0)
    proxy = await start_proxy("--handshake-timeout", "1")
    a, sent_a = await send_upgrade(proxy.port, upstream.port, "/a")
    clients.append(a)
    await upstream.seen(1)  # the first is in CONNECTING
    # The scenario's timing, not a wait for an event: the second comes 0.3 s into the first's
    # 1 s, so the first's timeout falls inside the second's own wait.
    await asyncio.sleep(sent_a + 0.3 - time.monotonic())
    b, sent_b = await send_upgrade(proxy.port, upstream.port, "/b")
    clients.append(b)
    (head_a, got_a), (head_b, got_b) = await asyncio.gather(answer_of(a), answer_of(b))
    assert head_a.status == 504, head_a
    assert b"did not answer the upgrade in time" in head_a.body
    assert 0.9 <= got_a - sent_a < 1.6
    assert head_b.status == 101, head_b
    assert [path for path, _ in upstream.requests] == ["/a", "/b"]
    # The upstream got the second upgrade only once the first had timed out.
    assert upstream.requests[1][1] - sent_a >= 0.9
    assert got_b - sent_b < 1.0
    await close_client(b)
    assert "another handshake" not in proxy.stderr()


async def test_waiting_for_a_turn_does_not_count_against_the_handshake_timeout(
    start_proxy: StartProxy, raw_server: RawServerFactory, clients: list[RawConnection]
) -> None:
    """--handshake-timeout 1 and an upstream that takes 2 s to answer the first upgrade: the
    second waits its turn for longer than the handshake timeout and is still answered, because
    its timeout starts when its turn comes."""
    upstream = await start_upstream(raw_server, lambda rank: 2.0 if rank == 0 else 0)
    proxy = await start_proxy("--handshake-timeout", "3")
    a, _ = await send_upgrade(proxy.port, upstream.port, "/a")
    clients.append(a)
    await upstream.seen(1)
    b, _ = await send_upgrade(proxy.port, upstream.port, "/b")
    clients.append(b)
    (head_a, _), (head_b, _) = await asyncio.gather(answer_of(a), answer_of(b))
    assert head_a.status == 101 and head_b.status == 101, (head_a, head_b)
    assert [path for path, _ in upstream.requests] == ["/a", "/b"]
    assert upstream.requests[1][1] >= upstream.answered[0][1]
    for conn in (a, b):
        await close_client(conn)


async def test_a_client_that_leaves_while_waiting_gives_up_its_turn(
    start_proxy: StartProxy, raw_server: RawServerFactory, clients: list[RawConnection]
) -> None:
    """The first upgrade hangs in CONNECTING; the second client closes while it waits: the
    proxy says so, never sends its request upstream, and forgets the wait."""
    upstream = await start_upstream(raw_server, lambda rank: None)
    proxy = await start_proxy("--handshake-timeout", "30")
    a, _ = await send_upgrade(proxy.port, upstream.port, "/a")
    clients.append(a)
    await upstream.seen(1)
    b, _ = await send_upgrade(proxy.port, upstream.port, "/b")
    await proxy.wait_log(lambda text: text.count(f"GET ws://{HOST}:{upstream.port}/") == 2)
    await b.close()
    await proxy.wait_log(lambda text: "left while waiting for its handshake turn" in text)
    assert [path for path, _ in upstream.requests] == ["/a"]


async def test_forty_clients_behind_one_address_all_connect(
    start_proxy: StartProxy, raw_server: RawServerFactory, clients: list[RawConnection]
) -> None:
    """40 WebSockets opened at once from 127.0.0.1 to a server that takes 0.3 s to answer each
    (12 s in all, beyond the 10 s handshake timeout): with the rule on, every one connects, one
    at a time; with --parallel-handshakes the server sees them all at once."""
    for args, most_at_once in (((), 1), (("--parallel-handshakes",), 40)):
        upstream = await start_upstream(raw_server, lambda rank: 0.3)
        proxy = await start_proxy(*args)
        opened = [send_upgrade(proxy.port, upstream.port, f"/{n}") for n in range(40)]
        conns = [conn for conn, _ in await asyncio.gather(*opened)]
        clients.extend(conns)
        heads = await asyncio.gather(*(answer_of(conn, timeout=30) for conn in conns))
        assert [head.status for head, _ in heads] == [101] * 40
        assert upstream.most_in_handshake == most_at_once, args
        await asyncio.gather(*(close_client(conn) for conn in conns))


# -- capture: frames stalled half-way are not held whole ---------------------------------------

STALLED_CONNS = 8
STALLED_FRAME = 60 * MiB  # each client announces a frame this long...
STALLED_SENT = 40 * MiB  # ... sends this much of it, and stops
MAX_CAPTURE_GROWTH_KIB = 64 * 1024  # for all the stalled connections together


@dataclass
class Sink:
    """A raw upstream that answers 101 and reads one long binary frame per connection,
    counting its payload bytes per path; ``reached(path, n)`` waits for ``n`` of them."""

    got: dict[str, int] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    port: int = 0

    async def handle(self, conn: RawConnection) -> None:
        head = await wsraw.read_head(conn.reader)
        await answer_101(conn, head)
        b0, b1 = await conn.reader.readexactly(2)
        assert (b0, b1 & 0x7F) == (0x80 | OP_BINARY, 127)
        (length,) = struct.unpack("!Q", await conn.reader.readexactly(8))
        await conn.reader.readexactly(4)  # the proxy's mask key
        done = 0
        while done < length:
            piece = await conn.reader.read(min(MiB, length - done))
            if not piece:
                return
            done += len(piece)
            async with self.changed:
                self.got[head.target] = done
                self.changed.notify_all()
        await finish_close_as_server(conn)

    async def reached(self, path: str, n: int) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: self.got.get(path, 0) >= n), 60)


async def test_capture_of_stalled_large_frames_is_bounded(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient, tmp_path: Path
) -> None:
    """With ``-w``, several clients each stop 40 MiB into a 60 MiB frame: the capture gets
    the frames in pieces as they stream, so the proxy's peak RSS stays far below what the
    stalled frames hold; once they end, the capture has their exact bytes."""
    sink = Sink()
    sink.port = (await raw_server(sink.handle)).port
    capture = tmp_path / "stalled.jsonl"
    proxy = await start_proxy(
        "-w", str(capture), "--max-frame-size", "128MiB", "--max-message-size", "128MiB"
    )
    blocks = [os.urandom(MiB) for _ in range(STALLED_CONNS)]
    paths = [f"/stalled/{i}" for i in range(STALLED_CONNS)]
    conns = [await raw_ws(raw_client, proxy, sink.port, path) for path in paths]
    memory = Memory(proxy.proc.pid)
    key = os.urandom(4)
    masked = [wsraw.apply_mask(block, key) for block in blocks]  # a block: a multiple of 4

    async def send(i: int, start: int, end: int) -> None:
        writer = conns[i].writer
        if start == 0:
            writer.write(struct.pack("!BBQ", 0x80 | OP_BINARY, 0x80 | 127, STALLED_FRAME) + key)
        for _ in range(start // MiB, end // MiB):
            writer.write(masked[i])
            await writer.drain()
        await sink.reached(paths[i], end)

    await asyncio.gather(*(send(i, 0, STALLED_SENT) for i in range(STALLED_CONNS)))
    growth = memory.growth_kib()
    await asyncio.gather(*(send(i, STALLED_SENT, STALLED_FRAME) for i in range(STALLED_CONNS)))
    for conn in conns:
        await close_client(conn)
    assert await proxy.stop() == 0
    assert growth < MAX_CAPTURE_GROWTH_KIB, (
        f"the proxy's peak RSS grew by {growth / 1024:.1f} MiB with {STALLED_CONNS} frames "
        f"stalled {STALLED_SENT // MiB} MiB into {STALLED_FRAME // MiB} MiB"
    )
    print(f"peak RSS growth: {growth / 1024:.1f} MiB")
    got = {
        message.conn: message
        for message in reassemble(r for r in read_capture(capture) if isinstance(r, Frame))
        if message.direction == "client"
    }
    assert len(got) == STALLED_CONNS
    contents = sorted(message.content for message in got.values())
    assert contents == sorted(block * (STALLED_FRAME // MiB) for block in blocks)
