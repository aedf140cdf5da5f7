"""Breakpoints through a real proxy: real ``websockets`` clients and servers over loopback.

The proxy is an in-process ``ProxyServer`` (``running_proxy``) whose chain holds the
``Breakpoints`` object, so the test plays the person at the UI: it waits for the ``pause``
event, looks at the PAUSE, and calls ``resolve``. What the real server and client then get
is the evidence.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from tests.harness import HOST, WsUpstream, running_proxy, sink, wait_until, ws_upstream
from wsproxy.filters import FilterError
from wsproxy.web.breakpoints import Breakpoints

TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def _no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing of this goes wrong inside the proxy: no plugin failure, no internal error."""
    caplog.set_level(logging.INFO, "wsproxy")
    yield
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


class Events:
    """The plugin's ``on_event`` calls, to wait on one type at a time."""

    def __init__(self) -> None:
        self.all: list[dict[str, Any]] = []
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        self.all.append(event)
        self._queue(event["type"]).put_nowait(event)

    def _queue(self, kind: str) -> asyncio.Queue[dict[str, Any]]:
        return self._queues.setdefault(kind, asyncio.Queue())

    async def next(self, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        return await asyncio.wait_for(self._queue(kind).get(), timeout)

    async def pause(self) -> dict[str, Any]:
        return (await self.next("pause"))["pause"]  # type: ignore[no-any-return]

    async def resume(self) -> dict[str, Any]:
        return await self.next("resume")


def rule(filter: str, **fields: Any) -> dict[str, Any]:
    return {"filter": filter, **fields}


@contextlib.asynccontextmanager
async def setup(
    tmp_path: Path,
    rules: list[dict[str, Any]],
    handler: Any = None,
    *,
    options: dict[str, Any] | None = None,
    **limits: int,
) -> AsyncIterator[tuple[Breakpoints, Events, WsUpstream, str]]:
    """An upstream (echo unless ``handler``), a proxy in front of it with the breakpoints
    (and proxy ``options``), and the proxy's ws:// URL."""
    events = Events()
    breakpoints = Breakpoints(on_event=events, **limits)
    breakpoints.set_rules(rules)
    upstream = ws_upstream() if handler is None else ws_upstream(handler)
    async with (
        upstream as up,
        running_proxy(tmp_path, [breakpoints], up.port, **(options or {})) as proxy,
    ):
        yield breakpoints, events, up, f"ws://{HOST}:{proxy.port}"


async def recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


def client(url: str, **kwargs: Any) -> Any:
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("max_size", None)
    return connect(url, **kwargs)


# -- messages: forward edited, drop, answer, binary ------------------------------------------


async def test_edited_text_reaches_the_server_and_order_is_kept(tmp_path: Path) -> None:
    rules = [rule("~b secret", direction="client")]
    async with setup(tmp_path, rules) as (bp, events, up, url), client(url + "/chat") as ws:
        await ws.send("my secret is 42")
        pause = await events.pause()
        await ws.send("said after it")  # waits behind the paused message
        assert pause["conn"] and pause["on"] == "message" and pause["from"] == "client"
        assert pause["text"] == "my secret is 42" and pause["base64"] is None
        assert pause["rule"] == "b1" and pause["request"] is None
        msg = pause["msg"]
        assert msg["opcode"] == "text" and msg["preview"] == "my secret is 42"
        assert msg["size"] == 15 and msg["from"] == "client" and msg["verdict"] == "forwarded"
        assert bp.pauses() == [pause]
        bp.resolve(pause["id"], {"action": "forward", "text": "my [redacted]"})
        assert await events.resume() == {
            "type": "resume",
            "pause": pause["id"],
            "action": "forward",
        }
        assert await recv(ws) == "my [redacted]"  # the server's echo of the edited text
        assert await recv(ws) == "said after it"
    assert up.received == ["my [redacted]", "said after it"]
    assert bp.pauses() == [] and bp.paused_bytes == 0


async def test_forward_unchanged_and_drop(tmp_path: Path) -> None:
    async with setup(tmp_path, [rule("~b stop")], sink) as (bp, events, up, url), client(url) as ws:
        await ws.send("stop 1")
        first = await events.pause()
        bp.resolve(first["id"], {"action": "forward"})
        await ws.send("stop 2")
        second = await events.pause()
        assert second["id"] != first["id"]
        bp.resolve(second["id"], {"action": "drop"})
        assert (await events.resume())["action"] == "forward"
        assert (await events.resume())["action"] == "drop"
        await ws.send("go on")
        await wait_until(lambda: "go on" in up.received, TIMEOUT)
    assert up.received == ["stop 1", "go on"]


async def test_answer_goes_back_to_the_sender_and_not_to_the_server(tmp_path: Path) -> None:
    async with setup(tmp_path, [rule("~b question")]) as (bp, events, up, url), client(url) as ws:
        await ws.send("a question")
        pause = await events.pause()
        bp.resolve(pause["id"], {"action": "answer", "text": "the proxy answers"})
        assert await recv(ws) == "the proxy answers"
        assert (await events.resume())["action"] == "answer"
        await ws.send("plain")
        assert await recv(ws) == "plain"
    assert up.received == ["plain"]


async def test_server_message_paused_and_answered_to_the_server(tmp_path: Path) -> None:
    """``direction`` server: what the server says is held; an answer goes back to it."""

    async def talker(ws: ServerConnection, up: WsUpstream) -> None:
        await ws.send("server asks")
        async for message in ws:
            up.received.append(message)
            if message == "client speaks":
                await ws.send("server goes on")

    rules = [rule("~b asks", direction="server")]
    async with setup(tmp_path, rules, talker) as (bp, events, up, url), client(url) as ws:
        pause = await events.pause()
        assert pause["from"] == "server" and pause["text"] == "server asks"
        bp.resolve(pause["id"], {"action": "answer", "text": "answered by the proxy"})
        await wait_until(lambda: up.received, TIMEOUT)
        await ws.send("client speaks")
        # The first thing the client gets is what the server sent last: "server asks" was not.
        assert await recv(ws) == "server goes on"
    assert up.received == ["answered by the proxy", "client speaks"]


async def test_binary_message_edited_through_base64(tmp_path: Path) -> None:
    rules = [rule("~opcode binary", direction="client")]
    async with setup(tmp_path, rules) as (bp, events, up, url), client(url) as ws:
        await ws.send(b"\x00\x01\xfe\xff")
        pause = await events.pause()
        assert pause["text"] is None
        assert base64.b64decode(pause["base64"]) == b"\x00\x01\xfe\xff"
        assert pause["msg"]["opcode"] == "binary" and pause["msg"]["preview"] == "0001feff"
        new = bytes(range(200, 256))
        bp.resolve(pause["id"], {"action": "forward", "base64": base64.b64encode(new).decode()})
        assert await recv(ws) == new
        await ws.send("text is not paused")
        assert await recv(ws) == "text is not paused"
    assert up.received == [new, "text is not paused"]


# -- timeouts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("default", ["forward", "drop"])
async def test_timeout_applies_the_default(tmp_path: Path, default: str) -> None:
    rules = [rule("~b slow", timeout=0.2, default=default)]
    async with setup(tmp_path, rules, sink) as (bp, events, up, url), client(url) as ws:
        await ws.send("slow one")
        pause = await events.pause()
        resume = await events.resume()
        assert resume == {"type": "resume", "pause": pause["id"], "action": f"timeout:{default}"}
        await ws.send("after")
        await wait_until(lambda: "after" in up.received, TIMEOUT)
        with pytest.raises(KeyError, match="no pause"):
            bp.resolve(pause["id"], {"action": "forward"})  # too late
    assert up.received == (["slow one", "after"] if default == "forward" else ["after"])


# -- handshakes ------------------------------------------------------------------------------


async def test_handshake_forwarded_with_edited_headers(tmp_path: Path) -> None:
    rules = [rule("~u /guarded", on="handshake")]
    async with setup(tmp_path, rules) as (bp, events, up, url):
        opening = asyncio.create_task(
            client(url + "/guarded", user_agent_header="ua-1").__aenter__()
        )
        try:
            pause = await events.pause()
            assert pause["on"] == "handshake" and pause["from"] is None and pause["msg"] is None
            request = pause["request"]
            assert request["method"] == "GET" and request["url"].endswith("/guarded")
            headers = [[k, v] for k, v in request["headers"] if k.lower() != "user-agent"]
            headers.append(["X-Edited", "at a breakpoint"])
            assert up.handshakes == 0  # held before the upstream is contacted
            bp.resolve(pause["id"], {"action": "forward", "headers": headers})
            ws = await asyncio.wait_for(opening, TIMEOUT)
            await ws.send("hello")
            assert await recv(ws) == "hello"
            await ws.close()
        finally:
            opening.cancel()
        assert (await events.resume())["action"] == "forward"
        async with client(url + "/open") as other:  # not matched: not paused
            await other.send("x")
            assert await recv(other) == "x"
    assert up.headers[0]["x-edited"] == "at a breakpoint"
    assert "user-agent" not in up.headers[0]
    assert up.paths == ["/guarded", "/open"]


async def test_handshake_refused_with_a_status(tmp_path: Path) -> None:
    rules = [rule("~hq '^Origin: https://evil'", on="handshake", direction="client")]
    async with setup(tmp_path, rules) as (bp, events, up, url):
        opening = asyncio.create_task(
            client(url, origin="https://evil.example").__aenter__()  # type: ignore[arg-type]
        )
        pause = await events.pause()
        bp.resolve(pause["id"], {"action": "refuse", "status": 403})
        with pytest.raises(InvalidStatus) as refused:
            await asyncio.wait_for(opening, TIMEOUT)
        assert refused.value.response.status_code == 403
        assert (await events.resume())["action"] == "refuse"
    assert up.handshakes == 0


async def test_handshake_timeout_drop_refuses(tmp_path: Path) -> None:
    rules = [rule("~all", on="handshake", timeout=0.2, default="drop")]
    async with setup(tmp_path, rules) as (_, events, up, url):
        with pytest.raises(InvalidStatus) as refused:
            await asyncio.wait_for(client(url).__aenter__(), TIMEOUT)
        assert refused.value.response.status_code == 403
        assert (await events.resume())["action"] == "timeout:drop"
    assert up.handshakes == 0


# -- concurrency: several pauses, the rest keeps flowing -----------------------------------


async def test_several_pauses_on_two_connections(tmp_path: Path) -> None:
    async with (
        setup(tmp_path, [rule("~b hold", direction="client")]) as (bp, events, up, url),
        client(url + "/a") as a,
        client(url + "/b") as b,
    ):
        await a.send("hold a")
        first = await events.pause()
        await b.send("hold b")
        second = await events.pause()
        assert {p["id"] for p in bp.pauses()} == {first["id"], second["id"]}
        assert first["conn"] != second["conn"]
        bp.resolve(second["id"], {"action": "forward", "text": "b edited"})
        assert await recv(b) == "b edited"
        assert [p["id"] for p in bp.pauses()] == [first["id"]]  # a still held
        bp.resolve(first["id"], {"action": "forward"})
        assert await recv(a) == "hold a"
    assert up.received == ["b edited", "hold a"]


async def test_other_direction_and_pings_flow_while_paused(tmp_path: Path) -> None:
    """A client message held: the server's messages still reach the client, the server's
    ping is answered by the client's pong, and the client's own ping too."""
    go = asyncio.Event()
    pongs: list[float] = []

    async def chatty(ws: ServerConnection, up: WsUpstream) -> None:
        await go.wait()
        await ws.send("server 1")
        waiter = await ws.ping(b"from the server")
        pongs.append(await asyncio.wait_for(waiter, TIMEOUT))
        await ws.send("server 2")
        async for message in ws:
            up.received.append(message)

    async with (
        setup(tmp_path, [rule("~from client")], chatty) as (bp, events, up, url),
        client(url) as ws,
    ):
        await ws.send("held")
        pause = await events.pause()
        go.set()
        assert await recv(ws) == "server 1"
        assert await recv(ws) == "server 2"  # sent after the server's ping was answered
        assert len(pongs) == 1
        own = await ws.ping(b"from the client")
        await asyncio.wait_for(own, TIMEOUT)
        assert bp.pauses()[0]["id"] == pause["id"]  # still held all along
        assert up.received == []
        bp.resolve(pause["id"], {"action": "forward"})
        await wait_until(lambda: up.received == ["held"], TIMEOUT)


# -- connections that end while paused --------------------------------------------------------


async def test_connection_closed_while_paused_is_gone(tmp_path: Path) -> None:
    async with setup(tmp_path, [rule("~b held")], sink) as (bp, events, up, url):
        ws = await client(url).__aenter__()
        await ws.send("held")
        pause = await events.pause()
        assert bp.paused_bytes == 4
        ws.transport.abort()  # the client is gone, no close frame
        resume = await events.resume()
        assert resume == {"type": "resume", "pause": pause["id"], "action": "gone"}
        assert bp.pauses() == [] and bp.paused_bytes == 0
        with pytest.raises(KeyError):
            bp.resolve(pause["id"], {"action": "forward"})
        await wait_until(lambda: up.finished == 1, TIMEOUT)
    assert up.received == []
    assert bp._flows == {}  # the flow's bound rules went with it


async def test_handshake_client_gone_while_paused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rules = [rule("~all", on="handshake")]
    async with setup(tmp_path, rules) as (bp, events, up, url):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection((HOST, port)) as raw:
            raw.sendall(
                b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            pause = await events.pause()
        resume = await events.resume()
        assert resume == {"type": "resume", "pause": pause["id"], "action": "gone"}
        assert bp.pauses() == []
        await wait_until(lambda: "left while a plugin held its upgrade request" in caplog.text, 5)
    assert up.handshakes == 0


# -- limits and rules --------------------------------------------------------------------------


async def test_paused_bytes_are_capped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    limits = {"max_paused_bytes": 1000}
    async with (
        setup(tmp_path, [rule("~b big")], sink, **limits) as (bp, events, up, url),
        client(url + "/a") as a,
        client(url + "/b") as b,
    ):
        await a.send("big " + "a" * 700)
        first = await events.pause()
        await b.send("big " + "b" * 700)  # 704 more would pass 1000: forwarded at once
        await wait_until(lambda: up.received, TIMEOUT)
        assert up.received == ["big " + "b" * 700]
        assert "matched but nothing more is held" in caplog.text
        assert [p["id"] for p in bp.pauses()] == [first["id"]]
        bp.resolve(first["id"], {"action": "drop"})
        await b.send("big again")  # room again: held
        second = await events.pause()
        assert second["text"] == "big again"
        bp.resolve(second["id"], {"action": "forward"})
        await wait_until(lambda: len(up.received) == 2, TIMEOUT)
    assert up.received == ["big " + "b" * 700, "big again"]


async def test_pause_count_is_capped(tmp_path: Path) -> None:
    async with (
        setup(tmp_path, [rule("~all")], sink, max_pauses=1) as (bp, events, up, url),
        client(url) as a,
        client(url) as b,
    ):
        await a.send("one")
        held = await events.pause()
        await b.send("two")
        await wait_until(lambda: up.received == ["two"], TIMEOUT)
        assert [p["id"] for p in bp.pauses()] == [held["id"]]
        bp.resolve(held["id"], {"action": "forward"})
        await wait_until(lambda: up.received == ["two", "one"], TIMEOUT)


async def test_rules_are_checked_and_announced(tmp_path: Path) -> None:
    async with setup(tmp_path, [rule("~b x", id="keep")]) as (bp, events, _, url):
        announced = await events.next("breakpoints")
        assert [r["id"] for r in announced["breakpoints"]] == ["keep"]
        with pytest.raises(FilterError) as bad:
            bp.set_rules([rule("(~u chat")])
        assert bad.value.column == 9 and "missing ')'" in str(bad.value)
        with pytest.raises(ValueError, match="direction: client or server or both, got 'up'"):
            bp.set_rules([rule("~all", direction="up")])
        assert [r["id"] for r in bp.rules()] == ["keep"]  # nothing changed
        stored = bp.set_rules([rule("~b y", enabled=False), rule("~b z", timeout=5)])
        assert [(r["id"], r["enabled"], r["timeout"]) for r in stored] == [
            ("b1", False, 60),
            ("b2", True, 5),
        ]
        async with client(url) as ws:
            await ws.send("y is disabled")
            assert await recv(ws) == "y is disabled"


async def test_bad_actions_leave_the_pause_held(tmp_path: Path) -> None:
    rules = [rule("~all", direction="client")]
    async with setup(tmp_path, rules) as (bp, events, _, url), client(url) as ws:
        await ws.send("text")
        pause = await events.pause()
        with pytest.raises(ValueError, match="must stay UTF-8"):
            bp.resolve(
                pause["id"], {"action": "forward", "base64": base64.b64encode(b"\xff").decode()}
            )
        with pytest.raises(ValueError, match="for a paused handshake"):
            bp.resolve(pause["id"], {"action": "refuse", "status": 403})
        with pytest.raises(KeyError):
            bp.resolve("p999", {"action": "forward"})
        assert [p["id"] for p in bp.pauses()] == [pause["id"]]
        bp.resolve(pause["id"], {"action": "forward"})
        assert await recv(ws) == "text"


async def test_closing_client_during_a_pause_ends_cleanly(tmp_path: Path) -> None:
    """A close frame waits behind the held message; once it is forwarded, both close."""
    async with setup(tmp_path, [rule("~all")], sink) as (bp, events, up, url):
        ws = await client(url).__aenter__()
        await ws.send("last words")
        pause = await events.pause()
        closing = asyncio.create_task(ws.close())
        bp.resolve(pause["id"], {"action": "forward"})
        await asyncio.wait_for(closing, TIMEOUT)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        closed = await up.next_close()
        assert closed.code == 1000
    assert up.received == ["last words"]


async def test_proxy_shutdown_ends_every_pause(tmp_path: Path) -> None:
    """Stopping the proxy with a message and an upgrade held: both end as gone. (The
    client's answer to the proxy's close frame waits behind the held message, so the
    session ends at --close-timeout, 1 s here.)"""
    rules = [rule("~u /hs", on="handshake"), rule("~b held", direction="client")]
    options = {"close_timeout": 1.0}
    async with setup(tmp_path, rules, sink, options=options) as (bp, events, _, url):
        ws = await client(url).__aenter__()
        await ws.send("held")
        await events.pause()
        opening = asyncio.create_task(client(url + "/hs").__aenter__())
        await events.pause()
        assert len(bp.pauses()) == 2
    # running_proxy has shut the server down
    actions = [(await events.resume())["action"] for _ in range(2)]
    assert actions == ["gone", "gone"]
    assert bp.pauses() == [] and bp.paused_bytes == 0
    with pytest.raises(InvalidMessage):  # the proxy closed without answering the upgrade
        await asyncio.wait_for(opening, TIMEOUT)
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)


async def test_rules_changed_while_connected(tmp_path: Path) -> None:
    """A new rule list applies to connections already open (their rules are bound anew)."""
    async with setup(tmp_path, [rule("~b never")]) as (bp, events, up, url), client(url) as ws:
        await ws.send("later")
        assert await recv(ws) == "later"
        bp.set_rules([rule("~b nope", direction="client"), rule("~b later", direction="client")])
        await ws.send("later again")
        pause = await events.pause()
        assert pause["rule"] == "b2" and pause["msg"]["seq"] == 3  # third message seen
        bp.resolve(pause["id"], {"action": "forward"})
        assert await recv(ws) == "later again"
    assert up.received == ["later", "later again"]


async def test_handshake_timeout_forwards_and_limits_apply(tmp_path: Path) -> None:
    rules = [rule("~u /slow", on="handshake", timeout=0.2), rule("~b held", direction="client")]
    async with (
        setup(tmp_path, rules, max_pauses=1) as (bp, events, up, url),
        client(url + "/slow") as slow,  # held 0.2 s, then forwarded
    ):
        held = await events.pause()
        assert held["on"] == "handshake"
        assert (await events.resume()) == {
            "type": "resume",
            "pause": held["id"],
            "action": "timeout:forward",
        }
        await slow.send("held")
        pause = await events.pause()
        # One pause is the limit: this upgrade matches, and goes on at once.
        async with client(url + "/slow") as fast:
            await fast.send("x")
            assert await recv(fast) == "x"
        bp.resolve(pause["id"], {"action": "forward"})
        assert await recv(slow) == "held"
    assert up.paths == ["/slow", "/slow"]


async def test_overflow_is_logged_once_per_stretch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        setup(tmp_path, [rule("~from client")], sink, max_pauses=1) as (bp, events, up, url),
        client(url) as a,
        client(url) as b,
    ):
        await a.send("held")
        pause = await events.pause()
        for text in ("one", "two", "three"):
            await b.send(text)
        await wait_until(lambda: len(up.received) == 3, TIMEOUT)
        assert caplog.text.count("nothing more is held") == 1
        bp.resolve(pause["id"], {"action": "forward"})
        await b.send("held too")
        second = await events.pause()
        await a.send("four")
        await wait_until(lambda: "four" in up.received, TIMEOUT)
        assert caplog.text.count("nothing more is held") == 2  # a new stretch, a new line
        bp.resolve(second["id"], {"action": "drop"})


