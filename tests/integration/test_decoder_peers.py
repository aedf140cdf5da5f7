"""Decoders against real peers of each protocol through a real ``python -m wsproxy -v``:
python-socketio's server with its Python client and with the Socket.IO JavaScript client
(node), strawberry's graphql-transport-ws server with gql's client, and a JSON-RPC server on
websockets. The ``-v`` lines, a rewrite rule on a Socket.IO event's arguments as the real
server sees them, a block rule on a GraphQL operation, and ``show --decode`` of a capture."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import socketio
import strawberry
from aiohttp import web
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport
from strawberry.aiohttp.views import GraphQLView
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection

from tests.harness import HOST, ROOT, StartProxy, StartWsEcho, WsUpstream, proxy_free_env

NODE_DIR = ROOT / "tests" / "node"
NODE = shutil.which("node")


class SocketIoServer:
    """python-socketio on aiohttp: answers ``chat`` with an ack, counts ``upload`` bytes, and
    answers ``kick`` in /admin."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
        self.received: list[tuple[str, Any]] = []
        self.port = 0
        sio = self.sio

        @sio.on("chat")  # type: ignore[misc]
        async def chat(sid: str, message: Any, number: Any = None) -> Any:
            self.received.append(("chat", message))
            return {"ok": True, "echo": message}

        @sio.on("upload")  # type: ignore[misc]
        async def upload(sid: str, name: str, data: bytes) -> Any:
            self.received.append(("upload", (name, data)))
            return len(data)

        @sio.on("kick", namespace="/admin")  # type: ignore[misc]
        async def kick(sid: str, who: str) -> None:
            self.received.append(("kick", who))
            await sio.emit("kicked", who, to=sid, namespace="/admin")


@pytest.fixture
async def sio_server() -> AsyncIterator[SocketIoServer]:
    server = SocketIoServer()
    app = web.Application()
    server.sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


async def python_sio_client(url: str) -> dict[str, Any]:
    client = socketio.AsyncClient(reconnection=False)
    kicked: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    client.on("kicked", lambda who: kicked.set_result(who), namespace="/admin")
    await client.connect(url, transports=["websocket"], namespaces=["/", "/admin"])
    try:
        ack = await client.call("chat", {"text": "from python"}, timeout=10)
        size = await client.call("upload", ("py.bin", b"\x00\x01\x02\x03"), timeout=10)
        await client.emit("kick", "ann", namespace="/admin")
        return {"ack": ack, "size": size, "kicked": await asyncio.wait_for(kicked, 10)}
    finally:
        await client.disconnect()


def frame_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "-> " in line]


async def test_python_socketio_through_the_proxy(
    start_proxy: StartProxy, sio_server: SocketIoServer, tmp_path: Path
) -> None:
    capture = tmp_path / "sio.jsonl"
    proxy = await start_proxy(
        "--mode", f"reverse:http://{HOST}:{sio_server.port}", "--preview-length", "120",
        "-w", str(capture),
    )  # fmt: skip
    got = await python_sio_client(proxy.url)
    assert got == {"ack": {"ok": True, "echo": {"text": "from python"}}, "size": 4, "kicked": "ann"}
    log = await proxy.wait_log(lambda t: t.count("WebSocket closed") >= 1)
    lines = frame_lines(log)
    expected = [
        'server -> client TEXT F len=', " engine.io open {",
        'client -> server TEXT F len=', ' socket.io CONNECT /admin',
        'client -> server TEXT F len=', ' socket.io EVENT "chat" id=1 [{…}]',
        'server -> client TEXT F len=', ' socket.io ACK id=1 [{…}]',
        'client -> server TEXT F len=',
        ' socket.io BINARY_EVENT "upload" id=2 ["py.bin", {…}] +1 attachment',
        'client -> server BINARY F len=4',
        ' socket.io BINARY_EVENT "upload" id=2 ["py.bin", <4 B>] (joined: 1 attachment)',
        'client -> server TEXT F len=', ' socket.io EVENT /admin "kick" ["ann"]',
        'server -> client TEXT F len=', ' socket.io EVENT /admin "kicked" ["ann"]',
    ]  # fmt: skip
    for arrow, summary in zip(expected[::2], expected[1::2], strict=True):
        assert any(arrow in line and summary in line for line in lines), (summary, lines)
    assert not any("engine.io message" in line for line in lines), lines  # all understood
    await proxy.stop()
    shown = await wsproxy("show", "--decode", str(capture))
    assert 'client -> server TEXT F len=34 socket.io EVENT "chat" id=1 [{…}]' in shown, shown
    assert 'BINARY F len=4 socket.io BINARY_EVENT "upload" id=2 ["p…' in shown, shown
    whole = await wsproxy("show", "--decode", "--full", str(capture))
    joined = 'BINARY_EVENT "upload" id=2 ["py.bin", <4 B>] (joined: 1 attachment)'
    assert f"BINARY F len=4 socket.io {joined}" in whole, whole
    raw = await wsproxy("show", str(capture))
    assert "socket.io EVENT" not in raw  # without --decode: the raw previews
    assert """'421["chat",""" in raw  # EVENT with ack id 1


