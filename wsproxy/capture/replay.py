"""``wsproxy replay FILE``: play one captured connection again, as its client or as its server.

Replay works with messages, not frames: the capture's frames are reassembled (``messages``),
and each message is sent whole by aiohttp's WebSocket client or server (not the proxy's core:
replay is a test of the peer, and aiohttp is an independent implementation).

Which content: by default what each peer actually *sent*: a message a plugin changed is
replayed (and expected) as it was before the change, a message a plugin dropped is still
replayed (the peer sent it), a message the proxy injected is left out (no peer sent it). With
``--as-forwarded``, what each peer *received* instead: changed content, no dropped messages,
injected messages included: the connection as the other peer saw it.

As a client (the default), it connects to the captured URL (or ``--url``), sends the client's
messages keeping their captured spacing (``--fast``: back to back), and compares what the
server answers with the captured server messages: count, opcode and content. Exit status 0 when
they are identical, 1 when they differ (the first difference is printed), 2 on errors.

As a server (``--serve``), it listens and plays the server's messages to each client that
connects: a server message that came after the client's k-th message in the capture is sent
after the client's k-th message arrives, with the captured delay after it (``--fast``: no
delay; ``--by-time``: ignore the client and send on the captured clock from the connection's
start). A frontend can then be tested against recorded traffic.

The chosen connection's messages are held in memory (the file is still read as a stream).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

import aiohttp
from aiohttp import web

from wsproxy.argtypes import parse_port, seconds, seconds_or_zero
from wsproxy.capture.har import CaptureFormatError
from wsproxy.capture.messages import TEXT, Message, Reassembler
from wsproxy.capture.reader import read_capture
from wsproxy.capture.records import Close, Connection, Frame, Http
from wsproxy.capture.show import no_connection
from wsproxy.exceptions import WsproxyError, os_error_text
from wsproxy.logformat import opcode_name, preview
from wsproxy.proxy.appserver import AppServer
from wsproxy.sansio.targets import host_port

TIMEOUT = 10.0  # seconds for the upgrade, each send and the close (--timeout), as the proxy's


class ReplayError(WsproxyError):
    """The replay could not be carried out: the peer did not answer in time."""


@dataclass
class Recorded:
    """One captured connection, as replay needs it."""

    conn: str
    url: str = ""
    subprotocol: str | None = None
    started: float | None = None
    messages: list[Message] = field(default_factory=list)
    close: Close | None = None


def load(path: str, conn: str | None = None) -> tuple[Recorded, list[str]]:
    """The connection ``conn`` (default: the first) and the ids of all connections seen."""
    chosen: Recorded | None = None
    seen: list[str] = []
    assembler = Reassembler()
    for record in read_capture(path):
        record_conn = getattr(record, "conn", None)
        if record_conn is None or isinstance(record, Http):
            continue  # plain HTTP exchanges are not replayed
        if record_conn not in seen:
            seen.append(record_conn)
        if chosen is None and (conn is None or record_conn == conn):
            chosen = Recorded(record_conn)
        if chosen is None or record_conn != chosen.conn:
            continue
        if isinstance(record, Connection):
            chosen.url, chosen.subprotocol, chosen.started = (
                record.url,
                record.subprotocol,
                record.time,
            )
        elif isinstance(record, Frame):
            message = assembler.feed(record)
            if message is not None:
                chosen.messages.append(message)
        elif isinstance(record, Close):
            chosen.close = record
    if chosen is None:
        if conn is None:
            raise CaptureFormatError(f"{path}: no WebSocket connection in this capture")
        raise CaptureFormatError(f"{path}: {no_connection([conn], seen)}")
    return chosen, seen


def content(message: Message, as_forwarded: bool) -> bytes | None:
    return message.delivered if as_forwarded else message.sent


def _describe(opcode: int, data: bytes) -> str:
    return f"{opcode_name(opcode)} len={len(data)} {preview(data, opcode)}"


async def _send(
    ws: aiohttp.ClientWebSocketResponse | web.WebSocketResponse, opcode: int, data: bytes
) -> None:
    if opcode == TEXT:
        await ws.send_str(data.decode("utf-8", "replace"))
    else:
        await ws.send_bytes(data)


# -- as a client -----------------------------------------------------------------------------


@dataclass
class ClientResult:
    sent: int
    expected: list[tuple[int, bytes]]
    got: list[tuple[int, bytes]]
    close_answered: bool = True  # the server answered the close frame (within --timeout)

    @property
    def identical(self) -> bool:
        return self.expected == self.got

    def report(self) -> str:
        lines = [
            f"sent {self.sent} client message(s); server answered {len(self.got)}, "
            f"the capture has {len(self.expected)}"
        ]
        if not self.close_answered:
            lines.append("the server did not answer the close frame (--timeout)")
        if self.identical:
            lines.append("identical: every server message matches the capture")
            return "\n".join(lines)
        index = next(
            (i for i, (a, b) in enumerate(zip(self.expected, self.got, strict=False)) if a != b),
            min(len(self.expected), len(self.got)),
        )
        differ = sum(1 for a, b in zip(self.expected, self.got, strict=False) if a != b)
        differ += abs(len(self.expected) - len(self.got))
        lines.append(f"DIFFERENT: {differ} server message(s) differ; first at index {index}")
        expected = (
            _describe(*self.expected[index]) if index < len(self.expected) else "(no message)"
        )
        got = _describe(*self.got[index]) if index < len(self.got) else "(no message)"
        lines.append(f"  expected: {expected}")
        lines.append(f"  got:      {got}")
        return "\n".join(lines)


async def replay_client(
    recorded: Recorded,
    url: str | None = None,
    *,
    fast: bool = False,
    as_forwarded: bool = False,
    wait: float = 5.0,
    timeout: float = TIMEOUT,
    headers: dict[str, str] | None = None,
) -> ClientResult:
    """Send the client's messages, collect the server's, compare.

    ``timeout`` bounds each step that waits on the server: the upgrade (a server that
    accepts TCP and never answers), each send (a server that stopped reading, once the
    socket buffers are full) and the close handshake (no answer: the socket is closed and
    the result stands). ``ReplayError`` says which step.
    """
    to_send = [
        (m.time, m.opcode, data)
        for m in recorded.messages
        if m.direction == "client" and (data := content(m, as_forwarded)) is not None
    ]
    expected = [
        (m.opcode, data)
        for m in recorded.messages
        if m.direction == "server" and (data := content(m, as_forwarded)) is not None
    ]
    target = url or recorded.url
    if not target:
        raise CaptureFormatError("the capture has no URL for this connection: give --url")
    protocols = (recorded.subprotocol,) if recorded.subprotocol else ()
    async with aiohttp.ClientSession() as session:
        try:
            async with asyncio.timeout(timeout):
                ws = await session.ws_connect(
                    target,
                    protocols=protocols,
                    max_msg_size=0,
                    headers=headers,
                    timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
                )
        except TimeoutError:
            raise ReplayError(
                f"{target}: no answer to the WebSocket upgrade within {timeout:g} s (--timeout)"
            ) from None
        async with ws:
            return await _converse(ws, target, to_send, expected, fast, wait, timeout)


async def _converse(
    ws: aiohttp.ClientWebSocketResponse,
    target: str,
    to_send: list[tuple[float, int, bytes]],
    expected: list[tuple[int, bytes]],
    fast: bool,
    wait: float,
    timeout: float,
) -> ClientResult:
    got: list[tuple[int, bytes]] = []
    enough = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def receive() -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                got.append((TEXT, msg.data.encode("utf-8")))
            elif msg.type == aiohttp.WSMsgType.BINARY:
                got.append((0x2, bytes(msg.data)))
            else:
                continue
            if len(got) >= len(expected):
                enough.set()
        enough.set()

    reader = asyncio.create_task(receive())
    try:
        start, base = loop.time(), to_send[0][0] if to_send else 0.0
        for index, (ts, opcode, data) in enumerate(to_send, 1):
            if not fast:
                delay = (ts - base) - (loop.time() - start)
                if delay > 0:
                    await asyncio.sleep(delay)
            try:
                async with asyncio.timeout(timeout):
                    await _send(ws, opcode, data)
            except TimeoutError:
                raise ReplayError(
                    f"{target}: the server stopped reading: client message {index} of "
                    f"{len(to_send)} not sent within {timeout:g} s (--timeout)"
                ) from None
        if len(got) < len(expected):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(enough.wait(), wait)
        await asyncio.sleep(0.05)  # a message more than the capture had shows as a difference
        await ws.close()  # waits at most ``timeout`` for the server's close frame
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    answered = ws.close_code != aiohttp.WSCloseCode.ABNORMAL_CLOSURE
    return ClientResult(len(to_send), expected, got, close_answered=answered)


# -- as a server -----------------------------------------------------------------------------


class ReplayServer:
    """Plays a connection's server side to every client that connects."""

    def __init__(
        self,
        recorded: Recorded,
        *,
        fast: bool = False,
        by_time: bool = False,
        as_forwarded: bool = False,
        out: TextIO | None = None,
    ) -> None:
        self.recorded = recorded
        self.fast = fast
        self.by_time = by_time
        self.out = out if out is not None else sys.stdout
        self.client_expected = 0
        # (k, delay after the client's k-th message, delay from the start, opcode, content)
        self.script: list[tuple[int, float, float, int, bytes]] = []
        self._build(as_forwarded)
        self.served = 0
        self.done = asyncio.Event()
        self._runner: AppServer | None = None

    def _build(self, as_forwarded: bool) -> None:
        messages = self.recorded.messages
        start = self.recorded.started
        if start is None:
            start = messages[0].started if messages else 0.0
        k, last_client = 0, start
        for m in messages:
            data = content(m, as_forwarded)
            if data is None:
                continue
            if m.direction == "client":
                k += 1
                last_client = m.time
            else:
                self.script.append(
                    (k, max(0.0, m.time - last_client), m.time - start, m.opcode, data)
                )
        self.client_expected = k

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = AppServer(app)
        return await self._runner.start(host, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.stop()

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        sub = self.recorded.subprotocol
        ws = web.WebSocketResponse(protocols=(sub,) if sub else (), max_msg_size=0)
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        start = loop.time()
        arrived = [start]  # arrived[k]: when the client's k-th message came (0: the open)
        changed = asyncio.Condition()
        finished = False

        async def receive() -> None:
            nonlocal finished
            async for msg in ws:
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    async with changed:
                        arrived.append(loop.time())
                        changed.notify_all()
            async with changed:
                finished = True
                changed.notify_all()

        reader = asyncio.create_task(receive())
        sent = 0
        try:
            for k, gap, from_start, opcode, data in self.script:
                if self.by_time:
                    due = start + from_start
                else:
                    async with changed:
                        await changed.wait_for(lambda k=k: len(arrived) > k or finished)  # type: ignore[misc]
                    if len(arrived) <= k:
                        break  # the client left before sending what this answer follows
                    due = arrived[k] + (0.0 if self.fast else gap)
                if not self.fast or self.by_time:
                    delay = due - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if ws.closed:
                    break
                await _send(ws, opcode, data)
                sent += 1
            close = self.recorded.close
            if close is not None and close.closed_by == "server" and not ws.closed:
                await ws.close(code=close.server.code or 1000, message=close.server.reason.encode())
            await reader
        finally:
            reader.cancel()
            self.served += 1
            got = len(arrived) - 1
            print(
                f"served {request.remote}: sent {sent} of {len(self.script)} server message(s); "
                f"received {got} client message(s), the capture has {self.client_expected}",
                file=self.out,
                flush=True,
            )
            self.done.set()
        return ws


# -- command line ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsproxy replay",
        description="Replay a captured WebSocket connection as its client (compare the "
        "server's answers) or, with --serve, as its server.",
    )
    add = parser.add_argument
    add(
        "file",
        help="a capture: wsproxy .jsonl, a HAR (wsproxy, Chrome, mitmproxy) or a .mitm flow file",
    )
    add("--conn", metavar="ID", help="the connection to replay (default: the first)")
    add("--url", help="connect here instead of the captured URL (ws:// or wss://)")
    add("--fast", action="store_true", help="no captured delays: send as fast as possible")
    add(
        "--as-forwarded",
        action="store_true",
        help="replay what each peer received (changed, not dropped, injected) instead of "
        "what each peer sent",
    )
    add(
        "--wait",
        type=seconds_or_zero,
        default=5.0,
        help="seconds to wait for the server's remaining answers after the last message (5)",
    )
    add(
        "--timeout",
        type=seconds,
        default=TIMEOUT,
        help="seconds for the server to answer the upgrade, take each message and answer "
        f"the close, else exit with an error ({TIMEOUT:g})",
    )
    add("--serve", action="store_true", help="act as the server: play the server's messages")
    add("--listen-host", default="127.0.0.1", help="with --serve: address (127.0.0.1)")
    add("--listen-port", type=parse_port, default=8765, help="with --serve: port (8765)")
    add(
        "--by-time",
        action="store_true",
        help="with --serve: send on the captured clock, not after the client's messages",
    )
    add("--once", action="store_true", help="with --serve: exit after one client")
    return parser


