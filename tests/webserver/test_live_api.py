"""wsproxy-web end to end: a real process, a websockets client and server through its proxy,
the UI's REST API and push channel watching and acting on the connection."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.harness import HOST, WsUpstream, free_port, wait_until, ws_upstream
from tests.integration.wsraw import RawConnection, read_head, switching_protocols
from tests.webserver.ui import eventually, ui_client
from wsproxy.capture.reader import join_frames, read_capture
from wsproxy.capture.records import Close, Connection, Frame


def proxy_url(proc: Any) -> str:
    return f"http://{HOST}:{proc.port}"


async def test_the_ui_sees_a_connection_and_its_messages_live(start_web: Any) -> None:
    proc = await start_web()
    async with ws_upstream() as up, ui_client(proc) as ui:
        updates = await ui.updates()
        async with connect(f"{up.url}/chat", proxy=proxy_url(proc)) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"
            msg = await updates.wait_event(
                lambda e: (
                    e["type"] == "msg"
                    and e["msg"]["opcode"] == "binary"
                    and e["msg"]["from"] == "server"
                ),
                "the echoed binary message pushed",
            )
            conn_id = msg["conn"]
            pushed = [e["msg"] for e in updates.events if e["type"] == "msg"]
            assert [(m["from"], m["opcode"], m["preview"]) for m in pushed] == [
                ("client", "text", "hello"),
                ("server", "text", "hello"),
                ("client", "binary", "00ff"),
                ("server", "binary", "00ff"),
            ]
            assert all(m["verdict"] == "forwarded" and m["size"] in (5, 2) for m in pushed)
            conn_events = [e["conn"] for e in updates.events if e["type"] == "conn"]
            assert conn_events[0]["url"] == f"{up.url}/chat"
            opened = next(c for c in conn_events if c["state"] != "connecting")
            assert opened["state"] == "open" and opened["error"] is None

            conns = (await ui.get("/api/connections"))["connections"]
            assert [c["id"] for c in conns] == [conn_id]
            detail = await ui.get(f"/api/connections/{conn_id}")
            assert detail["response"]["status"] == 101
            names = [k.lower() for k, _ in detail["request"]["headers"]]
            assert "sec-websocket-key" in names
            page = await ui.get(f"/api/connections/{conn_id}/messages", params={"after": "1"})
            assert [m["seq"] for m in page["messages"]] == [2, 3, 4]
            assert (page["first_seq"], page["last_seq"]) == (1, 4)
            assert await ui.bytes(f"/api/connections/{conn_id}/messages/3/content") == b"\x00\xff"
            replay = await ui.get(f"/api/connections/{conn_id}/messages/1/replay")
            assert "wsproxy replay" in replay["command"] and conn_id in replay["command"]
            chosen = await ui.get("/api/connections", params={"filter": "~u chat"})
            assert len(chosen["connections"]) == 1
            none = await ui.get("/api/connections", params={"filter": "~u nowhere"})
            assert none["connections"] == []
            status, error = await ui.status("GET", "/api/connections?filter=(~u")
            assert status == 400 and "column" in error
        await updates.wait_event(
            lambda e: e["type"] == "conn" and e["conn"]["state"] == "closed",
            "the close pushed",
        )
        await updates.close()


async def test_compose_reaches_both_real_peers(start_web: Any) -> None:
    proc = await start_web()
    async with ws_upstream() as up, ui_client(proc) as ui:
        up.echo = False
        async with connect(f"{up.url}/", proxy=proxy_url(proc)) as ws:
            await ws.send("first")
            conn = await ui.only_connection()
            path = f"/api/connections/{conn['id']}/send"
            assert await ui.post(path, {"to": "server", "text": "to the server"}) == {"ok": True}
            await wait_until(lambda: "to the server" in up.received, 10, "the server got it")
            await ui.post(path, {"to": "client", "base64": base64.b64encode(b"\x01\x02").decode()})
            assert await asyncio.wait_for(ws.recv(), 10) == b"\x01\x02"
            await ui.post(path, {"to": "client", "text": "héllo"})
            assert await asyncio.wait_for(ws.recv(), 10) == "héllo"
            messages = (await ui.get(f"/api/connections/{conn['id']}/messages"))["messages"]
            injected = [(m["from"], m["preview"]) for m in messages if m["verdict"] == "injected"]
            assert injected == [
                ("client", "to the server"),
                ("server", "0102"),
                ("server", "héllo"),
            ]
            for bad, why in (
                ({"to": "nobody", "text": "x"}, "to"),
                ({"to": "client"}, "text"),
                ({"to": "client", "base64": "!!"}, "base64"),
            ):
                status, answer = await ui.status("POST", path, json=bad)
                assert status == 400 and why in answer["error"], answer
            status, answer = await ui.status("POST", path, data=b"not json")
            assert status == 400
        await ui.connection_when(conn["id"], lambda c: c["state"] == "closed", "closed")
        status, answer = await ui.status("POST", path, json={"to": "client", "text": "late"})
        assert status == 409 and answer["error"] == "connection is not open"


async def test_close_4000_bye_is_seen_by_both_peers(start_web: Any) -> None:
    proc = await start_web()
    async with ws_upstream() as up, ui_client(proc) as ui:
        async with connect(f"{up.url}/", proxy=proxy_url(proc)) as ws:
            await ws.send("x")
            await ws.recv()
            conn = await ui.only_connection()
            path = f"/api/connections/{conn['id']}/close"
            status, answer = await ui.status("POST", path, json={"code": 1005})
            assert status == 400 and "code" in answer["error"]
            await ui.post(path, {"code": 4000, "reason": "bye", "side": "both"})
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 4000 and ws.close_reason == "bye"
        closed = await up.next_close()
        assert (closed.code, closed.reason) == (4000, "bye")

        detail = await ui.connection_when(conn["id"], lambda c: c["state"] == "closed", "closed")
        assert detail["close"]["closed_by"] == "proxy"
        messages = (await ui.get(f"/api/connections/{conn['id']}/messages"))["messages"]
        closes = [m for m in messages if m["opcode"] == "close"]
        assert {"code": 4000, "reason": "bye"} in [m["close"] for m in closes]


async def test_abort_cuts_both_connections(start_web: Any) -> None:
    proc = await start_web()
    async with ws_upstream() as up, ui_client(proc) as ui:
        async with connect(f"{up.url}/", proxy=proxy_url(proc)) as ws:
            await ws.send("x")
            await ws.recv()
            conn = await ui.only_connection()
            await ui.post(f"/api/connections/{conn['id']}/abort", {})
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1006  # no close frame: the TCP connection was cut
        closed = await up.next_close()
        assert closed.code == 1006


async def _traffic(proc: Any, up: WsUpstream) -> None:
    async with connect(f"{up.url}/export", proxy=proxy_url(proc)) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x01\x02\x03")
        assert await ws.recv() == b"\x01\x02\x03"


def _frames(path: Path) -> list[tuple[str, bytes]]:
    records = list(join_frames(read_capture(path)))
    assert any(isinstance(r, Connection) for r in records)
    return [(r.direction, r.payload) for r in records if isinstance(r, Frame) and r.opcode < 8]


async def test_export_in_every_format_reads_back(start_web: Any, tmp_path: Path) -> None:
    proc = await start_web()
    async with ws_upstream() as up, ui_client(proc) as ui:
        await _traffic(proc, up)
        conn = await ui.only_connection()
        expected = [
            ("client", b"hello"),
            ("server", b"hello"),
            ("client", b"\x01\x02\x03"),
            ("server", b"\x01\x02\x03"),
        ]
        for fmt in ("jsonl", "har", "mitm"):
            data = await ui.bytes("/api/export", format=fmt, conn=conn["id"])
            path = tmp_path / f"export.{fmt}"
            path.write_bytes(data)
            assert _frames(path) == expected, fmt
        from mitmproxy import io as mitm_io

        with open(tmp_path / "export.mitm", "rb") as f:
            flows = list(mitm_io.FlowReader(f).stream())
        assert len(flows) == 1 and flows[0].websocket is not None
        assert [m.content for m in flows[0].websocket.messages] == [p for _, p in expected]
        status, answer = await ui.status("GET", "/api/export?format=zip")
        assert status == 400 and "format" in answer["error"]
        filtered = await ui.bytes("/api/export", format="jsonl", filter="~u nowhere")
        (tmp_path / "none.jsonl").write_bytes(filtered)
        assert not any(isinstance(r, Connection) for r in read_capture(tmp_path / "none.jsonl"))


async def test_read_only_view_of_a_capture(start_web: Any, tmp_path: Path) -> None:
    capture = tmp_path / "capture.jsonl"
    proc = await start_web("-w", str(capture))
    async with ws_upstream() as up:
        await _traffic(proc, up)
        async with ui_client(proc) as ui:
            conn = await ui.only_connection()
            replay = await ui.get(f"/api/connections/{conn['id']}/messages/1/replay")
            assert str(capture) in replay["command"]
    await proc.stop()
    assert any(isinstance(r, Close) for r in read_capture(capture))
    viewer = await start_web("-r", str(capture))
    async with ui_client(viewer) as ui:
        updates = await ui.updates()
        assert updates.messages[0]["readonly"] is True
        conn = await ui.only_connection()
        assert conn["state"] == "closed"
        messages = (await ui.get(f"/api/connections/{conn['id']}/messages"))["messages"]
        data = [(m["from"], m["preview"]) for m in messages if m["opcode"] != "close"]
        assert data == [
            ("client", "hello"),
            ("server", "hello"),
            ("client", "010203"),
            ("server", "010203"),
        ]
        status, answer = await ui.status(
            "POST", f"/api/connections/{conn['id']}/send", json={"to": "client", "text": "x"}
        )
        assert status == 409 and "read-only" in answer["error"]
        await updates.close()
    assert "showing" in viewer.stderr() and "1 connection" in viewer.stderr()


async def test_bounded_history_answers_410_for_evicted_content(start_web: Any) -> None:
    proc = await start_web("--web-history", "5")
    async with ws_upstream() as up, ui_client(proc) as ui:
        up.echo = False
        async with connect(f"{up.url}/", proxy=proxy_url(proc)) as ws:
            for n in range(20):
                await ws.send(f"m{n}")
            await wait_until(lambda: len(up.received) == 20, 10, "all 20 at the server")
            conn = await ui.only_connection()
            page = await eventually(
                lambda: ui.get(f"/api/connections/{conn['id']}/messages"),
                lambda p: p["last_seq"] == 20,
                "all 20 in the UI",
            )
            assert [m["preview"] for m in page["messages"]] == [f"m{n}" for n in range(15, 20)]
            assert page["first_seq"] == 16
            status, answer = await ui.status(
                "GET", f"/api/connections/{conn['id']}/messages/3/content"
            )
            assert status == 410 and "no longer kept" in answer["error"]
            status, _ = await ui.status("GET", f"/api/connections/{conn['id']}/messages/99/content")
            assert status == 404
            assert await ui.bytes(f"/api/connections/{conn['id']}/messages/20/content") == b"m19"
            detail = await ui.get(f"/api/connections/{conn['id']}")
            assert detail["counts"]["client"]["messages"] == 20


async def test_an_upgrade_waiting_upstream_is_listed_connecting_then_open(
    start_web: Any, raw_server: Any
) -> None:
    release = asyncio.Event()

    async def hold_then_accept(conn: RawConnection) -> None:
        head = await read_head(conn.reader)
        await release.wait()
        conn.writer.write(switching_protocols(head))
        await conn.writer.drain()
        await conn.reader.read()  # until the client's close goes through

    server = await raw_server(hold_then_accept)
    proc = await start_web()
    async with ui_client(proc) as ui:
        updates = await ui.updates()

        async def dial() -> ClientConnection:
            return await connect(f"{server.url}/held", proxy=proxy_url(proc))

        client = asyncio.create_task(dial())
        try:
            pushed = await updates.wait_event(
                lambda e: e["type"] == "conn" and e["conn"]["state"] == "connecting",
                "the held upgrade pushed as connecting",
            )
            conn = pushed["conn"]
            assert conn["url"] == f"{server.url}/held"
            assert (conn["status"], conn["error"], conn["ended"]) == (None, None, None)
            listed = (await ui.get("/api/connections"))["connections"]
            assert [(c["id"], c["state"]) for c in listed] == [(conn["id"], "connecting")]
            detail = await ui.get(f"/api/connections/{conn['id']}")
            names = [k.lower() for k, _ in detail["request"]["headers"]]
            assert "sec-websocket-key" in names
            status, answer = await ui.status(
                "POST", f"/api/connections/{conn['id']}/send", json={"to": "server", "text": "x"}
            )
            assert status == 409, answer
            release.set()
            ws = await client
        finally:
            release.set()
            if not client.done():
                client.cancel()
        async with ws:
            opened = await ui.connection_when(
                conn["id"], lambda c: c["state"] == "open", "the connection open"
            )
            assert opened["status"] == 101 and opened["error"] is None
        await updates.close()


async def test_a_refused_upgrade_is_listed_closed_with_its_status(
    start_web: Any, raw_server: Any
) -> None:
    async def refuse(conn: RawConnection) -> None:
        await read_head(conn.reader)
        conn.writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno\n")
        await conn.writer.drain()

    server = await raw_server(refuse)
    proc = await start_web()
    async with ui_client(proc) as ui:
        updates = await ui.updates()
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{server.url}/private", proxy=proxy_url(proc))
        assert refused.value.response.status_code == 403
        pushed = await updates.wait_event(
            lambda e: e["type"] == "conn" and e["conn"]["state"] == "closed",
            "the refused upgrade pushed as closed",
        )
        conn = pushed["conn"]
        assert conn["url"] == f"{server.url}/private" and conn["status"] == 403
        assert conn["error"] == "upstream refused the upgrade: 403 Forbidden"
        assert conn["ended"] is not None and conn["ended"] >= conn["started"]
        detail = await ui.get(f"/api/connections/{conn['id']}")
        assert detail["state"] == "closed" and detail["response"]["status"] == 403
        assert ["Content-Length", "3"] in detail["response"]["headers"]
        status, _ = await ui.status(
            "POST", f"/api/connections/{conn['id']}/send", json={"to": "server", "text": "x"}
        )
        assert status == 409
        await updates.close()


async def test_an_upstream_that_cannot_be_reached_is_listed_with_the_connect_error(
    start_web: Any,
) -> None:
    port = free_port()
    proc = await start_web()
    async with ui_client(proc) as ui:
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://{HOST}:{port}/gone", proxy=proxy_url(proc))
        assert refused.value.response.status_code == 502
        conn = await ui.only_connection()
        conn = await ui.connection_when(
            conn["id"], lambda c: c["state"] == "closed", "the failed upgrade closed"
        )
        assert conn["url"] == f"ws://{HOST}:{port}/gone" and conn["status"] == 502
        assert conn["error"] == f"cannot connect to {HOST}:{port}: Connection refused"
