"""wsproxy-web stays bounded: a page that does not read loses events (dropped_events), not
the proxy's memory; 100,000 messages through one connection with a page watching."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import connect

from tests.harness import HOST, Memory, wait_until, ws_upstream
from tests.integration.wsraw import new_key, read_frame, read_response
from tests.webserver.ui import eventually, ui_client


async def test_a_page_that_does_not_read_gets_dropped_events(start_web: Any) -> None:
    proc = await start_web()
    own = f"127.0.0.1:{proc.web_port}"
    # A push-channel client that stops reading after the handshake: a small receive buffer,
    # so what the UI sends piles up on its side.
    import socket

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((HOST, proc.web_port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        (
            f"GET /api/updates?token={proc.token} HTTP/1.1\r\nHost: {own}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {new_key()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert (await read_response(reader)).status == 101
    memory = Memory(proc.proc.pid)
    count = 12_000
    text = "\U0001f600" * 200  # 200 characters, 12 bytes each as JSON: big events
    async with ws_upstream() as up, ui_client(proc) as ui:
        up.echo = False
        async with connect(f"{up.url}/", proxy=f"http://{HOST}:{proc.port}") as ws:
            for _ in range(count):
                await ws.send(text)
            await wait_until(lambda: len(up.received) == count, 60, "all at the server")
            conn = await ui.only_connection()
            await eventually(
                lambda: ui.get(f"/api/connections/{conn['id']}"),
                lambda c: c["counts"]["client"]["messages"] == count,
                "every message counted",
            )
    growth = memory.growth_kib()
    # The UI keeps 10,000 previews and contents of 800 bytes (some 10 MB) and at most
    # 8 MiB queued for this page; unbounded, the queue alone would be over 30 MB.
    assert growth < 48 * 1024, f"grew {growth} KiB"
    events: list[dict[str, Any]] = []
    while not any(e["type"] == "dropped_events" for e in events):
        frame = await asyncio.wait_for(read_frame(reader), 30)
        message = json.loads(frame.payload)
        events += message.get("events", [])
    dropped = next(e for e in events if e["type"] == "dropped_events")
    assert dropped["count"] > 0
    writer.close()


async def test_100000_messages_through_one_connection_stay_bounded(start_web: Any) -> None:
    proc = await start_web()
    count = 100_000
    warm = 1_000  # what a first connection loads on demand (decoders, ...) is not growth
    payload = "x" * 1000
    async with ws_upstream() as up, ui_client(proc) as ui:
        up.echo = False
        updates = await ui.updates()
        # With permessage-deflate these 1 KB messages are some 9 bytes on the wire: the
        # backlog behind the breakpoints' async hook counts events and what they inflate to
        # (sansio/fastpath.py EVENT_COST), and a read is parsed a mebibyte of that at a time
        # (sansio/endpoint.py READ_BUDGET); else 1 MiB of them would inflate to some 120 MB.
        proxy = f"http://{HOST}:{proc.port}"
        async with connect(f"{up.url}/", proxy=proxy) as ws:
            for n in range(warm):
                await ws.send(payload if n % 1000 else f"{n}")
            await wait_until(lambda: len(up.received) == warm, 60, "the first ones at the server")
            memory = Memory(proc.proc.pid)
            for n in range(warm, count):
                await ws.send(payload if n % 1000 else f"{n}")
            await wait_until(lambda: len(up.received) == count, 120, "all at the server")
            conn = await ui.only_connection()
            await eventually(
                lambda: ui.get(f"/api/connections/{conn['id']}"),
                lambda c: c["counts"]["client"]["messages"] == count,
                "all in the UI",
                timeout=30,
            )
            page = await ui.get(f"/api/connections/{conn['id']}/messages", params={"limit": "5"})
        # --web-history's default: the last 10,000 (pings and pongs are messages too).
        assert page["last_seq"] - page["first_seq"] + 1 == 10_000
        assert page["last_seq"] >= count
        last = page["last_seq"]
        await updates.wait_event(
            lambda e: e["type"] == "msg" and e["msg"]["seq"] >= last, "the last one pushed", 30
        )
        pushed = sum(1 for e in updates.events if e["type"] == "msg")
        dropped = sum(e["count"] for e in updates.events if e["type"] == "dropped_events")
        assert pushed + dropped >= count  # each one pushed, or counted as dropped
        await updates.close()
    growth = memory.growth_kib()
    # 10,000 kept messages of 1 KB with their previews: some 15 MB; 100 MB unbounded.
    assert growth < 48 * 1024, f"grew {growth} KiB"
