"""Every plugin hook and action through a real proxy, real upstreams and real clients.

The proxy is an in-process ``ProxyServer`` in the test's loop (reverse mode unless the test
says otherwise), the upstreams are ``websockets`` servers (or a raw one that records frames
exactly), the clients are ``websockets`` and ``aiohttp``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from tests.harness import WsUpstream, echo, running_proxy, sink, wait_until, ws_upstream
from tests.integration.wsraw import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT
from tests.plugins.hooks_helpers import (
    raw_upstream,
    wordy_bytes,
    wordy_texts,
    ws_url,
)
from wsproxy.model import Flow, FrameEvent, Message
from wsproxy.sansio.frames import Opcode

TIMEOUT = 10.0


async def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), timeout)


async def wait(event: asyncio.Event, timeout: float = TIMEOUT) -> None:
    await asyncio.wait_for(event.wait(), timeout)


class Closed:
    """Records the flow in ``closed``; ``done`` is set then."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.flows: list[Flow] = []
        self.opened_flows: list[Flow] = []

    def opened(self, flow: Flow) -> None:
        self.opened_flows.append(flow)

    async def closed(self, flow: Flow) -> None:
        self.flows.append(flow)
        self.done.set()


# ---------------------------------------------------------------------------------------------
# handshake hooks
# ---------------------------------------------------------------------------------------------


class RewriteRequest:
    def __init__(self) -> None:
        self.seen: list[tuple[str, list[str]]] = []

    def handshake_request(self, flow: Flow) -> None:
        self.seen.append((flow.request.path, flow.request.subprotocols))
        flow.request.path = "/rewritten?by=plugin"
        flow.request.headers.set("X-Plugin", "was-here")
        flow.request.headers.set("User-Agent", "wsproxy-test-plugin")
        flow.request.subprotocols = ["two"]


async def close_received(ws: Any) -> tuple[int, str]:
    """Wait for the proxy to close ``ws``: the code and reason of the close frame it sent."""
    with pytest.raises(ConnectionClosed) as info:
        await recv(ws)
    assert info.value.rcvd is not None, "closed without a close frame"
    return info.value.rcvd.code, info.value.rcvd.reason


async def test_handshake_request_changes_path_header_and_subprotocols(tmp_path: Path) -> None:
    plugin = RewriteRequest()
    async with (
        ws_upstream(subprotocols=["one", "two"]) as up,
        running_proxy(tmp_path, [plugin], up.port) as proxy,
        connect(ws_url(proxy.port, "/original"), subprotocols=["one", "two"]) as ws,  # type: ignore[list-item]
    ):
        await ws.send("hi")
        assert await recv(ws) == "hi"
        assert ws.subprotocol == "two"
    assert plugin.seen == [("/original", ["one", "two"])]
    assert up.paths == ["/rewritten?by=plugin"]
    assert up.headers[0]["x-plugin"] == "was-here"
    assert up.headers[0]["user-agent"] == "wsproxy-test-plugin"
    assert up.headers[0]["sec-websocket-protocol"] == "two"
    assert up.subprotocols == ["two"]


class RefuseRequest:
    async def handshake_request(self, flow: Flow) -> None:
        await asyncio.sleep(0)
        if flow.request.path.startswith("/forbidden"):
            flow.refuse(403, "not here")


async def test_handshake_request_refuse_403(tmp_path: Path) -> None:
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [RefuseRequest()], up.port) as proxy,
    ):
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(proxy.port, "/forbidden")):
                pass
        assert info.value.response.status_code == 403
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info2:
                await session.ws_connect(ws_url(proxy.port, "/forbidden/2"))
            assert info2.value.status == 403
        assert up.handshakes == 0
        # A path the plugin lets through still works on the same proxy.
        async with connect(ws_url(proxy.port, "/fine")) as ws:
            await ws.send("ok")
            assert await recv(ws) == "ok"
        assert up.handshakes == 1


class ResponseHeader:
    def handshake_response(self, flow: Flow) -> None:
        assert flow.response is not None
        assert flow.response.status == 101
        flow.response.headers.set("X-From-Plugin", "yes")


class RefuseResponse:
    async def handshake_response(self, flow: Flow) -> None:
        flow.refuse(502, "upstream not trusted")


async def test_handshake_response_changes_header(tmp_path: Path) -> None:
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [ResponseHeader()], up.port) as proxy,
        connect(ws_url(proxy.port)) as ws,
    ):
        assert ws.response is not None
        assert ws.response.headers["X-From-Plugin"] == "yes"
        await ws.send("x")
        assert await recv(ws) == "x"


async def test_handshake_response_refuse_502(tmp_path: Path) -> None:
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [RefuseResponse()], up.port) as proxy,
    ):
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(proxy.port)):
                pass
        assert info.value.response.status_code == 502
        assert up.handshakes == 1
        await wait(up.closed)


