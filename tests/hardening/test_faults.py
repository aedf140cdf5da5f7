"""Faults: peers that die, reset, half-close or never answer, and an upstream name that does
not resolve. In every case the other peer is told (README's close-code table), nothing is
left behind, and no traceback reaches the console.

The single cases run against a real proxy process (the ``proxy`` fixture fails a test whose
proxy printed a traceback). The leak test runs a thousand of them, mixed, against a
``ProxyServer`` in this process, so that asyncio tasks and file descriptors can be counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
import random
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    HOST,
    Proxy,
    ProxyProcess,
    ProxyView,
    StartProxy,
    free_port,
    launch_sync,
    running_proxy,
    wait_until,
)
from tests.integration import wsraw
from tests.integration.wsraw import OP_BINARY, OP_CLOSE, OP_TEXT

pytestmark = pytest.mark.timeout(90)

BIG = 300_000  # over the relay's streaming threshold: forwarded piece by piece
TIMEOUT = 10


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def half_frame(size: int, sent: int, *, mask: bool) -> bytes:
    """The header of a ``size``-byte binary frame and only ``sent`` bytes of its payload."""
    frame = wsraw.encode_frame(OP_BINARY, os.urandom(size), mask=mask)
    return frame[: len(frame) - (size - sent)]


# -- an upstream that misbehaves on request --------------------------------------------------


@dataclass
class FaultUpstream:
    """``/BEHAVIOUR/ID``: answers the upgrade, then behaves; ``outcome(ID)`` is how the
    connection ended for it: ("close", code) or ("eof", None)."""

    port: int = 0
    silent_port: int = 0
    outcomes: dict[str, asyncio.Future[tuple[str, int | None]]] = field(default_factory=dict)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    servers: list[asyncio.Server] = field(default_factory=list)

    def future(self, conn_id: str) -> asyncio.Future[tuple[str, int | None]]:
        if conn_id not in self.outcomes:
            self.outcomes[conn_id] = asyncio.get_running_loop().create_future()
        return self.outcomes[conn_id]

    async def outcome(self, conn_id: str) -> tuple[str, int | None]:
        try:
            return await asyncio.wait_for(self.future(conn_id), TIMEOUT)
        finally:
            self.outcomes.pop(conn_id, None)

    async def start(self) -> None:
        self.servers.append(await asyncio.start_server(self._handle, HOST, 0))
        self.servers.append(await asyncio.start_server(self._silent, HOST, 0))
        self.port = self.servers[0].sockets[0].getsockname()[1]
        self.silent_port = self.servers[1].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)
        for server in self.servers:
            await server.wait_closed()

    async def _silent(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._run(reader, writer, self._never_answer)

    async def _never_answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.read()  # accepts TCP, reads the request, never says a word

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._run(reader, writer, self._behave)

    async def _run(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        body: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await body(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self.tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _behave(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(wsraw.read_head(reader), TIMEOUT)
        _, behaviour, conn_id = head.target.split("/", 2)
        writer.write(wsraw.switching_protocols(head))
        outcome = self.future(conn_id)
        if behaviour != "echo":
            # Every fault starts after one message went both ways.
            frame = await asyncio.wait_for(wsraw.read_frame(reader), TIMEOUT)
            writer.write(wsraw.encode_frame(frame.opcode, frame.payload))
            await writer.drain()
        if behaviour in ("halfbig", "halfbig-rst"):
            writer.write(half_frame(BIG, BIG // 3, mask=False))
            await writer.drain()
        elif behaviour in ("halfsmall", "halfsmall-rst"):
            writer.write(half_frame(100, 10, mask=False))
            await writer.drain()
        if behaviour.endswith("rst"):
            # The peer's own pace: the half frame leaves before the RST, which would discard
            # what is still unsent (SO_LINGER 0).
            await asyncio.sleep(0.01)
            reset(writer)
            return
        if behaviour in ("halfbig", "halfsmall", "fin"):
            return  # FIN, without a close frame
        if behaviour == "shutwr":
            writer.write_eof()
        # echo, shutwr: read (and echo) until a close frame or the end.
        while True:
            try:
                frame = await asyncio.wait_for(wsraw.read_frame(reader), TIMEOUT)
            except (asyncio.IncompleteReadError, ConnectionError):
                if not outcome.done():
                    outcome.set_result(("eof", None))
                return
            if frame.opcode == OP_CLOSE:
                if not outcome.done():
                    outcome.set_result(("close", frame.close_code))
                if behaviour == "echo":
                    writer.write(wsraw.encode_frame(OP_CLOSE, frame.payload))
                    await writer.drain()
                return
            if behaviour == "echo":
                writer.write(wsraw.encode_frame(frame.opcode, frame.payload))


@pytest.fixture
async def upstream() -> AsyncIterator[FaultUpstream]:
    server = FaultUpstream()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# -- the cases -------------------------------------------------------------------------------

_ids = itertools.count()


async def open_ws(
    proxy_port: int, upstream: FaultUpstream, behaviour: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """A raw client through the proxy (absolute form) with one message echoed already."""
    conn_id = f"{os.getpid()}-{next(_ids)}"
    reader, writer = await asyncio.open_connection(HOST, proxy_port)
    authority = f"{HOST}:{upstream.port}"
    writer.write(wsraw.upgrade_request(f"ws://{authority}/{behaviour}/{conn_id}", authority))
    head = await asyncio.wait_for(wsraw.read_head(reader), TIMEOUT)
    assert head.status == 101, head
    writer.write(wsraw.encode_frame(OP_TEXT, b"first", mask=True))
    echoed = await asyncio.wait_for(wsraw.read_frame(reader), TIMEOUT)
    assert echoed.payload == b"first"
    return reader, writer, conn_id


async def finish(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


async def client_end(reader: asyncio.StreamReader) -> int | None:
    """The close code the client gets next (None: the connection was cut without one)."""
    _, close = await asyncio.wait_for(wsraw.read_until_close(reader), TIMEOUT)
    return None if close is None else close.close_code


async def expect_status(proxy_port: int, data: bytes, status: int) -> wsraw.Head:
    reader, writer = await asyncio.open_connection(HOST, proxy_port)
    try:
        writer.write(data)
        head = await asyncio.wait_for(wsraw.read_head(reader), TIMEOUT)
        assert head.status == status, head
        return head
    finally:
        await finish(writer)


# Each case: (proxy port, upstream) -> None, asserting what both sides were told.


async def case_clean(port: int, up: FaultUpstream) -> None:
    reader, writer, conn_id = await open_ws(port, up, "echo")
    writer.write(wsraw.encode_frame(OP_CLOSE, wsraw.close_payload(1000), mask=True))
    assert await client_end(reader) == 1000
    assert await up.outcome(conn_id) == ("close", 1000)
    await finish(writer)


async def case_client_fin(port: int, up: FaultUpstream) -> None:
    _, writer, conn_id = await open_ws(port, up, "echo")
    await finish(writer)
    assert await up.outcome(conn_id) == ("close", 1001)


async def case_client_rst(port: int, up: FaultUpstream) -> None:
    _, writer, conn_id = await open_ws(port, up, "echo")
    reset(writer)
    assert await up.outcome(conn_id) == ("close", 1001)


async def case_client_shutwr(port: int, up: FaultUpstream) -> None:
    """Half-close without a close frame: the client is gone as far as WebSocket goes."""
    reader, writer, conn_id = await open_ws(port, up, "echo")
    writer.write_eof()
    assert await up.outcome(conn_id) == ("close", 1001)
    await asyncio.wait_for(reader.read(), TIMEOUT)  # and the proxy ends it: EOF
    await finish(writer)


async def case_client_halfbig(port: int, up: FaultUpstream, rst: bool = False) -> None:
    """The client dies inside a large frame that is already streaming upstream: no close
    frame fits in the middle of a frame, so the upstream's connection is cut."""
    _, writer, conn_id = await open_ws(port, up, "echo")
    writer.write(half_frame(BIG, BIG // 3, mask=True))
    await writer.drain()
    # The client's own pace: it dies 20 ms into the frame, most often once the proxy streams
    # it. Nothing outside the proxy shows that moment, so both endings are accepted below.
    await asyncio.sleep(0.02)
    if rst:
        reset(writer)
    else:
        await finish(writer)
    assert await up.outcome(conn_id) in (("eof", None), ("close", 1001))


async def case_client_halfbig_rst(port: int, up: FaultUpstream) -> None:
    await case_client_halfbig(port, up, rst=True)


async def case_client_halfsmall(port: int, up: FaultUpstream) -> None:
    """A small frame is held until whole, so the upstream gets a proper 1001."""
    _, writer, conn_id = await open_ws(port, up, "echo")
    writer.write(half_frame(100, 10, mask=True))
    await writer.drain()
    await finish(writer)
    assert await up.outcome(conn_id) == ("close", 1001)


async def upstream_fault(port: int, up: FaultUpstream, behaviour: str) -> int | None:
    reader, writer, _ = await open_ws(port, up, behaviour)
    try:
        return await client_end(reader)
    finally:
        await finish(writer)


async def case_upstream_fin(port: int, up: FaultUpstream) -> None:
    assert await upstream_fault(port, up, "fin") == 1014


async def case_upstream_rst(port: int, up: FaultUpstream) -> None:
    assert await upstream_fault(port, up, "rst") == 1014


async def case_upstream_shutwr(port: int, up: FaultUpstream) -> None:
    assert await upstream_fault(port, up, "shutwr") == 1014


async def case_upstream_halfsmall(port: int, up: FaultUpstream) -> None:
    assert await upstream_fault(port, up, "halfsmall") == 1014


async def case_upstream_halfsmall_rst(port: int, up: FaultUpstream) -> None:
    assert await upstream_fault(port, up, "halfsmall-rst") == 1014


async def case_upstream_halfbig(port: int, up: FaultUpstream) -> None:
    """Half a large frame is already on its way to the client: it is cut, no close frame."""
    assert await upstream_fault(port, up, "halfbig") is None


async def case_upstream_halfbig_rst(port: int, up: FaultUpstream) -> None:
    assert await upstream_fault(port, up, "halfbig-rst") is None


async def case_upstream_refused(port: int, up: FaultUpstream) -> None:
    closed = free_port()
    authority = f"{HOST}:{closed}"
    await expect_status(port, wsraw.upgrade_request(f"ws://{authority}/", authority), 502)


async def case_upstream_silent(port: int, up: FaultUpstream) -> None:
    authority = f"{HOST}:{up.silent_port}"
    await expect_status(port, wsraw.upgrade_request(f"ws://{authority}/", authority), 504)


# A name the resolver refuses before asking any DNS server (a label may not start with "-",
# RFC 1123 2.1; glibc's res_hnok): the proxy's lookup fails without a packet leaving.
UNRESOLVABLE = "-nonexistent.invalid"


async def case_dns_failure(port: int, up: FaultUpstream) -> None:
    authority = UNRESOLVABLE
    await expect_status(port, wsraw.upgrade_request(f"ws://{authority}/", authority), 502)


async def case_client_truncated_handshake(port: int, up: FaultUpstream) -> None:
    authority = f"{HOST}:{up.port}"
    data = wsraw.upgrade_request(f"ws://{authority}/echo/x", authority)
    _, writer = await asyncio.open_connection(HOST, port)
    writer.write(data[: len(data) // 2])
    await writer.drain()
    if random.random() < 0.5:
        reset(writer)
    else:
        await finish(writer)


async def case_client_garbage(port: int, up: FaultUpstream) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"\x00\xffGARBAGE " + os.urandom(200) + b"\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), TIMEOUT)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    await finish(writer)


CASES: dict[str, Callable[[int, FaultUpstream], Awaitable[None]]] = {
    name.removeprefix("case_"): value
    for name, value in dict(globals()).items()
    if name.startswith("case_")
}


# -- one at a time, against a real proxy process ----------------------------------------------


@pytest.fixture(scope="module")
def _faults_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """One proxy with default options for this module's single cases (stopped with the
    module, so that its end is checked like every other proxy's)."""
    tmp = tmp_path_factory.mktemp("faults-proxy")
    process = launch_sync([], tmp / "confdir", tmp)
    yield process
    problems = process.problems(process.stop_sync())
    assert not problems, "\n\n".join(problems)


@pytest.fixture
async def proxy(_faults_proxy: ProxyProcess) -> AsyncIterator[ProxyView]:
    view = ProxyView(_faults_proxy)
    yield view
    await view.finish()


@pytest.mark.parametrize("name", [n for n in CASES if n not in ("upstream_silent", "dns_failure")])
async def test_fault(name: str, proxy: Proxy, upstream: FaultUpstream) -> None:
    await CASES[name](proxy.port, upstream)


async def test_upstream_that_never_answers_is_504(
    start_proxy: StartProxy, upstream: FaultUpstream
) -> None:
    proxy = await start_proxy("--handshake-timeout", "1")
    started = time.monotonic()
    await case_upstream_silent(proxy.port, upstream)
    assert 0.9 <= time.monotonic() - started < 3
    await proxy.wait_log(lambda text: "did not answer the upgrade in time" in text)


async def test_dns_failure_is_502_with_the_reason(proxy: Proxy, upstream: FaultUpstream) -> None:
    await case_dns_failure(proxy.port, upstream)
    log = await proxy.wait_log(lambda text: f"cannot connect to {UNRESOLVABLE}:80" in text)
    assert "(502)" in log


# -- a thousand of them, for leaks -----------------------------------------------------------

LEAK_CASES = 1000
# How often each case comes up: timeouts are rare (they take a while, one at a time).
WEIGHTS = {name: 10 for name in CASES} | {"upstream_silent": 1, "dns_failure": 1}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Problems(logging.Handler):
    """Records every log record that is an error or carries a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


async def settle(baseline_tasks: int, baseline_fds: int, timeout: float) -> tuple[int, int]:
    """Tasks and descriptors above the baseline, once there are none (or after ``timeout``
    seconds: the caller's asserts then say how many are left)."""
    counts = (0, 0)

    def settled() -> bool:
        nonlocal counts
        gc.collect()
        counts = (len(asyncio.all_tasks()) - baseline_tasks, open_fds() - baseline_fds)
        return counts[0] <= 0 and counts[1] <= 0

    with contextlib.suppress(AssertionError):
        await wait_until(settled, timeout)
    return counts


async def steady_counts(looks: int = 5, timeout: float = 15) -> tuple[int, int]:
    """The numbers of asyncio tasks and open descriptors once ``looks`` looks in a row
    (``POLL`` apart) found the same."""
    seen: list[tuple[int, int]] = []

    def steady() -> bool:
        gc.collect()
        seen.append((len(asyncio.all_tasks()), open_fds()))
        return len(seen) >= looks and len(set(seen[-looks:])) == 1

    await wait_until(steady, timeout, "task and descriptor counts kept changing")
    return seen[-1]


async def test_a_thousand_faults_leak_nothing(tmp_path: Path, upstream: FaultUpstream) -> None:
    seed = int(os.environ.get("WSPROXY_FUZZ_SEED", "0")) or random.randrange(1 << 32)
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    problems = Problems()
    wsproxy_log = logging.getLogger("wsproxy")
    wsproxy_log.addHandler(problems)
    try:
        async with running_proxy(
            tmp_path,
            verbosity=0,
            handshake_timeout=0.5,
            close_timeout=0.5,
            connect_timeout=2,
            max_connections_per_client=100_000,
        ) as server:
            names = list(WEIGHTS)
            weights = [WEIGHTS[n] for n in names]

            async def run(cases: list[str]) -> list[str]:
                failures: list[str] = []
                gate = asyncio.Semaphore(25)

                async def one(name: str) -> None:
                    async with gate:
                        try:
                            await CASES[name](server.port, upstream)
                        except BaseException as error:
                            failures.append(f"{name}: {error!r}")

                await asyncio.gather(*(one(name) for name in cases))
                return failures

            # Warm up (lazily created things: the resolver's threads, caches), then count.
            assert await run(names * 2) == []
            # The baseline once the warm-up is over: no connection left on either side, and
            # the task and descriptor counts steady over several looks.
            await wait_until(
                lambda: not (server.sessions or server._handlers or upstream.tasks), 15
            )
            baseline_tasks, baseline_fds = await steady_counts()

            started = time.monotonic()
            cases = rng.choices(names, weights, k=LEAK_CASES)
            failures = await run(cases)
            elapsed = time.monotonic() - started
            assert not failures, f"seed {seed}: {len(failures)} failed, e.g. {failures[:5]}"
            tasks, fds = await settle(baseline_tasks, baseline_fds, 15)
            assert tasks <= 0, f"{tasks} more asyncio tasks than before: {asyncio.all_tasks()}"
            assert fds <= 3, f"{fds} more open file descriptors than before"
            assert not server.sessions and len(server._handlers) == 0
            assert server._per_client == {} and server.turns.active == 0
            assert elapsed < 60, elapsed
    finally:
        wsproxy_log.removeHandler(problems)
        loop.set_exception_handler(None)
    assert not loop_errors, loop_errors[:3]
    assert not problems.records, [problems.format(r) for r in problems.records[:3]]