async def _serve(args: argparse.Namespace, recorded: Recorded) -> int:
    server = ReplayServer(
        recorded, fast=args.fast, by_time=args.by_time, as_forwarded=args.as_forwarded
    )
    try:
        port = await server.start(args.listen_host, args.listen_port)
    except OSError as error:
        where = host_port(args.listen_host, args.listen_port)
        raise ReplayError(f"cannot listen on {where}: {os_error_text(error)}") from None
    print(
        f"replaying connection {recorded.conn} ({len(server.script)} server message(s)) on "
        f"ws://{host_port(args.listen_host, port)}/ (Ctrl-C to stop)",
        flush=True,
    )
    try:
        while True:
            await server.done.wait()
            server.done.clear()
            if args.once:
                return 0
    finally:
        await server.stop()


def replay(argv: Sequence[str]) -> int:
    """Exit status: 0 identical, 1 different, 2 when the replay could not be made (a bad
    flag, an unreadable capture, a server that cannot be reached or does not answer)."""
    args = build_parser().parse_args(argv)
    target = args.url
    try:
        recorded, seen = load(args.file, args.conn)
        target = args.url or recorded.url
        if args.conn is None and len(seen) > 1:
            print(
                f"{len(seen)} connections in the capture ({', '.join(seen[:10])}"
                f"{', …' if len(seen) > 10 else ''}); replaying {recorded.conn} (--conn ID)",
                file=sys.stderr,
            )
        if args.serve:
            return asyncio.run(_serve(args, recorded))
        result = asyncio.run(
            replay_client(
                recorded,
                args.url,
                fast=args.fast,
                as_forwarded=args.as_forwarded,
                wait=args.wait,
                timeout=args.timeout,
            )
        )
    except KeyboardInterrupt:
        return 130
    except WsproxyError as error:  # the capture, or a server that does not answer
        print(f"wsproxy replay: {error}", file=sys.stderr)
        return 2
    except (aiohttp.ClientError, OSError) as error:
        print(f"wsproxy replay: {target}: {_client_error(error)}", file=sys.stderr)
        return 2
    print(result.report())
    return 0 if result.identical else 1


def _client_error(error: aiohttp.ClientError | OSError) -> str:
    """aiohttp's and the OS's errors as the end of one line."""
    if isinstance(error, aiohttp.InvalidURL):
        return "not a valid ws:// or wss:// URL"
    if isinstance(error, aiohttp.WSServerHandshakeError):
        return f"the server refused the WebSocket upgrade ({error.status} {error.message})"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect: {os_error_text(error.os_error)}"
    if isinstance(error, OSError):
        return os_error_text(error)
    return str(error) or type(error).__name__