# ---------------------------------------------------------------------------------------------
# opened / closed
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hooked", [False, True], ids=["unhooked", "frame+message-hooks"])
async def test_opened_and_closed_client_closes(tmp_path: Path, hooked: bool) -> None:
    plugin = Closed()
    plugins: list[object] = [FrameRecorder(), Reader(), plugin] if hooked else [plugin]
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, plugins, up.port) as proxy,
    ):
        async with connect(ws_url(proxy.port), compression=None) as ws:
            for text in ("a", "bb", "ccc"):
                await ws.send(text)
                assert await recv(ws) == text
            assert len(plugin.opened_flows) == 1
            assert plugin.flows == []
        await wait(plugin.done)
    flow = plugin.flows[0]
    assert flow is plugin.opened_flows[0]
    assert flow.client_close.code == 1000
    assert flow.client_close.received_close
    assert flow.server_close.code == 1000
    assert flow.closed_by == "client"
    assert flow.ended is not None
    assert flow.client_counts.messages == 3
    assert flow.server_counts.messages == 3
    assert flow.client_counts.frames == 4  # three messages and the close
    assert flow.server_counts.frames == 4
    # masked client frames: 2 + 4 + payload; the close carries the code (2 bytes)
    assert flow.client_counts.bytes == (6 + 1) + (6 + 2) + (6 + 3) + (6 + 2)
    assert flow.server_counts.bytes == (2 + 1) + (2 + 2) + (2 + 3) + (2 + 2)


async def bye_after_one(ws: ServerConnection, up: WsUpstream) -> None:
    message = await ws.recv()
    up.received.append(message)
    await ws.send(message)
    await ws.close(4001, "bye")


async def echo_until_bye(ws: ServerConnection, up: WsUpstream) -> None:
    async for message in ws:
        up.received.append(message)
        await ws.send(message)
        if message == "bye":
            await ws.close(4001, "bye")


async def test_closed_server_closes_4001(tmp_path: Path) -> None:
    plugin = Closed()
    async with (
        ws_upstream(bye_after_one) as up,
        running_proxy(tmp_path, [plugin], up.port) as proxy,
    ):
        async with connect(ws_url(proxy.port)) as ws:
            await ws.send("hello")
            assert await recv(ws) == "hello"
            assert await close_received(ws) == (4001, "bye")
        await wait(plugin.done)
    flow = plugin.flows[0]
    assert (flow.server_close.code, flow.server_close.reason) == (4001, "bye")
    assert flow.client_close.code == 4001  # the client echoed the code
    assert flow.closed_by == "server"
    assert flow.client_counts.messages == 1
    assert flow.server_counts.messages == 1


# ---------------------------------------------------------------------------------------------
# message hook
# ---------------------------------------------------------------------------------------------