async def test_rewrite_rule_on_event_arguments(
    start_proxy: StartProxy, sio_server: SocketIoServer, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([
        {"name": "chat-text", "direction": "client", "event": "^chat$", "value_path": "[0].text",
         "set": "rewritten by the proxy"},
        {"name": "upload-name", "event": "^upload$", "value_path": "[0]", "match": r"\.bin$",
         "replace": ".dat"},
    ]))  # fmt: skip
    proxy = await start_proxy(
        "--mode", f"reverse:http://{HOST}:{sio_server.port}", "-s", "rewrite",
        "--set", f"rewrite_rules={rules}",
    )  # fmt: skip
    got = await python_sio_client(proxy.url)
    assert got["ack"] == {"ok": True, "echo": {"text": "rewritten by the proxy"}}
    assert ("chat", {"text": "rewritten by the proxy"}) in sio_server.received
    assert ("upload", ("py.dat", b"\x00\x01\x02\x03")) in sio_server.received


async def test_socketio_javascript_client(
    start_proxy: StartProxy, sio_server: SocketIoServer
) -> None:
    if NODE is None or not (NODE_DIR / "node_modules" / "socket.io-client").is_dir():
        missing = "node or tests/node/node_modules missing: npm install --prefix tests/node"
        if os.environ.get("CI") == "true":
            pytest.fail(missing)  # tests/run.sh installs it: under CI this is a failure
        pytest.skip(missing)
    proxy = await start_proxy(
        "--mode", f"reverse:http://{HOST}:{sio_server.port}", "--preview-length", "120"
    )  # fmt: skip
    assert NODE is not None
    run = await asyncio.create_subprocess_exec(
        NODE, str(NODE_DIR / "sio_client.js"), proxy.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=NODE_DIR,
        env=proxy_free_env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(run.communicate(), 30)
    assert run.returncode == 0, err.decode()
    assert json.loads(out) == {
        "ack": {"ok": True, "echo": {"text": "from js"}}, "sizes": 3, "kicked": "bob",
    }  # fmt: skip
    assert ("upload", ("js.bin", b"\x07\x08\x09")) in sio_server.received
    # One WebSocket carries both namespaces (the JavaScript client's Manager multiplexes).
    log = await proxy.wait_log(lambda t: "WebSocket closed" in t)
    lines = frame_lines(log)
    for summary in (
        ' socket.io EVENT "chat" id=0 [{…}, 2]',
        ' socket.io BINARY_EVENT "upload" id=1 ["js.bin", {…}] +1 attachment',
        'BINARY F len=3 socket.io BINARY_EVENT "upload" id=1 ["js.bin", <3 B>]'
        " (joined: 1 attachment)",
        ' socket.io EVENT /admin "kick" ["bob"]',
    ):  # fmt: skip
        assert any(summary in line for line in lines), (summary, lines)


# -- GraphQL ---------------------------------------------------------------------------------


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def count(self, to: int) -> AsyncGenerator[int, None]:
        for number in range(1, to + 1):
            yield number


@pytest.fixture
async def graphql_port() -> AsyncIterator[int]:
    schema = strawberry.Schema(query=Query, subscription=Subscription)
    app = web.Application()
    view = GraphQLView(schema=schema, subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL])
    app.router.add_route("*", "/graphql", view)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def subscribe(url: str, query: str) -> list[Any]:
    transport = WebsocketsTransport(
        url=url, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]
    )
    async with Client(transport=transport) as session:
        return [item async for item in session.subscribe(gql(query))]


