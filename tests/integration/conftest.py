"""Fixtures for integration tests: a real wsproxy process and real peers on 127.0.0.1.

* ``start_proxy(*args)`` starts ``python -m wsproxy`` on a free port (its own process group,
  stderr captured to a file), waits until it accepts connections, and on teardown stops it
  with SIGTERM (SIGKILL if it hangs) and checks it never printed a traceback.
* ``proxy`` is a regular-mode proxy with default options.
* ``ws_echo`` is a ``websockets`` server in the test's event loop; ``aiohttp_server`` an aiohttp
  application with a WebSocket echo route and plain HTTP routes; ``raw_server(handler)`` a
  bare asyncio server for peers that must misbehave; ``raw_client`` opens tracked sockets.
* Every server counts its TCP connections, so tests can assert the upstream was never
  contacted.

A session fixture checks at the end that every started proxy process is dead.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.helpers import (
    HOST,
    ProcessExited,
    free_port,
    kill_group,
    proxy_free_env,
    stop_group,
    stop_group_sync,
    wait_accepting,
    wait_accepting_sync,
    wsproxy_command,
)
from tests.integration.wsraw import RawConnection

READY_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0

_STARTED: list[ProxyProcess] = []


# -- the proxy process -----------------------------------------------------------------------


class ProxyProcess:
    """One ``python -m wsproxy`` subprocess listening on ``port``."""

    def __init__(self, args: list[str], confdir: Path, log_dir: Path) -> None:
        self.confdir = confdir
        self.port = free_port()
        # "{port}" in an argument stands for the proxy's own port (a proxy pointed at itself).
        self.args = [arg.replace("{port}", str(self.port)) for arg in args]
        n = len(_STARTED)
        self.stderr_path = log_dir / f"proxy-{n}-stderr.log"
        self.stdout_path = log_dir / f"proxy-{n}-stdout.log"
        self.command = wsproxy_command(self.port, confdir, "-v", *self.args)
        env = proxy_free_env()
        with (
            open(self.stderr_path, "wb") as err,
            open(self.stdout_path, "wb") as out,
        ):
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=True,  # its own process group
            )
        self.killed = False
        self.failed_start = False
        _STARTED.append(self)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def stderr(self) -> str:
        return self.stderr_path.read_text("utf-8", "replace")

    def describe(self) -> str:
        return (
            f"proxy {' '.join(self.command[1:])} (pid {self.proc.pid}, "
            f"returncode {self.proc.poll()})\n--- stderr ---\n{self.stderr()}"
        )

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll until the port accepts a connection; fail with the proxy's stderr if not."""
        try:
            await wait_accepting(self.port, self.proc, timeout)
        except (ProcessExited, TimeoutError) as e:
            raise self._start_error(e, timeout) from None

    def wait_ready_sync(self, timeout: float = READY_TIMEOUT) -> None:
        """``wait_ready`` for fixtures outside an event loop."""
        try:
            wait_accepting_sync(self.port, self.proc, timeout)
        except (ProcessExited, TimeoutError) as e:
            raise self._start_error(e, timeout) from None

    def _start_error(self, e: Exception, timeout: float) -> ProxyStartError:
        if isinstance(e, ProcessExited):
            return ProxyStartError(f"the proxy exited before listening\n{self.describe()}")
        return ProxyStartError(f"the proxy did not listen within {timeout} s\n{self.describe()}")

    def stop_sync(self, timeout: float = STOP_TIMEOUT) -> int:
        self.killed |= stop_group_sync(self.proc, timeout)
        return self.proc.wait()

    def problems(self, code: int | None, text: str | None = None) -> list[str]:
        """What is wrong with how this proxy ended (or with ``text``, a part of its log)."""
        text = self.stderr() if text is None else text
        problems = []
        if "Traceback" in text:
            problems.append(f"the proxy printed a traceback\n{self.describe()}")
        if self.killed:
            problems.append(f"the proxy ignored SIGTERM and was killed\n{self.describe()}")
        elif code is not None and code != 0 and not self.failed_start:
            problems.append(f"the proxy exited with {code}\n{self.describe()}")
        return problems

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def wait_log(self, predicate: Callable[[str], bool], timeout: float = 10) -> str:
        """The stderr once ``predicate`` holds on it; fails with the log if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.stderr()
            if predicate(text):
                return text
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"log condition never held\n{self.describe()}")
            await asyncio.sleep(0.02)

    async def wait_exit(self, timeout: float) -> int | None:
        """The return code, or None if still running after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.proc.poll()

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait, SIGKILL the whole process group if it hangs."""
        self.killed |= await stop_group(self.proc, timeout)
        return self.proc.wait()

    def kill(self) -> None:
        self.killed |= kill_group(self.proc)


class ProxyStartError(AssertionError):
    pass


StartProxy = Callable[..., Awaitable[ProxyProcess]]


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    """At the end of the session every proxy process started must be dead."""
    yield
    alive = [p for p in _STARTED if p.proc.poll() is None]
    for p in alive:
        p.kill()
    assert not alive, "proxy processes still running at the end: " + ", ".join(
        str(p.proc.pid) for p in alive
    )


@pytest.fixture
async def start_proxy(tmp_path: Path) -> AsyncIterator[StartProxy]:
    """``await start_proxy("--mode", "reverse:ws://...", ...)``: a running proxy process.

    Teardown stops every proxy the test started and fails the test if one needed SIGKILL,
    exited with a non-zero code, or printed a traceback.
    """
    started: list[ProxyProcess] = []

    async def start(*args: str, confdir: Path | None = None) -> ProxyProcess:
        for _attempt in range(3):
            proc = ProxyProcess(list(args), confdir or tmp_path / "confdir", tmp_path)
            started.append(proc)
            try:
                await proc.wait_ready()
            except ProxyStartError:
                proc.failed_start = True
                if proc.proc.poll() is not None and "in use" in proc.stderr():
                    continue  # the free port was taken meanwhile: try another
                raise
            return proc
        raise ProxyStartError(f"no free port after 3 attempts\n{started[-1].describe()}")

    try:
        yield start
    finally:
        problems = []
        for proc in started:
            problems += proc.problems(await proc.stop())
        assert not problems, "\n\n".join(problems)


class ProxyView:
    """The shared default proxy as one test sees it: ``stderr()`` is this test's part only."""

    def __init__(self, process: ProxyProcess) -> None:
        self.process = process
        self.port = process.port
        self.url = process.url
        self.offset = process.stderr_path.stat().st_size

    def stderr(self) -> str:
        with open(self.process.stderr_path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode("utf-8", "replace")

    def describe(self) -> str:
        return f"{self.process.describe()}\n--- this test's part ---\n{self.stderr()}"


@pytest.fixture(scope="session")
def _shared_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """One regular-mode proxy with default options, shared by the tests that need no flags."""
    tmp = tmp_path_factory.mktemp("shared-proxy")
    proc = None
    for _attempt in range(3):
        proc = ProxyProcess([], tmp / "confdir", tmp)
        try:
            proc.wait_ready_sync()
            break
        except ProxyStartError:
            if proc.proc.poll() is None or "in use" not in proc.stderr():
                proc.stop_sync()
                raise
    assert proc is not None and proc.proc.poll() is None, proc and proc.describe()
    yield proc
    problems = proc.problems(proc.stop_sync())
    assert not problems, "\n\n".join(problems)


@pytest.fixture
async def proxy(_shared_proxy: ProxyProcess) -> AsyncIterator[ProxyView]:
    """The shared default proxy; teardown fails the test if the proxy printed a traceback
    during it, or died."""
    view = ProxyView(_shared_proxy)
    yield view
    await asyncio.sleep(0.05)  # let the proxy log the end of this test's connections
    text = view.stderr()
    assert "Traceback" not in text, f"the proxy printed a traceback\n{view.describe()}"
    assert _shared_proxy.returncode is None, f"the shared proxy died\n{view.describe()}"


# -- upstream servers --------------------------------------------------------------------------


@dataclass
class Closed:
    """How a connection ended, as one server saw it."""

    path: str
    code: int | None
    reason: str


@dataclass
class WsEcho:
    """A ``websockets`` server: echoes every message; some paths behave differently.

    * ``/bye``: closes at once with 4000 "bye".
    * ``/send?n=N``: sends one binary message of N bytes, then echoes.
    * anything else: echoes.
    """

    port: int = 0
    connections: int = 0
    requests: list[Any] = field(default_factory=list)
    closes: asyncio.Queue[Closed] = field(default_factory=asyncio.Queue)

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    async def next_close(self, timeout: float = 10) -> Closed:
        return await asyncio.wait_for(self.closes.get(), timeout)


@pytest.fixture
async def ws_echo() -> AsyncIterator[WsEcho]:
    echo = WsEcho()

    class Counting(ServerConnection):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            echo.connections += 1
            super().connection_made(transport)

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        path = ws.request.path
        echo.requests.append(ws.request)
        try:
            if path == "/bye":
                await ws.close(4000, "bye")
            elif path.startswith("/send"):
                n = int(path.partition("n=")[2])
                await ws.send(os.urandom(n))
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            echo.closes.put_nowait(Closed(path, ws.close_code, ws.close_reason or ""))

    async with serve(
        handler,
        HOST,
        0,
        max_size=None,
        ping_interval=None,
        create_connection=Counting,
    ) as server:
        echo.port = server.sockets[0].getsockname()[1]
        yield echo


@dataclass
class AioServer:
    """An aiohttp application: WebSocket echo and plain HTTP routes (see the fixture)."""

    port: int = 0
    connections: int = 0
    requests: list[web.Request] = field(default_factory=list)
    closes: asyncio.Queue[Closed] = field(default_factory=asyncio.Queue)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    async def next_close(self, timeout: float = 10) -> Closed:
        return await asyncio.wait_for(self.closes.get(), timeout)


@pytest.fixture
async def aiohttp_server() -> AsyncIterator[AioServer]:
    """Routes:

    * ``/ws``: WebSocket echo (compression allowed); ``/ws/bye`` closes with 4000 "bye".
    * ``/forbidden`` 403, ``/missing`` 404, each with a body and an ``X-Why`` header.
    * ``GET /hello``: "hello world"; ``POST /upload``: the body's length and SHA-256
      (streamed), and whether it came chunked; ``GET /chunked``: a chunked response.
    """
    state = AioServer()

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, compress=True, autoping=True)
        await ws.prepare(request)
        if request.path == "/ws/bye":
            await ws.close(code=4000, message=b"bye")
        else:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await ws.send_str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
        state.closes.put_nowait(Closed(request.path, ws.close_code, ""))
        return ws

    async def refuse(request: web.Request) -> web.Response:
        status = 403 if request.path == "/forbidden" else 404
        return web.Response(status=status, text=f"refused: {status}", headers={"X-Why": "test"})

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello world", headers={"X-Test": "yes"})

    async def upload(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        return web.json_response(
            {
                "size": size,
                "sha256": digest.hexdigest(),
                "transfer_encoding": request.headers.get("Transfer-Encoding"),
                "content_length": request.headers.get("Content-Length"),
            }
        )

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(5):
            await resp.write(f"piece {i};".encode())
            await asyncio.sleep(0.01)
        await resp.write_eof()
        return resp

    @web.middleware
    async def record(request: web.Request, handler: Any) -> Any:
        state.requests.append(request)
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/ws/bye", ws_handler)
    app.router.add_get("/forbidden", refuse)
    app.router.add_get("/missing", refuse)
    app.router.add_get("/hello", hello)
    app.router.add_post("/upload", upload)
    app.router.add_get("/chunked", chunked)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    # Listen like web.TCPSite does, through a protocol factory that counts TCP connections.
    handler_factory = runner.server
    assert handler_factory is not None

    def counting_factory() -> asyncio.BaseProtocol:
        state.connections += 1
        return handler_factory()

    server = await asyncio.get_running_loop().create_server(counting_factory, HOST, 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await runner.cleanup()
        await server.wait_closed()


RawHandler = Callable[[RawConnection], Awaitable[None]]


@dataclass
class RawServer:
    """A bare asyncio server: ``handler`` gets every connection; counts and keeps them."""

    port: int
    server: asyncio.Server
    connections: list[RawConnection] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    errors: list[BaseException] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}"


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[RawHandler], Awaitable[RawServer]]]:
    """``await raw_server(handler)``: a server whose ``handler`` writes whatever bytes it likes.

    Exceptions in handlers fail the test at teardown (except connection resets, which are
    what these peers are about).
    """
    servers: list[RawServer] = []

    async def start(handler: RawHandler) -> RawServer:
        state: RawServer

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = RawConnection(reader, writer)
            state.connections.append(conn)
            task = asyncio.current_task()
            assert task is not None
            state.tasks.add(task)
            try:
                await handler(conn)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            except asyncio.CancelledError:
                raise
            except BaseException as error:
                state.errors.append(error)
            finally:
                state.tasks.discard(task)
                await conn.close()

        server = await asyncio.start_server(on_connect, HOST, 0)
        state = RawServer(server.sockets[0].getsockname()[1], server)
        servers.append(state)
        return state

    try:
        yield start
    finally:
        for state in servers:
            state.server.close()
            for task in list(state.tasks):
                task.cancel()
            if state.tasks:
                await asyncio.wait(list(state.tasks), timeout=5)
            for conn in state.connections:
                await conn.close()
            await state.server.wait_closed()
        errors = [e for s in servers for e in s.errors]
        if errors:
            raise errors[0]


@pytest.fixture
async def raw_client() -> AsyncIterator[Callable[[int], Awaitable[RawConnection]]]:
    """``await raw_client(port)``: a plain TCP connection, closed at teardown."""
    conns: list[RawConnection] = []

    async def open_(port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection(HOST, port)
        conn = RawConnection(reader, writer)
        conns.append(conn)
        return conn

    try:
        yield open_
    finally:
        for conn in conns:
            await conn.close()


RawClient = Callable[[int], Awaitable[RawConnection]]
RawServerFactory = Callable[[RawHandler], Awaitable[RawServer]]
Proxy = ProxyProcess | ProxyView