class Reader:
    """Records what each message looked like to the hook."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool, str | bytes, list[int]]] = []

    def message(self, flow: Flow, message: Message) -> None:
        value: str | bytes = message.text if message.is_text else message.content
        self.seen.append((message.direction, message.is_text, value, list(message.fragment_sizes)))


async def test_message_reads_text_and_binary(tmp_path: Path) -> None:
    plugin = Reader()
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [plugin], up.port) as proxy,
    ):
        async with connect(ws_url(proxy.port)) as ws:
            await ws.send("héllo")
            assert await recv(ws) == "héllo"
            await ws.send(b"\x00\xffbin")
            assert await recv(ws) == b"\x00\xffbin"
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(ws_url(proxy.port)) as aws,
        ):
            await aws.send_str("from aiohttp")
            assert (await aws.receive(TIMEOUT)).data == "from aiohttp"
            await aws.send_bytes(b"\x01\x02")
            assert (await aws.receive(TIMEOUT)).data == b"\x01\x02"
    assert [(d, t, v) for d, t, v, _ in plugin.seen] == [
        ("client", True, "héllo"),
        ("server", True, "héllo"),
        ("client", False, b"\x00\xffbin"),
        ("server", False, b"\x00\xffbin"),
        ("client", True, "from aiohttp"),
        ("server", True, "from aiohttp"),
        ("client", False, b"\x01\x02"),
        ("server", False, b"\x01\x02"),
    ]


class Replace:
    """Client messages: "up:" upper-cased; "bin:" turned binary; bytes reversed."""

    async def message(self, flow: Flow, message: Message) -> None:
        await asyncio.sleep(0)
        if not message.from_client:
            return
        if message.is_text and message.text.startswith("up:"):
            message.text = message.text.upper() + " (changed)"
        elif message.is_text and message.text.startswith("bin:"):
            message.opcode = Opcode.BINARY
            message.content = message.content[4:]
        elif not message.is_text:
            message.content = message.content[::-1]


async def test_message_replace_content_and_opcode(tmp_path: Path) -> None:
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [Replace()], up.port) as proxy,
        connect(ws_url(proxy.port)) as ws,
    ):
        await ws.send("up:abc")
        assert await recv(ws) == "UP:ABC (changed)"  # still text
        await ws.send("bin:xyz")
        assert await recv(ws) == b"xyz"  # now binary
        await ws.send(b"123")
        assert await recv(ws) == b"321"
        await ws.send("untouched")
        assert await recv(ws) == "untouched"
    assert up.received == ["UP:ABC (changed)", b"xyz", b"321", "untouched"]


class Dropper:
    name = "the-dropper"

    def __init__(self) -> None:
        self.dropped_by: list[str | None] = []

    def message(self, flow: Flow, message: Message) -> None:
        if message.from_client and message.content == b"drop me":
            message.drop()
            self.dropped_by.append(message.dropped_by)


async def test_message_drop(tmp_path: Path) -> None:
    plugin = Dropper()
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [plugin], up.port) as proxy,
        connect(ws_url(proxy.port)) as ws,
    ):
        await ws.send("drop me")
        await ws.send("next")
        assert await recv(ws) == "next"
        await ws.send(b"drop me")
        await ws.send("last")
        assert await recv(ws) == "last"
    assert up.received == ["next", "last"]
    assert plugin.dropped_by == ["the-dropper", "the-dropper"]


class Answer:
    """Answers "ping?" itself instead of asking the upstream."""

    def message(self, flow: Flow, message: Message) -> None:
        if message.from_client and message.text == "ping?":
            message.drop()
            assert flow.inject("pong! (from the proxy)", to_client=True)


async def test_message_answer_instead_of_forwarding(tmp_path: Path) -> None:
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [Answer()], up.port) as proxy,
        connect(ws_url(proxy.port)) as ws,
    ):
        await ws.send("ping?")
        assert await recv(ws) == "pong! (from the proxy)"
        await ws.send("real")
        assert await recv(ws) == "real"
    assert up.received == ["real"]


class Upper:
    def message(self, flow: Flow, message: Message) -> None:
        if message.from_client and message.text.startswith("change"):
            message.text = message.text.upper()


async def test_fragmented_message_reassembled_and_kept_fragmented(tmp_path: Path) -> None:
    reader = Reader()
    async with (
        raw_upstream() as up,
        running_proxy(tmp_path, [reader, Upper()], up.port) as proxy,
        connect(ws_url(proxy.port), compression=None) as ws,
    ):
        await ws.send(["keep", "-these-", "fragments"])
        assert await recv(ws) == "keep-these-fragments"
        await ws.send(["change", "-equal-", "length"])
        assert await recv(ws) == "CHANGE-EQUAL-LENGTH"
        await ws.send([b"\x00" * 100, b"\x01" * 70000, b"\x02"])
        assert await recv(ws) == b"\x00" * 100 + b"\x01" * 70000 + b"\x02"
    # websockets ends a fragmented message with an empty final frame
    assert reader.seen[0] == ("client", True, "keep-these-fragments", [4, 7, 9, 0])
    assert reader.seen[1] == ("server", True, "keep-these-fragments", [4, 7, 9, 0])
    assert reader.seen[2] == ("client", True, "change-equal-length", [6, 7, 6, 0])
    assert reader.seen[4][3] == [100, 70000, 1, 0]
    assert up.data_frames() == [
        (False, OP_TEXT, b"keep"),
        (False, OP_CONT, b"-these-"),
        (False, OP_CONT, b"fragments"),
        (True, OP_CONT, b""),
        (False, OP_TEXT, b"CHANGE"),
        (False, OP_CONT, b"-EQUAL-"),
        (False, OP_CONT, b"LENGTH"),
        (True, OP_CONT, b""),
        (False, OP_BINARY, b"\x00" * 100),
        (False, OP_CONT, b"\x01" * 70000),
        (False, OP_CONT, b"\x02"),
        (True, OP_CONT, b""),
    ]


async def streaming_recorder(ws: ServerConnection, up: WsUpstream) -> None:
    """Records each message as the list of its fragments (websockets' recv_streaming)."""
    while True:
        fragments = [f async for f in ws.recv_streaming()]
        up.received.append(repr(fragments))
        await ws.send("".join(fragments) if isinstance(fragments[0], str) else b"".join(fragments))


async def test_fragment_boundaries_seen_by_websockets_upstream(tmp_path: Path) -> None:
    async with (
        ws_upstream(streaming_recorder) as up,
        running_proxy(tmp_path, [Reader(), Upper()], up.port) as proxy,
        connect(ws_url(proxy.port)) as ws,  # compressed: fragments recompressed or kept
    ):
        await ws.send(["ab", "cde", "f"])
        assert await recv(ws) == "abcdef"
        await ws.send(["chan", "ged"])
        assert await recv(ws) == "CHANGED"
    assert up.received == [repr(["ab", "cde", "f", ""]), repr(["CHAN", "GED", ""])]


# ---------------------------------------------------------------------------------------------
# frame hook
# ---------------------------------------------------------------------------------------------


class FrameRecorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, bool, bytes]] = []

    async def frame(self, flow: Flow, frame: FrameEvent) -> None:
        self.seen.append((frame.direction, frame.opcode, frame.fin, frame.payload))


async def test_frame_sees_every_frame_in_order(tmp_path: Path) -> None:
    plugin = FrameRecorder()
    messages = Reader()
    closed = Closed()  # last in the chain: its hook runs after every frame went through
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [plugin, messages, closed], up.port) as proxy,
    ):
        async with connect(ws_url(proxy.port), compression=None) as ws:
            await ws.send(["ab", "cd"])
            assert await recv(ws) == "abcd"
            pong = await ws.ping(b"p1")
            await asyncio.wait_for(pong, TIMEOUT)
            await ws.send(b"\x07")
            assert await recv(ws) == b"\x07"
        await wait(up.closed)
        await wait(closed.done)
    client = [s[1:] for s in plugin.seen if s[0] == "client"]
    server = [s[1:] for s in plugin.seen if s[0] == "server"]
    assert client == [
        (OP_TEXT, False, b"ab"),
        (OP_CONT, False, b"cd"),
        (OP_CONT, True, b""),
        (OP_PING, True, b"p1"),
        (OP_BINARY, True, b"\x07"),
        (OP_CLOSE, True, b"\x03\xe8"),
    ]
    assert server == [
        (OP_TEXT, True, b"abcd"),
        (OP_PONG, True, b"p1"),
        (OP_BINARY, True, b"\x07"),
        (OP_CLOSE, True, b"\x03\xe8"),
    ]
    # the message hook still sees whole messages after the frame hook
    assert [(d, v) for d, _, v, _ in messages.seen] == [
        ("client", "abcd"),
        ("server", "abcd"),
        ("client", b"\x07"),
        ("server", b"\x07"),
    ]