async def test_graphql_subscription_and_a_blocked_operation(
    start_proxy: StartProxy, graphql_port: int
) -> None:
    proxy = await start_proxy(
        "--mode", f"reverse:ws://{HOST}:{graphql_port}", "--preview-length", "100",
        "-s", "block", "--set", "block_operations=^Forbidden$",
    )  # fmt: skip
    url = f"ws://{HOST}:{proxy.port}/graphql"
    got = await subscribe(url, "subscription Counting { count(to: 3) }")
    assert got == [{"count": 1}, {"count": 2}, {"count": 3}]
    blocked = asyncio.ensure_future(subscribe(url, "subscription Forbidden { count(to: 2) }"))
    await proxy.wait_log(lambda t: "client: message dropped by block" in t)
    assert not blocked.done()  # the server never saw the subscription: nothing comes back
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    log = await proxy.wait_log(lambda t: t.count("WebSocket closed") >= 2)
    lines = frame_lines(log)
    pairs = [
        ("client -> server", " graphql connection_init"),
        ("server -> client", " graphql connection_ack"),
        ("client -> server", ' graphql subscribe id=1 "Counting"'),
        ("server -> client", ' graphql next id=1 "Counting" {"data": {…}}'),
        ("server -> client", ' graphql complete id=1 "Counting"'),
        ("client -> server", ' graphql subscribe id=1 "Forbidden"'),
    ]
    for arrow, summary in pairs:
        assert any(arrow in line and summary in line for line in lines), (summary, lines)


# -- JSON-RPC --------------------------------------------------------------------------------


async def json_rpc(ws: ServerConnection, up: WsUpstream) -> None:
    async for raw in ws:
        call = json.loads(raw)
        if call.get("method") == "sum":
            await ws.send(json.dumps({"jsonrpc": "2.0", "result": sum(call["params"]),
                                      "id": call["id"]}))  # fmt: skip
        else:
            error = {"code": -32601, "message": "Method not found"}
            await ws.send(json.dumps({"jsonrpc": "2.0", "error": error, "id": call.get("id")}))


async def test_json_rpc_over_websockets(
    start_proxy: StartProxy, start_ws_echo: StartWsEcho
) -> None:
    server = await start_ws_echo(json_rpc)
    proxy = await start_proxy("--preview-length", "100")
    async with connect(f"{server.url}/rpc", proxy=proxy.url) as ws:
        await ws.send('{"jsonrpc": "2.0", "method": "sum", "params": [1, 2], "id": 1}')
        assert json.loads(await ws.recv())["result"] == 3
        await ws.send('{"jsonrpc": "2.0", "method": "nope", "id": 2}')
        assert json.loads(await ws.recv())["error"]["code"] == -32601
    log = await proxy.wait_log(lambda t: "WebSocket closed" in t)
    lines = frame_lines(log)
    for summary in (
        ' jsonrpc request "sum" id=1 [1, 2]',  # compressed: "len=" is the wire's
        ' jsonrpc response "sum" id=1 3',
        'jsonrpc error "nope" id=2 {"code": -32601, "message": "Method not found"}',
    ):
        assert any(summary in line for line in lines), (summary, lines)


async def wsproxy(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wsproxy", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=proxy_free_env(), cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert not err, err.decode()
    return out.decode()
