"""A client of the web UI's API for the tests: REST with the token, and the push channel."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from tests.harness import POLL, WebProcess, wait_until

T = TypeVar("T")


async def eventually(
    fetch: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    what: str,
    timeout: float = 10,
) -> T:
    """``await fetch()`` again until ``check`` holds on its answer (an API's state that
    nothing pushes to the test); AssertionError with the last answer after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fetch()
        if check(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never held within {timeout} s: {what} (last: {value!r})")
        await asyncio.sleep(POLL)


class Updates:
    """The push channel, read in the background: every event of every batch, in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                data = json.loads(message.data)
                self.messages.append(data)
                self.events += data.get("events", [])

    async def wait_event(
        self, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 10
    ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((e for e in self.events if check(e)), None)

        result = await wait_until(found, timeout, what)
        assert result is not None
        return result

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class Ui:
    """REST calls on one wsproxy-web, with its token."""

    def __init__(self, proc: WebProcess, session: aiohttp.ClientSession) -> None:
        self.proc = proc
        self.session = session
        self.auth = {"Authorization": f"Bearer {proc.token}"}

    async def get(self, path: str, **kwargs: Any) -> Any:
        async with self.session.get(self.proc.ui + path, headers=self.auth, **kwargs) as r:
            assert r.status == 200, f"GET {path}: {r.status} {await r.text()}"
            return await r.json()

    async def status(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        async with self.session.request(
            method, self.proc.ui + path, headers=headers, **kwargs
        ) as r:
            body = await r.read()
            try:
                return r.status, json.loads(body)
            except ValueError:
                return r.status, body

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        status, answer = await self.status("POST", path, json=body)
        assert status == 200, f"POST {path}: {status} {answer}"
        return answer

    async def bytes(self, path: str, **params: str) -> bytes:
        async with self.session.get(self.proc.ui + path, headers=self.auth, params=params) as r:
            assert r.status == 200, f"GET {path}: {r.status} {await r.text()}"
            return await r.read()

    async def updates(self) -> Updates:
        ws = await self.session.ws_connect(f"{self.proc.ui}/api/updates?token={self.proc.token}")
        updates = Updates(ws)
        await wait_until(lambda: updates.messages, 10, "the hello")
        assert updates.messages[0]["type"] == "hello"
        return updates

    async def only_connection(self, kind: str = "websocket") -> dict[str, Any]:
        """The last connection of ``kind``, once there is one."""

        async def of_kind() -> list[dict[str, Any]]:
            conns = (await self.get("/api/connections"))["connections"]
            return [c for c in conns if c["kind"] == kind]

        return (await eventually(of_kind, bool, f"a {kind} connection in the UI"))[-1]

    async def connection_when(
        self, conn_id: str, check: Callable[[dict[str, Any]], bool], what: str
    ) -> dict[str, Any]:
        return await eventually(lambda: self.get(f"/api/connections/{conn_id}"), check, what)


@contextlib.asynccontextmanager
async def ui_client(proc: WebProcess) -> AsyncIterator[Ui]:
    async with aiohttp.ClientSession() as session:
        yield Ui(proc, session)