class FrameRewriter:
    """Client data frames: "secret" becomes "XXXXXX"; pings "drop" are dropped, others
    get a new payload."""

    def frame(self, flow: Flow, frame: FrameEvent) -> None:
        if not frame.from_client:
            return
        if frame.opcode == Opcode.PING:
            if frame.payload == b"drop":
                frame.drop()
            else:
                frame.payload = b"changed-ping"
        elif not frame.is_control:
            frame.payload = frame.payload.replace(b"secret", b"XXXXXX")


async def test_frame_replace_payload_and_drop_ping(tmp_path: Path) -> None:
    async with (
        raw_upstream() as up,
        running_proxy(tmp_path, [FrameRewriter()], up.port) as proxy,
        connect(ws_url(proxy.port), compression=None) as ws,
    ):
        await ws.send("my secret")
        assert await recv(ws) == "my XXXXXX"
        await ws.send(["a secret", " and another secret"])
        assert await recv(ws) == "a XXXXXX and another XXXXXX"
        ping = await ws.ping(b"drop")
        await ws.send("after the dropped ping")
        assert await recv(ws) == "after the dropped ping"
        assert not ping.done()
        await ws.ping(b"original")  # reaches the upstream as changed-ping; not awaited
        await ws.send("end")
        assert await recv(ws) == "end"
    pings = [f.payload for f in up.frames if f.opcode == OP_PING]
    assert pings == [b"changed-ping"]
    assert up.data_frames()[:4] == [
        (True, OP_TEXT, b"my XXXXXX"),
        (False, OP_TEXT, b"a XXXXXX"),
        (False, OP_CONT, b" and another XXXXXX"),
        (True, OP_CONT, b""),
    ]


class CloseDropper:
    def frame(self, flow: Flow, frame: FrameEvent) -> None:
        if frame.opcode == Opcode.CLOSE:
            frame.drop()


class CloseChanger:
    def frame(self, flow: Flow, frame: FrameEvent) -> None:
        if frame.opcode == Opcode.CLOSE:
            frame.payload = b"\x0f\xa0nope"


async def test_frame_close_cannot_be_dropped_or_changed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="wsproxy")
    closed = Closed()
    async with (
        ws_upstream(echo_until_bye) as up,
        running_proxy(tmp_path, [CloseDropper(), CloseChanger(), closed], up.port) as proxy,
    ):
        async with connect(ws_url(proxy.port)) as ws:
            await ws.send("bye")
            assert await recv(ws) == "bye"
            assert await close_received(ws) == (4001, "bye")
        await wait(closed.done)
        # and a client-initiated close on a second connection
        async with connect(ws_url(proxy.port)) as ws:
            await ws.send("y")
            assert await recv(ws) == "y"
            await ws.close(1000, "client done")
        await wait_until(lambda: len(up.close_codes) == 2, TIMEOUT)
    assert up.close_codes[0] == (4001, "bye")
    assert up.close_codes[1] == (1000, "client done")
    assert closed.flows[0].client_close.code == 4001
    failures = [r for r in caplog.records if "failed in frame" in r.getMessage()]
    assert len(failures) == 2  # once per plugin, not per close frame
    text = "\n".join(r.getMessage() for r in failures)
    assert "plugin CloseDropper failed in frame" in text
    assert "plugin CloseChanger failed in frame" in text
    assert "ValueError: a close frame cannot be dropped" in text
    assert "ValueError: a close frame cannot be changed" in text


# ---------------------------------------------------------------------------------------------
# inject
# ---------------------------------------------------------------------------------------------


