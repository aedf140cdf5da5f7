"""The breakpoints through wsproxy-web's API: rules set with PUT, the pause pushed to the page,
resolved with POST, the real server getting the edited message."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import connect

from tests.harness import HOST, wait_until, ws_upstream
from tests.webserver.ui import ui_client


async def test_a_paused_message_is_pushed_edited_and_forwarded(start_web: Any) -> None:
    proc = await start_web()
    async with ws_upstream() as up, ui_client(proc) as ui:
        updates = await ui.updates()
        rules = [{"filter": "~b secret", "direction": "client", "timeout": 30}]
        status, answer = await ui.status("PUT", "/api/breakpoints", json={"breakpoints": rules})
        assert status == 200, answer
        stored = answer["breakpoints"]
        assert stored[0]["filter"] == "~b secret" and stored[0]["id"]
        assert (await ui.get("/api/breakpoints"))["breakpoints"] == stored
        await updates.wait_event(lambda e: e["type"] == "breakpoints", "the rule list pushed")
        async with connect(f"{up.url}/", proxy=f"http://{HOST}:{proc.port}") as ws:
            await ws.send("a secret")
            pause = (await updates.wait_event(lambda e: e["type"] == "pause", "a pause"))["pause"]
            assert pause["text"] == "a secret" and pause["from"] == "client"
            assert (await ui.get("/api/pauses"))["pauses"][0]["id"] == pause["id"]
            assert up.received == []
            await ui.post(f"/api/pauses/{pause['id']}", {"action": "forward", "text": "edited"})
            assert await asyncio.wait_for(ws.recv(), 10) == "edited"
            await updates.wait_event(
                lambda e: e["type"] == "resume" and e["pause"] == pause["id"], "the resume"
            )
            await wait_until(lambda: up.received == ["edited"], 10, "the server got the edit")
            msg = await updates.wait_event(
                lambda e: e["type"] == "msg" and e["msg"]["verdict"] == "modified",
                "the modified message pushed",
            )
            assert msg["msg"]["preview"] == "edited"
            assert msg["msg"]["original_preview"] == "a secret"
            status, answer = await ui.status(
                "POST", f"/api/pauses/{pause['id']}", json={"action": "forward"}
            )
            assert status == 404
        await updates.close()


async def test_a_bad_rule_is_400_with_its_column(start_web: Any) -> None:
    proc = await start_web()
    async with ui_client(proc) as ui:
        status, answer = await ui.status(
            "PUT", "/api/breakpoints", json={"breakpoints": [{"filter": "(~u chat"}]}
        )
        assert status == 400 and answer["column"] == 9, answer
        status, answer = await ui.status(
            "PUT", "/api/breakpoints", json={"breakpoints": [{"filter": "~u a", "on": "x"}]}
        )
        assert status == 400 and "on" in answer["error"]
        status, answer = await ui.status("PUT", "/api/breakpoints", json={"breakpoints": 3})
        assert status == 400
        status, answer = await ui.status("POST", "/api/pauses/p404", json={"action": "drop"})
        assert status == 404
        assert (await ui.get("/api/breakpoints"))["breakpoints"] == []