class FlowSeer:
    """Keeps the flows it sees open."""

    def __init__(self) -> None:
        self.flows: list[Any] = []

    def opened(self, flow: Any) -> None:
        self.flows.append(flow)


async def test_closed_hook_ends_what_is_still_held(tmp_path: Path) -> None:
    """The safety net: ``closed(flow)`` with a pause of it still held ends it as gone (its
    message dropped) even if the hook was not cancelled first."""
    events = Events()
    bp = Breakpoints(on_event=events)
    bp.set_rules([rule("~b held", direction="client")])
    seer = FlowSeer()
    async with (
        ws_upstream(sink) as up,
        running_proxy(tmp_path, [seer, bp], up.port) as proxy,
        client(f"ws://{HOST}:{proxy.port}") as ws,
    ):
        await ws.send("held")
        pause = await events.pause()
        bp.closed(seer.flows[0])
        assert await events.resume() == {"type": "resume", "pause": pause["id"], "action": "gone"}
        await ws.send("after")
        await wait_until(lambda: up.received == ["after"], TIMEOUT)
        assert bp.paused_bytes == 0


def test_a_failing_event_callback_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("the UI is broken")

    bp = Breakpoints(on_event=broken)
    bp.set_rules([rule("~all")])
    bp.set_rules([])
    failures = [r for r in caplog.records if "on_event callback failed" in r.getMessage()]
    assert len(failures) == 1 and "the UI is broken" in caplog.text
    caplog.clear()  # expected: not an error of the proxy
    assert bp.rules() == []
    quiet = Breakpoints()  # no callback: nothing to tell
    assert quiet.set_rules([rule("~all")])[0]["id"] == "b1"


async def test_answer_to_a_peer_that_is_closing_is_not_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server closed while the client's message was held: the proxy passed its close
    frame on, so an answer to the client cannot go; the log says so, the close completes."""
    go = asyncio.Event()

    async def closer(ws: ServerConnection, up: WsUpstream) -> None:
        await go.wait()
        await ws.close(4000, "server leaves")

    async with (
        setup(tmp_path, [rule("~b question")], closer) as (bp, events, up, url),
        client(url) as ws,
    ):
        await ws.send("a question")
        pause = await events.pause()
        go.set()
        await wait_until(lambda: ws.protocol.close_rcvd is not None, TIMEOUT)
        bp.resolve(pause["id"], {"action": "answer", "text": "too late"})
        closed = await up.next_close()
        assert closed.code == 4000
        assert "the answer was not sent (the client is closing" in caplog.text
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 4000