class Ticker:
    """From ``opened`` on, a background task sends "tick N" to the client every 50 ms."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []
        self.refused = 0

    async def opened(self, flow: Flow) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(self._tick(flow)))

    async def _tick(self, flow: Flow) -> None:
        n = 0
        while True:
            await asyncio.sleep(0.05)  # the plugin's own pace: a tick every 50 ms
            if not flow.inject(f"tick {n}", to_client=True):
                self.refused += 1
                return
            n += 1

    def closed(self, flow: Flow) -> None:
        for task in self.tasks:
            task.cancel()


class HookedTicker(Ticker):
    def message(self, flow: Flow, message: Message) -> None:
        pass  # hooked: the messages go through the chain meanwhile


async def test_inject_from_background_task_while_traffic_flows(tmp_path: Path) -> None:
    plugin = HookedTicker()
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [plugin], up.port) as proxy,
    ):
        try:
            async with connect(ws_url(proxy.port)) as ws:
                got: list[str | bytes] = []
                for i in range(25):
                    await ws.send(f"msg {i}")
                    await asyncio.sleep(0.02)  # the client's pace: ticks come in between
                while sum(1 for g in got if str(g).startswith("msg")) < 25:
                    got.append(await recv(ws))
        finally:
            for task in plugin.tasks:
                task.cancel()
    echoes = [g for g in got if str(g).startswith("msg")]
    ticks = [g for g in got if str(g).startswith("tick")]
    assert echoes == [f"msg {i}" for i in range(25)]
    assert len(ticks) >= 5
    assert ticks == [f"tick {i}" for i in range(len(ticks))]
    assert up.received == [f"msg {i}" for i in range(25)]


class Greeter:
    def opened(self, flow: Flow) -> None:
        assert flow.inject("hello upstream", to_client=False)
        assert flow.inject(b"\x00binary hello", to_client=False)


async def test_inject_towards_upstream(tmp_path: Path) -> None:
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [Greeter()], up.port) as proxy,
        connect(ws_url(proxy.port)) as ws,
    ):
        # the upstream echoes the injected messages: the client gets them too
        assert await recv(ws) == "hello upstream"
        assert await recv(ws) == b"\x00binary hello"
        await ws.send("then the client")
        assert await recv(ws) == "then the client"
    assert up.received == ["hello upstream", b"\x00binary hello", "then the client"]


class InjectOnOpen:
    """Injects towards the upstream when the WebSocket opens; drops what says "drop"."""

    def opened(self, flow: Flow) -> None:
        assert flow.inject("injected hello", to_client=False)

    def message(self, flow: Flow, message: Message) -> None:
        if message.text.startswith("drop"):
            message.drop()


class Seer:
    """Records every message it gets with its flags; ``sees_dropped`` as the class says."""

    def __init__(self, sees_dropped: bool) -> None:
        self.sees_dropped = sees_dropped
        self.seen: list[tuple[str, str, bool, bool]] = []

    def message(self, flow: Flow, message: Message) -> None:
        self.seen.append((message.direction, message.text, message.injected, message.dropped))


@pytest.mark.parametrize("sees_dropped", [False, True])
async def test_message_hooks_see_injected_messages(tmp_path: Path, sees_dropped: bool) -> None:
    seer = Seer(sees_dropped)
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [InjectOnOpen(), seer], up.port) as proxy,
        connect(ws_url(proxy.port)) as ws,
    ):
        assert await recv(ws) == "injected hello"  # the upstream's echo: not injected
        await ws.send("drop me")
        await ws.send("keep me")
        assert await recv(ws) == "keep me"
    assert up.received == ["injected hello", "keep me"]
    expected = [
        ("client", "injected hello", True, False),
        ("server", "injected hello", False, False),
        ("client", "keep me", False, False),
        ("server", "keep me", False, False),
    ]
    if sees_dropped:
        expected.insert(2, ("client", "drop me", False, True))
    assert seer.seen == expected


BIG_PARTS = [bytes([65 + i]) * (256 * 1024) for i in range(8)]


async def slow_fragmented(ws: ServerConnection, up: WsUpstream) -> None:
    """On "go", sends a 2 MiB binary message in 8 fragments, 50 ms apart, then "done"."""
    async for message in ws:
        up.received.append(message)
        if message == "go":

            async def parts() -> Any:
                for part in BIG_PARTS:
                    yield part
                    await asyncio.sleep(0.05)  # the server's pace: fragments 50 ms apart

            await ws.send(parts())
            await ws.send("done")


class InjectMidMessage:
    """Frame hook: on the third fragment of a server message (two already went out to the
    client), injects towards the client."""

    def frame(self, flow: Flow, frame: FrameEvent) -> None:
        if (
            not frame.from_client
            and frame.opcode == Opcode.CONTINUATION
            and frame.payload[:1] == b"C"
        ):
            assert flow.inject("injected mid-message", to_client=True)


@pytest.mark.parametrize("plugin_kind", ["frame-hook", "background-task"])
async def test_inject_while_fragmented_message_half_sent(tmp_path: Path, plugin_kind: str) -> None:
    ticker = Ticker()  # no frame or message hook: the big message streams through
    plugins: list[object] = [InjectMidMessage()] if plugin_kind == "frame-hook" else [ticker]
    async with (
        ws_upstream(slow_fragmented) as up,
        running_proxy(tmp_path, plugins, up.port) as proxy,
    ):
        try:
            async with connect(ws_url(proxy.port), max_size=None) as ws:
                await ws.send("go")
                got: list[str | bytes] = []
                while "done" not in got:
                    got.append(await recv(ws))
        finally:
            for task in ticker.tasks:
                task.cancel()
    big = [g for g in got if isinstance(g, bytes)]
    assert big == [b"".join(BIG_PARTS)]  # whole and uncorrupted
    position = got.index(big[0])
    if plugin_kind == "frame-hook":
        assert got == [big[0], "injected mid-message", "done"]
    else:
        # ticks went on while the fragments trickled in: the ones due then arrive after it
        ticks = [g for g in got if isinstance(g, str) and g.startswith("tick")]
        assert ticks == [f"tick {i}" for i in range(len(ticks))]
        assert len(ticks) >= 5
        assert position < len(got) - 1 and str(got[position + 1]).startswith("tick")


# ---------------------------------------------------------------------------------------------
# flow.close
# ---------------------------------------------------------------------------------------------


class CloseOnCommand:
    async def message(self, flow: Flow, message: Message) -> None:
        if message.from_client and message.text == "close both":
            message.drop()
            flow.close(4002, "plugin closes")
        elif message.from_client and message.text == "close client":
            message.drop()
            flow.close(4000, "x", side="client")


@pytest.mark.parametrize(
    ("command", "client_code", "upstream_code"),
    [
        ("close both", (4002, "plugin closes"), (4002, "plugin closes")),
        ("close client", (4000, "x"), (1001, "closed by a plugin")),
    ],
)
async def test_flow_close(
    tmp_path: Path,
    command: str,
    client_code: tuple[int, str],
    upstream_code: tuple[int, str],
) -> None:
    closed = Closed()
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [CloseOnCommand(), closed], up.port) as proxy,
    ):
        async with connect(ws_url(proxy.port)) as ws:
            await ws.send("first")
            assert await recv(ws) == "first"
            await ws.send(command)
            assert await close_received(ws) == client_code
        await wait(up.closed)
        await wait(closed.done)
    assert up.close_codes == [upstream_code]
    assert up.received == ["first"]
    assert closed.flows[0].closed_by == "proxy"


# ---------------------------------------------------------------------------------------------
# two plugins, a failing plugin
# ---------------------------------------------------------------------------------------------


class A:
    def message(self, flow: Flow, message: Message) -> None:
        if not message.from_client:
            return
        if message.text == "drop":
            message.drop()
        else:
            message.text = "A(" + message.text + ")"


class B:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def message(self, flow: Flow, message: Message) -> None:
        if message.from_client:
            self.seen.append(message.text)
            message.text = "B(" + message.text + ")"


async def test_two_plugins_in_order(tmp_path: Path) -> None:
    b = B()
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [A(), b], up.port) as proxy,
        connect(ws_url(proxy.port)) as ws,
    ):
        await ws.send("one")
        assert await recv(ws) == "B(A(one))"
        await ws.send("drop")
        await ws.send("two")
        assert await recv(ws) == "B(A(two))"
    assert b.seen == ["A(one)", "A(two)"]
    assert up.received == ["B(A(one))", "B(A(two))"]


class Boom:
    """Changes the message, then raises: the change must be undone."""

    def __init__(self) -> None:
        self.calls = 0

    def message(self, flow: Flow, message: Message) -> None:
        self.calls += 1
        message.text = "partial change"
        message.opcode = Opcode.BINARY
        raise RuntimeError("boom in plugin")


class After:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bool, str, bool]] = []

    def message(self, flow: Flow, message: Message) -> None:
        self.seen.append((message.direction, message.is_text, message.text, message.modified))


async def test_raising_plugin_logged_once_and_undone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="wsproxy")
    boom, after = Boom(), After()
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [boom, after], up.port) as proxy,
    ):
        async with connect(ws_url(proxy.port)) as ws:
            for text in ("one", "two", "three"):
                await ws.send(text)
                assert await recv(ws) == text
        async with connect(ws_url(proxy.port)) as ws:
            await ws.send("new connection")
            assert await recv(ws) == "new connection"
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(ws_url(proxy.port)) as aws,
        ):
            await aws.send_str("aiohttp too")
            assert (await aws.receive(TIMEOUT)).data == "aiohttp too"
    assert up.received == ["one", "two", "three", "new connection", "aiohttp too"]
    assert boom.calls == 10
    assert after.seen[:2] == [("client", True, "one", False), ("server", True, "one", False)]
    assert all(is_text and not modified for _, is_text, _, modified in after.seen)
    failures = [r for r in caplog.records if "plugin Boom failed in message" in r.getMessage()]
    assert len(failures) == 1
    assert "RuntimeError: boom in plugin" in failures[0].getMessage()
    assert "Traceback (most recent call last)" in failures[0].getMessage()
    assert "test_hooks.py" in failures[0].getMessage()


# ---------------------------------------------------------------------------------------------
# permessage-deflate
# ---------------------------------------------------------------------------------------------

DEFLATE_VARIANTS: dict[str, dict[str, Any]] = {
    "context-takeover": {"compression": "deflate"},
    "client_no_context_takeover": {
        "compression": None,
        "extensions": [ClientPerMessageDeflateFactory(client_no_context_takeover=True)],
    },
    "server_no_context_takeover": {
        "compression": None,
        "extensions": [ClientPerMessageDeflateFactory(server_no_context_takeover=True)],
    },
}


class MidStream:
    """Records what it sees (before changing it); rewrites or drops marked messages."""

    def __init__(self) -> None:
        self.seen: list[tuple[bool, bytes, bool]] = []

    def message(self, flow: Flow, message: Message) -> None:
        self.seen.append((message.from_client, message.content, message.compressed))
        text = message.text
        if message.from_client and text.startswith("REWRITE-C"):
            message.text = "client side rewritten: " + text[::-1]
        elif not message.from_client and text.startswith("REWRITE-S"):
            message.text = "server side rewritten " + text.upper() + " " + text
        elif text.startswith("DROP-C" if message.from_client else "DROP-S"):
            message.drop()


def rewrite_c(text: str) -> str:
    return "client side rewritten: " + text[::-1]


def rewrite_s(text: str) -> str:
    return "server side rewritten " + text.upper() + " " + text


def negotiated(ws: ClientConnection) -> str:
    return ", ".join(ext.name for ext in ws.protocol.extensions)


@pytest.mark.parametrize("variant", list(DEFLATE_VARIANTS))
@pytest.mark.parametrize("action", ["rewrite", "drop"])
async def test_compressed_stream_changed_mid_stream(
    tmp_path: Path, variant: str, action: str
) -> None:
    texts = wordy_texts(262)
    if action == "rewrite":
        marked_c, marked_s = "REWRITE-C " + texts[30], "REWRITE-S " + texts[60]
    else:
        marked_c, marked_s = "DROP-C " + texts[30], "DROP-S " + texts[60]
    sent = [*texts[:30], marked_c, *texts[31:60], marked_s, *texts[61:]]
    assert len(sent) - 61 == 201
    if action == "rewrite":
        to_upstream = [rewrite_c(t) if t is marked_c else t for t in sent]
        to_client = [rewrite_s(t) if t is marked_s else t for t in to_upstream]
    else:
        to_upstream = [t for t in sent if t is not marked_c]
        to_client = [t for t in to_upstream if t is not marked_s]
    plugin = MidStream()
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [plugin], up.port) as proxy,
        connect(ws_url(proxy.port), **DEFLATE_VARIANTS[variant]) as ws,
    ):
        assert negotiated(ws) == "permessage-deflate"
        for text in sent:
            await ws.send(text)
        got = [await recv(ws) for _ in to_client]
    assert got == to_client
    assert up.received == to_upstream
    from_client = [content for c, content, _ in plugin.seen if c]
    assert from_client == [t.encode() for t in sent]  # decompressed, as the client sent it
    from_server = [content for c, content, _ in plugin.seen if not c]
    assert from_server == [t.encode() for t in to_upstream]
    assert all(compressed for _, _, compressed in plugin.seen)


class BigHook:
    def __init__(self) -> None:
        self.sizes: list[tuple[bool, int]] = []

    def message(self, flow: Flow, message: Message) -> None:
        self.sizes.append((message.from_client, len(message.content)))
        if message.from_client and message.content.startswith(b"REV"):
            message.content = message.content[::-1]


SIZES = [0, 1, 125, 126, 65535, 65536, 65537, 1024 * 1024, 16 * 1024 * 1024]


@pytest.mark.parametrize("variant", ["context-takeover", "server_no_context_takeover"])
async def test_compressed_sizes_up_to_16_mib(tmp_path: Path, variant: str) -> None:
    big = wordy_bytes(max(SIZES))
    payloads = [big[:n] for n in SIZES]
    rev = b"REV" + big[: 2 * 1024 * 1024]
    payloads.insert(5, rev)  # changed mid-stream: what follows is recompressed
    payloads.append("text " * 200_000)  # type: ignore[arg-type]
    plugin = BigHook()
    async with (
        ws_upstream(max_size=None) as up,
        running_proxy(tmp_path, [plugin], up.port) as proxy,
        connect(ws_url(proxy.port), max_size=None, **DEFLATE_VARIANTS[variant]) as ws,
    ):
        assert negotiated(ws) == "permessage-deflate"
        for payload in payloads:
            await ws.send(payload)
            got = await recv(ws, 60)
            expected = payload[::-1] if payload is rev else payload
            assert len(got) == len(expected)
            assert got == expected
    assert [n for c, n in plugin.sizes if c] == [len(p) for p in payloads]
    assert [n for c, n in plugin.sizes if not c] == [len(p) for p in payloads]
    assert up.received[5] == rev[::-1]


# ---------------------------------------------------------------------------------------------
# a slow hook; regular mode; no chain
# ---------------------------------------------------------------------------------------------


class Slow:
    async def message(self, flow: Flow, message: Message) -> None:
        if message.from_client:
            await asyncio.sleep(0.2)  # the slow hook under test


async def chatty(ws: ServerConnection, up: WsUpstream) -> None:
    """Pushes "srv N" every 20 ms on its own, and echoes what the client sends."""

    async def push() -> None:
        for i in range(10):
            await ws.send(f"srv {i}")
            await asyncio.sleep(0.02)  # the server's own pace: a push every 20 ms

    task = asyncio.get_running_loop().create_task(push())
    try:
        await echo(ws, up)
    finally:
        task.cancel()


async def test_slow_hook_keeps_order_and_other_direction_flows(tmp_path: Path) -> None:
    async with (
        ws_upstream(chatty) as up,
        running_proxy(tmp_path, [Slow()], up.port) as proxy,
        connect(ws_url(proxy.port)) as ws,
    ):
        start = time.monotonic()
        for i in range(5):
            await ws.send(f"c {i}")
        got: list[tuple[float, str | bytes]] = []
        while len(got) < 15:
            message = await recv(ws)
            got.append((time.monotonic() - start, message))
    echoes = [(t, m) for t, m in got if str(m).startswith("c ")]
    pushes = [(t, m) for t, m in got if str(m).startswith("srv")]
    assert [m for _, m in echoes] == [f"c {i}" for i in range(5)]
    assert [m for _, m in pushes] == [f"srv {i}" for i in range(10)]
    assert echoes[0][0] >= 0.2
    assert echoes[-1][0] >= 1.0  # one after the other
    assert pushes[-1][0] < 0.6  # not stuck behind the client's slow messages
    assert up.received == [f"c {i}" for i in range(5)]


async def test_regular_mode_through_connect_and_absolute_form(tmp_path: Path) -> None:
    reader = Reader()
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [reader, Upper()], None) as proxy,
    ):
        proxy_url = f"http://127.0.0.1:{proxy.port}"
        # websockets tunnels with CONNECT
        async with connect(ws_url(up.port, "/via-connect"), proxy=proxy_url) as ws:
            await ws.send("change me")
            assert await recv(ws) == "CHANGE ME"
        # aiohttp sends an absolute-form GET to an HTTP proxy
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(ws_url(up.port, "/via-get"), proxy=proxy_url) as aws,
        ):
            await aws.send_str("change too")
            assert (await aws.receive(TIMEOUT)).data == "CHANGE TOO"
    assert up.paths == ["/via-connect", "/via-get"]
    assert up.received == ["CHANGE ME", "CHANGE TOO"]
    assert [v for _, _, v, _ in reader.seen] == [
        "change me",
        "CHANGE ME",
        "change too",
        "CHANGE TOO",
    ]


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_no_chain_sanity(tmp_path: Path, compression: str | None) -> None:
    async with (
        ws_upstream(echo_until_bye) as up,
        running_proxy(tmp_path, None, up.port) as proxy,
    ):
        async with connect(ws_url(proxy.port), compression=compression, max_size=None) as ws:
            for payload in ("text", b"bin", ["frag", "ments"], b"x" * 200_000):
                await ws.send(payload)  # type: ignore[arg-type]
                expected = "fragments" if isinstance(payload, list) else payload
                assert await recv(ws) == expected
            await ws.ping(b"p")
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(ws_url(proxy.port)) as aws,
        ):
            await aws.send_str("bye")
            assert (await aws.receive(TIMEOUT)).data == "bye"
            closing = await aws.receive(TIMEOUT)
            assert closing.type == aiohttp.WSMsgType.CLOSE
            assert closing.data == 4001
        await wait_until(lambda: len(up.close_codes) == 2, TIMEOUT)
    assert up.close_codes[0] == (1000, "")
    assert up.close_codes[1] == (4001, "bye")


class SlowClientUpload:
    """Background task: injects "to upstream N" every 20 ms from ``opened`` on."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []

    def opened(self, flow: Flow) -> None:
        async def run() -> None:
            n = 0
            while flow.inject(f"to upstream {n}", to_client=False):
                n += 1
                await asyncio.sleep(0.02)  # the plugin's own pace: one every 20 ms

        self.tasks.append(asyncio.get_running_loop().create_task(run()))


