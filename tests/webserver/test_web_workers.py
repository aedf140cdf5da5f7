"""``wsproxy-web --workers 2`` end to end: one UI process, two worker processes on one port,
real clients and an echo server; the UI's API sees and acts on every worker's connections."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.harness import HOST, WebProcess, WsUpstream, alive, wait_until, ws_upstream
from tests.webserver.ui import Ui, eventually, ui_client

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT: Linux"),
]

CONNECTED = re.compile(r"web UI: worker (\d+)/2 (?:restarted, )?connected \(pid (\d+)\)")


def worker_pids(proc: WebProcess) -> dict[int, int]:
    """Each worker's pid as the UI process last logged it connecting."""
    return {int(i): int(pid) for i, pid in CONNECTED.findall(proc.stderr())}


@contextlib.asynccontextmanager
async def both_workers(
    proc: WebProcess, up: WsUpstream, ui: Ui
) -> AsyncIterator[dict[str, tuple[dict[str, Any], ClientConnection]]]:
    """WebSockets through the proxy until the UI lists some of each worker (the kernel spreads
    new connections by a hash of their addresses: a few dozen reach both all but surely);
    by connection id: its CONN and the client's side of it."""
    clients: list[ClientConnection] = []
    try:
        for n in range(200):
            ws = await connect(f"{up.url}/n{n}", proxy=f"http://{HOST}:{proc.port}")
            clients.append(ws)
            await ws.send(f"m{n}")
            assert await asyncio.wait_for(ws.recv(), 10) == f"m{n}"
            conns = (await ui.get("/api/connections"))["connections"]
            if n >= 5 and {c["worker"] for c in conns} == {1, 2}:
                break
        else:
            raise AssertionError(f"200 connections, not both workers\n{proc.describe()}")

        async def listed() -> list[dict[str, Any]]:
            return list((await ui.get("/api/connections"))["connections"])

        conns = await eventually(
            listed,
            lambda cs: (
                len(cs) == len(clients) and all(c["counts"]["server"]["messages"] == 1 for c in cs)
            ),
            "every connection with its echo",
        )
        by_path = {c["url"].rsplit("/", 1)[1]: c for c in conns}
        yield {by_path[f"n{n}"]["id"]: (by_path[f"n{n}"], ws) for n, ws in enumerate(clients)}
    finally:
        for ws in clients:
            with contextlib.suppress(Exception):
                await ws.close()


async def test_one_ui_sees_and_acts_on_the_connections_of_both_workers(start_web: Any) -> None:
    proc = await start_web("--workers", "2")
    async with ws_upstream() as up, ui_client(proc) as ui:
        await wait_until(lambda: len(worker_pids(proc)) == 2, 10, "both workers connected")
        updates = await ui.updates()
        async with both_workers(proc, up, ui) as conns:
            for conn_id, (conn, _) in conns.items():
                assert conn_id.startswith(f"w{conn['worker']}-c"), conn
                assert conn["state"] == "open"
            on = {w: [i for i, (c, _) in conns.items() if c["worker"] == w] for w in (1, 2)}
            second, first = on[2][0], on[1][0]
            page = await ui.get(f"/api/connections/{second}/messages")
            n = conns[second][0]["url"].rsplit("/n", 1)[1]
            shown = [(m["from"], m["preview"]) for m in page["messages"]]
            assert shown == [("client", f"m{n}"), ("server", f"m{n}")]

            # Compose into a connection of worker 2: the echo server gets it, echoes it.
            client = conns[second][1]
            await ui.post(f"/api/connections/{second}/send", {"to": "server", "text": "composed"})
            assert await asyncio.wait_for(client.recv(), 10) == "composed"
            assert "composed" in up.received

            # A breakpoint set once holds in every worker; resolved from the UI.
            rules = [{"filter": "~b secret", "direction": "client", "timeout": 30}]
            await ui.status("PUT", "/api/breakpoints", json={"breakpoints": rules})
            await client.send("a secret")
            pause = (
                await updates.wait_event(
                    lambda e: e["type"] == "pause" and e["pause"]["conn"] == second, "a pause"
                )
            )["pause"]
            assert pause["id"].startswith("w2-") and pause["text"] == "a secret"
            assert [p["id"] for p in (await ui.get("/api/pauses"))["pauses"]] == [pause["id"]]
            await ui.post(f"/api/pauses/{pause['id']}", {"action": "forward", "text": "edited"})
            assert await asyncio.wait_for(client.recv(), 10) == "edited"
            assert "a secret" not in up.received and "edited" in up.received
            other = conns[first][1]
            await other.send("another secret")
            pause = (
                await updates.wait_event(
                    lambda e: e["type"] == "pause" and e["pause"]["conn"] == first, "a pause in 1"
                )
            )["pause"]
            assert pause["id"].startswith("w1-")
            status, answer = await ui.status(
                "POST", f"/api/pauses/{pause['id']}", json={"action": "forward", "base64": "!"}
            )
            assert status == 400, answer  # a text message is edited as text: the pause stays
            await ui.post(f"/api/pauses/{pause['id']}", {"action": "drop"})
            await other.send("after")
            assert await asyncio.wait_for(other.recv(), 10) == "after"
            assert "another secret" not in up.received

            # Worker 2 killed: its connections closed, worker 1's still listed and open.
            pids = worker_pids(proc)
            os.kill(pids[2], signal.SIGKILL)

            async def states() -> dict[str, dict[str, Any]]:
                return {c["id"]: c for c in (await ui.get("/api/connections"))["connections"]}

            listed = await eventually(
                states,
                lambda cs: all(cs[i]["state"] == "closed" for i in on[2]),
                "worker 2's connections closed",
            )
            assert all("went away" in (listed[i]["error"] or "") for i in on[2])
            assert all(listed[i]["state"] == "open" for i in on[1])
            status, _ = await ui.status(
                "POST", f"/api/connections/{second}/send", json={"to": "server", "text": "x"}
            )
            assert status == 409
            await proc.wait_log(lambda t: "worker 2/2 restarted, connected" in t, 30)
            await ui.post(f"/api/connections/{first}/send", {"to": "client", "text": "still"})
            assert await asyncio.wait_for(other.recv(), 10) == "still"
        await updates.close()

    # SIGTERM: the UI process stops its workers and itself, status 0.
    pids = worker_pids(proc)
    assert await proc.stop() == 0
    assert not proc.killed
    await wait_until(lambda: not any(alive(pid) for pid in pids.values()), 10, "workers gone")
    assert "Traceback" not in proc.stderr()
