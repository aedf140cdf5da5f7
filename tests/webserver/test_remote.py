"""The UI process's end of the bridge (``remote.RemoteWorkers``) against a worker played by the
test over the real Unix socket: ids, the worker field, and every way a worker's connection
can go wrong (one log line each, its connections closed, never a traceback)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.harness import wait_until
from wsproxy.sansio.bridge import BridgeReader, encode
from wsproxy.web import remote as remote_module
from wsproxy.web.live import LiveState
from wsproxy.web.remote import RemoteBreakpoints, RemoteWorkers

HANDSHAKE = {
    "type": "handshake",
    "conn": "w1-c1",
    "ts": 1.0,
    "client": "127.0.0.1:5000",
    "url": "ws://example.test/chat",
    "request_headers": [["Host", "example.test"]],
    "status": 101,
    "response_headers": [],
    "subprotocol": None,
    "extensions": [],
}


def frame(conn: str, payload: bytes, **more: Any) -> dict[str, Any]:
    return {
        "type": "frame",
        "conn": conn,
        "ts": 2.0,
        "from_client": True,
        "opcode": 1,
        "message_opcode": 1,
        "fin": True,
        "length": len(payload),
        "size": len(payload),
        "payload": payload,
        "verdict": "forwarded",
        "offset": 0,
        "more": False,
        **more,
    }


@contextlib.asynccontextmanager
async def ui_end() -> AsyncIterator[tuple[LiveState, RemoteWorkers, RemoteBreakpoints]]:
    live = LiveState()
    workers = RemoteWorkers(live)
    engine = RemoteBreakpoints(workers)
    path = await workers.start()
    try:
        yield live, workers, engine
    finally:
        await workers.stop()
        assert not path.exists() and not path.parent.exists()


async def fake_worker(
    workers: RemoteWorkers, index: int = 1, pid: int = 4242
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert workers.path is not None
    reader, writer = await asyncio.open_unix_connection(workers.path)
    hello = {"type": "hello", "worker": index, "count": 2, "pid": pid, "tag": f"w{index}"}
    writer.write(encode(hello))
    await wait_until(lambda: index in workers.links, 5, "the hello taken")
    return reader, writer


async def test_items_of_a_worker_become_connections_with_their_worker() -> None:
    async with ui_end() as (live, workers, _):
        _, writer = await fake_worker(workers)
        writer.write(encode(HANDSHAKE))
        # A worker whose ids do not name it yet: the UI prefixes them.
        writer.write(encode({**HANDSHAKE, "conn": "c9", "type": "connecting"}))
        writer.write(encode(frame("w1-c1", b"hi")))
        writer.write(encode(frame("w1-c1", b"x" * 10, size=5_000_000)))
        writer.write(encode(frame("nobody", b"ignored")))
        failed = {"type": "failed", "conn": "c9", "status": 502, "error": "refused"}
        writer.write(encode({**failed, "response_headers": [], "ts": 3.0}))
        await wait_until(lambda: "w1-c9" in live.conns and live.conns["w1-c9"].error, 5, "all")
        conn = live.conns["w1-c1"]
        assert conn.to_dict()["worker"] == 1 and conn.state == "open"
        assert [(m.content, m.size) for m in conn.messages] == [(b"hi", 2), (b"x" * 10, 5_000_000)]
        failed_conn = live.conns["w1-c9"].to_dict()
        assert (failed_conn["state"], failed_conn["status"]) == ("closed", 502)
        writer.close()


async def test_a_send_to_a_worker_that_does_not_answer_is_not_ok(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(remote_module, "REPLY_TIMEOUT", 0.2)
    async with ui_end() as (live, workers, _):
        reader, writer = await fake_worker(workers)
        writer.write(encode(HANDSHAKE))
        await wait_until(lambda: "w1-c1" in live.conns, 5, "listed")
        flow: Any = live.conns["w1-c1"].flow
        assert await flow.inject("hello", to_client=False) is False
        frames = BridgeReader()
        frames.feed(await reader.read(65536))
        (command,) = frames.items()
        assert command["type"] == "inject" and command["conn"] == "w1-c1"
        assert command["text"] == "hello" and command["to_client"] is False
        writer.close()


@pytest.mark.parametrize(
    ("sent", "why"),
    [
        (encode({"type": "frame"}), "began with 'frame', not hello"),
        (b"\x00\x00\x00\x02ab", "too short"),
    ],
)
async def test_a_bad_start_is_one_line(
    sent: bytes, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with ui_end() as (_, workers, _):
        assert workers.path is not None
        reader, writer = await asyncio.open_unix_connection(workers.path)
        writer.write(sent)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # dropped
        assert workers.links == {}
        lines = [r.getMessage() for r in caplog.records if "bridge" in r.getMessage()]
        assert len(lines) == 1 and why in lines[0], lines
        writer.close()


async def test_silence_instead_of_a_hello_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote_module, "HELLO_TIMEOUT", 0.2)
    async with ui_end() as (_, workers, _):
        assert workers.path is not None
        reader, writer = await asyncio.open_unix_connection(workers.path)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_a_broken_worker_leaves_its_connections_closed_and_pauses_gone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "wsproxy")
    async with ui_end() as (live, workers, engine):
        events: list[dict[str, Any]] = []
        engine.on_event = events.append
        _, first = await fake_worker(workers, 1)
        _, second = await fake_worker(workers, 2, pid=5151)
        first.write(encode(HANDSHAKE))
        second.write(encode({**HANDSHAKE, "conn": "w2-c1"}))
        shape = {"id": "p1", "conn": "w2-c1", "on": "message", "text": "t", "msg": {"seq": 0}}
        second.write(encode({"type": "pause", "pause": shape}))
        await wait_until(engine.pauses, 5, "the pause")
        assert engine.pauses()[0]["id"] == "w2-p1"
        assert engine.pauses()[0]["msg"]["seq"] == 1  # the UI's own numbering
        with pytest.raises(ValueError):
            engine.resolve("w2-p1", {"action": "nope"})
        with pytest.raises(KeyError):
            engine.resolve("w2-p9", {"action": "drop"})
        second.write(b"\xff\xff\xff\xff")  # over the frame limit: the stream is lost
        await wait_until(lambda: 2 not in workers.links, 5, "worker 2 dropped")
        conn = live.conns["w2-c1"]
        assert conn.state == "closed" and "went away" in (conn.error or "")
        assert live.conns["w1-c1"].state == "open"
        assert {"type": "resume", "pause": "w2-p1", "action": "gone"} in events
        assert engine.pauses() == []
        lines = [r.getMessage() for r in caplog.records]
        assert any("bridge of worker 2 dropped" in line and "over" in line for line in lines)
        # The same worker again, a new pid: a restart.
        _, again = await fake_worker(workers, 2, pid=6262)
        assert any(
            "worker 2/2 restarted, connected (pid 6262)" in line
            for line in [r.getMessage() for r in caplog.records]
        )
        for writer in (first, second, again):
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