async def test_inject_towards_upstream_while_client_message_half_sent(tmp_path: Path) -> None:
    plugin = SlowClientUpload()

    async def parts() -> Any:
        for part in BIG_PARTS[:6]:
            yield part
            await asyncio.sleep(0.05)  # the client's pace: the message stays half-sent a while

    async with (
        ws_upstream(sink) as up,
        running_proxy(tmp_path, [plugin], up.port) as proxy,
    ):
        try:
            async with connect(ws_url(proxy.port), max_size=None) as ws:
                await ws.send(parts())
                await ws.send("client done")
                await wait_until(lambda: "client done" in up.received, TIMEOUT)
        finally:
            for task in plugin.tasks:
                task.cancel()
    big = [m for m in up.received if isinstance(m, bytes)]
    assert big == [b"".join(BIG_PARTS[:6])]
    injected = [m for m in up.received if isinstance(m, str) and m.startswith("to upstream")]
    assert injected == [f"to upstream {i}" for i in range(len(injected))]
    position = up.received.index(big[0])
    assert up.received[position + 1].startswith("to upstream")  # queued while it was half-sent


class FrameMidStream:
    """Frame hook under compression: rewrites one client data frame and one server data frame
    in the middle of the stream."""

    def frame(self, flow: Flow, frame: FrameEvent) -> None:
        if frame.is_control:
            return
        if frame.from_client and frame.payload.startswith(b"REWRITE-C"):
            frame.payload = rewrite_c(frame.payload.decode())
        elif not frame.from_client and frame.payload.startswith(b"REWRITE-S"):
            frame.payload = rewrite_s(frame.payload.decode())


