"""A worker of ``wsproxy-web --workers N`` against the UI process's end of the bridge run here
(``remote.RemoteWorkers`` feeding a ``LiveState``): a real worker process, started as its
supervisor starts it (``WSPROXY_WORKER``, ``WSPROXY_WEB_BRIDGE``), a real client and server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from tests.harness import HOST, ProxyProcess, launch, wait_until, ws_upstream
from wsproxy.sansio.bridge import BridgeReader
from wsproxy.web.live import LiveState
from wsproxy.web.livemodel import LiveConn
from wsproxy.web.remote import RemoteBreakpoints, RemoteFlow, RemoteWorkers


@contextlib.asynccontextmanager
async def ui_side() -> AsyncIterator[tuple[LiveState, RemoteWorkers, RemoteBreakpoints]]:
    live = LiveState()
    remote = RemoteWorkers(live)
    engine = RemoteBreakpoints(remote)
    events: list[dict[str, Any]] = []
    engine.on_event = events.append
    await remote.start()
    try:
        yield live, remote, engine
    finally:
        await remote.stop()


async def worker(
    remote: RemoteWorkers, tmp_path: Path, started: list[ProxyProcess], index: int = 2
) -> ProxyProcess:
    env = {
        "WSPROXY_WORKER": f"{index}/2",
        "WSPROXY_WEB_BRIDGE": str(remote.path),
        "WSPROXY_WORKER_PORTS": "{port}",
    }
    proc = await launch([], tmp_path / "confdir", tmp_path, started, module="wsproxy.web", env=env)
    await wait_until(lambda: index in remote.links, 10, f"worker {index} says hello")
    return proc


def conn_of(live: LiveState, worker: int) -> LiveConn | None:
    return next((c for c in live.conns.values() if c.worker == worker), None)


async def stopped(started: list[ProxyProcess]) -> None:
    problems = []
    for proc in started:
        problems += proc.problems(await proc.stop())
    assert not problems, "\n\n".join(problems)


async def test_a_workers_traffic_reaches_the_ui_and_its_send_goes_back(tmp_path: Path) -> None:
    started: list[ProxyProcess] = []
    try:
        async with ui_side() as (live, remote, _), ws_upstream() as up:
            assert remote.path is not None
            assert stat.S_IMODE(os.stat(remote.path.parent).st_mode) == 0o700
            assert stat.S_IMODE(os.stat(remote.path).st_mode) == 0o600
            proc = await worker(remote, tmp_path, started)
            url, proxy = f"{up.url}/chat", f"http://{HOST}:{proc.port}"
            async with connect(url, proxy=proxy, max_size=None) as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
                await ws.send(b"\x00" * 3_000_000)  # over what the UI keeps of a message
                assert len(await ws.recv()) == 3_000_000
                await wait_until(
                    lambda: (c := conn_of(live, 2)) is not None and len(c.messages) == 4,
                    10,
                    "the four messages in the UI",
                )
                conn = conn_of(live, 2)
                assert conn is not None and conn.id.startswith("w2-")
                assert conn.to_dict()["worker"] == 2 and conn.state == "open"
                texts = [(m.from_client, m.content) for m in list(conn.messages)[:2]]
                assert texts == [(True, b"hello"), (False, b"hello")]
                big = conn.messages[2]
                assert big.size == 3_000_000 and big.complete is False
                assert big.content is not None and len(big.content) == 1024 * 1024
                assert isinstance(conn.flow, RemoteFlow)
                assert await conn.flow.inject("from the UI", to_client=False)
                assert await asyncio.wait_for(ws.recv(), 10) == "from the UI"
                conn.flow.close(4000, "bye")
                await wait_until(lambda: conn.state == "closed", 10, "closed in the UI")
            assert conn.close["closed_by"] == "proxy"
            assert conn.flow is None  # nothing more to act on
    finally:
        await stopped(started)


async def test_a_pause_in_a_worker_is_resolved_from_the_ui_side(tmp_path: Path) -> None:
    started: list[ProxyProcess] = []
    try:
        async with ui_side() as (live, remote, engine), ws_upstream() as up:
            events: list[dict[str, Any]] = []
            engine.on_event = events.append
            engine.set_rules([{"filter": "~b secret", "direction": "client", "timeout": 30}])
            proc = await worker(remote, tmp_path, started)  # gets the rules as it connects
            async with connect(f"{up.url}/", proxy=f"http://{HOST}:{proc.port}") as ws:
                await ws.send("plain")
                assert await ws.recv() == "plain"
                await ws.send("a secret")
                await wait_until(engine.pauses, 10, "the pause")
                pause = engine.pauses()[0]
                assert pause["id"].startswith("w2-") and pause["conn"].startswith("w2-")
                assert pause["text"] == "a secret" and pause["msg"]["seq"] == 3
                assert {"type": "pause", "pause": pause} in events
                engine.resolve(pause["id"], {"action": "forward", "text": "edited"})
                assert await asyncio.wait_for(ws.recv(), 10) == "edited"
                await wait_until(lambda: up.received[-1:] == ["edited"], 10, "the edit sent")
                resume = {"type": "resume", "pause": pause["id"], "action": "forward"}
                await wait_until(lambda: resume in events, 10, "the resume")
                conn = live.conns[pause["conn"]]
                await wait_until(lambda: len(conn.messages) == 4, 10, "the edit in the UI")
                edited = conn.messages[2]
                assert (edited.content, edited.original, edited.verdict) == (
                    b"edited",
                    b"a secret",
                    "modified",
                )
                await ws.send("another secret")
                await wait_until(engine.pauses, 10, "the second pause")
                engine.resolve(engine.pauses()[0]["id"], {"action": "drop"})
                await ws.send("after")
                assert await asyncio.wait_for(ws.recv(), 10) == "after"
                assert "another secret" not in up.received
    finally:
        await stopped(started)


async def test_without_the_ui_process_a_worker_goes_on_proxying(tmp_path: Path) -> None:
    started: list[ProxyProcess] = []
    try:
        async with ui_side() as (live, remote, _), ws_upstream() as up:
            proc = await worker(remote, tmp_path, started)
            async with connect(f"{up.url}/", proxy=f"http://{HOST}:{proc.port}") as ws:
                await ws.send("one")
                assert await ws.recv() == "one"
                await remote.stop()
                await proc.wait_log(lambda t: "the UI process went away" in t)
                for n in range(50):
                    await ws.send(f"m{n}")
                    assert await ws.recv() == f"m{n}"
            conn = conn_of(live, 2)
            assert conn is not None and conn.state == "closed"
            assert conn.error is not None and "went away" in conn.error
            assert proc.stderr().count("the UI process went away") == 1
    finally:
        await stopped(started)


async def test_a_stuck_ui_process_neither_stalls_a_worker_nor_grows_it(tmp_path: Path) -> None:
    """The UI process accepts the bridge and then reads nothing while 38 MiB of messages go
    through: the relay keeps its pace, the worker keeps a few MiB for it and drops the rest
    (counted, the count sent once the UI process reads again)."""
    directory = tmp_path / "bridge"
    directory.mkdir(mode=0o700)
    path = directory / "bridge.sock"
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    accepted = asyncio.get_running_loop().create_future()

    async def stuck(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result((reader, writer))

    server = await asyncio.start_unix_server(stuck, path)
    started: list[ProxyProcess] = []
    try:
        env = {
            "WSPROXY_WORKER": "1/2",
            "WSPROXY_WEB_BRIDGE": str(path),
            "WSPROXY_WORKER_PORTS": "{port}",
        }
        proc = await launch([], tmp_path / "c", tmp_path, started, module="wsproxy.web", env=env)
        reader, writer = await asyncio.wait_for(accepted, 10)
        payload = b"\x01" * 65536
        async with (
            ws_upstream() as up,
            connect(f"{up.url}/", proxy=f"http://{HOST}:{proc.port}", max_size=None) as ws,
        ):
            for _ in range(300):
                await ws.send(payload)
                assert await asyncio.wait_for(ws.recv(), 10) == payload
            frames, total, items = BridgeReader(), 0, []

            async def read_until(check: Any, quiet: float = 10) -> None:
                nonlocal total
                while not check():
                    data = await asyncio.wait_for(reader.read(1 << 20), quiet)
                    assert data, "the worker closed the bridge"
                    total += len(data)
                    frames.feed(data)
                    items.extend(frames.items())

            await read_until(lambda: any(i["type"] == "handshake" for i in items))
            with contextlib.suppress(TimeoutError):  # all it kept, until it has nothing more
                await read_until(lambda: False, quiet=1)
            await ws.send("after")  # with room again: the count, then this message
            assert await ws.recv() == "after"
            await read_until(lambda: any(i["type"] == "dropped" for i in items))
        assert items[0]["type"] == "hello" and items[0]["worker"] == 1
        dropped = next(i["count"] for i in items if i["type"] == "dropped")
        kept = [i for i in items if i["type"] == "frame" and i["opcode"] != 0x1]
        assert total < 12 * 1024 * 1024, total  # of 600 * 64 KiB = 37.5 MiB recorded
        assert dropped > 0 and len(kept) + dropped >= 600
        writer.close()
    finally:
        server.close()
        await stopped(started)


async def test_a_broken_bridge_is_connected_again_and_lists_the_open_connections(
    tmp_path: Path,
) -> None:
    started: list[ProxyProcess] = []
    try:
        async with ui_side() as (live, remote, _), ws_upstream() as up:
            proc = await worker(remote, tmp_path, started)
            first_pid = remote.links[2].pid
            async with connect(f"{up.url}/", proxy=f"http://{HOST}:{proc.port}") as ws:
                await ws.send("one")
                assert await ws.recv() == "one"
                await wait_until(lambda: conn_of(live, 2) is not None, 10, "listed")
                remote.links[2].writer.close()  # the UI process drops the bridge
                await proc.wait_log(lambda t: "the UI process went away" in t)
                await wait_until(lambda: 2 in remote.links, 10, "connected again")
                assert remote.links[2].pid == first_pid
                await wait_until(
                    lambda: (c := conn_of(live, 2)) is not None and c.state == "open",
                    10,
                    "listed open again",
                )
                conn = conn_of(live, 2)
                assert conn is not None and not conn.messages  # anew: no earlier messages
                await ws.send("two")
                assert await ws.recv() == "two"
                await wait_until(lambda: len(conn.messages) == 2, 10, "the new messages")
                assert isinstance(conn.flow, RemoteFlow)
                assert await conn.flow.inject("via the new bridge", to_client=True)
                assert await asyncio.wait_for(ws.recv(), 10) == "via the new bridge"
    finally:
        await stopped(started)