@pytest.mark.parametrize("variant", list(DEFLATE_VARIANTS))
async def test_compressed_stream_frame_rewritten_mid_stream(tmp_path: Path, variant: str) -> None:
    texts = wordy_texts(262, seed=11)
    marked_c, marked_s = "REWRITE-C " + texts[30], "REWRITE-S " + texts[60]
    sent = [*texts[:30], marked_c, *texts[31:60], marked_s, *texts[61:]]
    to_upstream = [rewrite_c(t) if t is marked_c else t for t in sent]
    to_client = [rewrite_s(t) if t is marked_s else t for t in to_upstream]
    async with (
        ws_upstream() as up,
        running_proxy(tmp_path, [FrameMidStream()], up.port) as proxy,
        connect(ws_url(proxy.port), **DEFLATE_VARIANTS[variant]) as ws,
    ):
        assert negotiated(ws) == "permessage-deflate"
        for text in sent:
            await ws.send(text)
        got = [await recv(ws) for _ in to_client]
    assert got == to_client
    assert up.received == to_upstream


# ---------------------------------------------------------------------------------------------
# error hook; closed on shutdown
# ---------------------------------------------------------------------------------------------


class ErrorRecorder(Closed):
    def __init__(self) -> None:
        super().__init__()
        self.errors: list[tuple[Flow, str]] = []

    async def error(self, flow: Flow, error: str) -> None:
        self.errors.append((flow, error))


async def test_error_hook_on_upstream_protocol_error(tmp_path: Path) -> None:
    plugin = ErrorRecorder()
    async with (
        raw_upstream(bad_on=b"bad") as up,
        running_proxy(tmp_path, [plugin, Reader()], up.port) as proxy,
    ):
        async with connect(ws_url(proxy.port), compression=None) as ws:
            await ws.send("good")
            assert await recv(ws) == "good"
            await ws.send("bad")
            assert (await close_received(ws))[0] == 1014
        await wait(plugin.done)
    assert len(plugin.errors) == 1
    flow, error = plugin.errors[0]
    assert flow is plugin.flows[0]
    assert error.startswith("protocol error")
    assert flow.error == error
    assert flow.closed_by == "proxy"


async def test_closed_runs_when_the_proxy_shuts_down(tmp_path: Path) -> None:
    plugin = Closed()
    async with ws_upstream() as up:
        async with running_proxy(tmp_path, [plugin, Reader()], up.port) as proxy:
            ws = await connect(ws_url(proxy.port))
            await ws.send("x")
            assert await recv(ws) == "x"
        # leaving running_proxy shut the proxy down
        assert (await close_received(ws))[0] == 1001
        await wait(plugin.done)
        await wait(up.closed)
    assert plugin.flows[0].closed_by == "proxy"
    assert up.close_codes == [(1001, "proxy shutting down")]
