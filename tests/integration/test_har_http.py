"""A page session through a real ``python -m wsproxy -w x.har``: the page and its subresources,
a form post, a large upload and download (kept bounded), an upstream error and a WebSocket, all
in one HAR that DevTools reads, in the order they started."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.capture.harcheck import check_har
from tests.harness import HOST, StartProxy, free_port
from wsproxy.capture.reader import read_capture
from wsproxy.capture.records import Close, Connection, Frame, Http
from wsproxy.capture.replay import load
from wsproxy.flags import build_parser, options_from_args

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024
BIG = 48 * MiB
LOGO = bytes(range(256)) * 8
PAGE = b"<html><script src=/app.js?v=1></script><img src=/logo.png></html>"


@pytest.fixture
async def site() -> AsyncIterator[str]:
    """A page, its script and image, a form endpoint, a large download and upload, and a
    WebSocket echo."""

    async def page(request: web.Request) -> web.Response:
        resp = web.Response(body=PAGE, content_type="text/html")
        resp.set_cookie("sid", "abc", path="/", httponly=True)
        return resp

    async def script(request: web.Request) -> web.Response:
        return web.Response(text="console.log(1)", content_type="application/javascript")

    async def logo(request: web.Request) -> web.Response:
        return web.Response(body=LOGO, content_type="image/png")

    async def api(request: web.Request) -> web.Response:
        form = await request.post()
        return web.json_response({"got": dict(form), "cookie": request.cookies.get("sid")})

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        piece = bytes(MiB)
        for _ in range(BIG // MiB):
            await resp.write(piece)
        await resp.write_eof()
        return resp

    async def upload(request: web.Request) -> web.Response:
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
        return web.json_response({"size": size})

    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for msg in socket:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await socket.send_str(msg.data.upper())
        return socket

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/app.js", script)
    app.router.add_get("/logo.png", logo)
    app.router.add_post("/api", api)
    app.router.add_get("/big", big)
    app.router.add_post("/upload", upload)
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, HOST, 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://{HOST}:{port}"
    finally:
        await runner.cleanup()


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def by_url(entries: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    (entry,) = [e for e in entries if e["request"]["url"].endswith(suffix)]
    return entry


async def test_page_session_in_one_har(start_proxy: StartProxy, site: str, tmp_path: Path) -> None:
    har = tmp_path / "session.har"
    proxy = await start_proxy("-w", str(har))
    gone = f"http://{HOST}:{free_port()}/gone"  # nothing listens there: 502
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address host
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        for url in ("/", "/app.js?v=1", "/logo.png"):
            async with session.get(site + url, proxy=proxy.url) as resp:
                assert resp.status == 200
                await resp.read()
        form = {"user": "ann", "note": "a b&c"}
        async with session.post(site + "/api", data=form, proxy=proxy.url) as resp:
            assert (await resp.json()) == {"got": form, "cookie": "abc"}
        ws_url = site.replace("http://", "ws://") + "/ws"
        async with session.ws_connect(ws_url, proxy=proxy.url) as ws:
            await ws.send_str("hello")
            assert (await ws.receive_str()) == "HELLO"
        async with session.get(gone, proxy=proxy.url) as resp:
            assert resp.status == 502
    assert await proxy.stop() == 0

    doc = json.loads(har.read_text())
    check_har(doc)
    entries = doc["log"]["entries"]
    paths = [e["request"]["url"].removeprefix(site).removeprefix(ws_url[:-3]) for e in entries]
    assert paths == ["/", "/app.js?v=1", "/logo.png", "/api", "/ws", gone]
    starts = [e["startedDateTime"] for e in entries]
    assert starts == sorted(starts)

    page = by_url(entries, ":" + site.rsplit(":", 1)[1] + "/")
    assert page["response"]["content"] == {
        "size": len(PAGE),
        "mimeType": "text/html",
        "text": PAGE.decode(),
    }
    assert page["_resourceType"] == "document" and page["serverIPAddress"] == HOST
    (cookie,) = page["response"]["cookies"]
    assert (cookie["name"], cookie["value"], cookie["httpOnly"]) == ("sid", "abc", True)
    timings = page["timings"]
    assert abs(timings["send"] + timings["wait"] + timings["receive"] - page["time"]) < 0.01

    script = by_url(entries, "/app.js?v=1")
    assert script["request"]["queryString"] == [{"name": "v", "value": "1"}]
    assert {"name": "sid", "value": "abc"} in script["request"]["cookies"]
    assert script["_resourceType"] == "script"
    logo = by_url(entries, "/logo.png")["response"]["content"]
    assert logo["encoding"] == "base64" and base64.b64decode(logo["text"]) == LOGO
    post = by_url(entries, "/api")["request"]["postData"]
    assert post["mimeType"] == "application/x-www-form-urlencoded"
    assert post["params"] == [{"name": "user", "value": "ann"}, {"name": "note", "value": "a b&c"}]

    socket = by_url(entries, "/ws")
    assert [(m["type"], m["data"]) for m in socket["_webSocketMessages"]] == [
        ("send", "hello"),
        ("receive", "HELLO"),
    ]
    failed = by_url(entries, "/gone")
    assert failed["response"]["status"] == 502 and failed["_wsproxy_answered_by"] == "proxy"
    assert failed["_wsproxy_error"]

    # The readers take it as before: replay finds the WebSocket, show prints every entry.
    records = [r for r in read_capture(har) if not isinstance(r, Frame)]
    assert [type(r) for r in records] == [Http] * 4 + [Connection, Close, Http]
    recorded, _ = load(str(har))
    assert recorded.url == ws_url and len(recorded.messages) == 2
    shown = subprocess.run(
        [sys.executable, "-m", "wsproxy", "show", str(har)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert any(f"GET {site}/logo.png 200 2.0 KiB " in line for line in shown)
    assert any(f"GET {gone} 502 (answered by the proxy) " in line for line in shown)


async def test_large_bodies_are_kept_bounded(
    start_proxy: StartProxy, site: str, tmp_path: Path
) -> None:
    har = tmp_path / "big.har"
    proxy = await start_proxy("-w", str(har))
    sent = os.urandom(MiB)

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(BIG // MiB):
            yield sent

    async with aiohttp.ClientSession() as session:
        async with session.post(site + "/upload", data=upload(), proxy=proxy.url) as resp:
            assert (await resp.json()) == {"size": BIG}
        async with session.get(site + "/big", proxy=proxy.url) as resp:
            size = 0
            async for chunk in resp.content.iter_any():
                size += len(chunk)
            assert size == BIG
    peak = peak_rss(proxy.proc.pid)
    assert peak < 100 * MiB, f"the proxy peaked at {peak // MiB} MiB"
    assert await proxy.stop() == 0

    doc = json.loads(har.read_text())
    check_har(doc)
    up, down = doc["log"]["entries"]
    post = up["request"]["postData"]
    assert up["request"]["bodySize"] == BIG and up["_wsproxy_truncated"] is True
    assert post["encoding"] == "base64" and base64.b64decode(post["text"]) == sent
    assert "1048576 of 50331648 bytes" in post["comment"]
    content = down["response"]["content"]
    assert content["size"] == BIG and down["response"]["bodySize"] == BIG
    assert content["text"] == "\0" * MiB  # chunk framing removed, the first 1 MiB kept
    journal = [json.loads(line) for line in har.with_name("big.har.jsonl").read_text().splitlines()]
    bodies = [(r["request_body"], r["response_body"]) for r in journal if r["type"] == "http"]
    assert [(a["size"], a["kept"], b["size"], b["kept"]) for a, b in bodies] == [
        (BIG, MiB, 18, 18),  # {"size": 50331648}
        (0, 0, BIG, MiB),
    ]


async def test_jsonl_records_http_only_when_asked(
    start_proxy: StartProxy, site: str, tmp_path: Path
) -> None:
    plain, asked = tmp_path / "plain.jsonl", tmp_path / "asked.jsonl"
    quiet = await start_proxy("-w", str(plain))
    chosen = await start_proxy("-w", str(asked), "--capture-http", "--capture-filter", "logo")
    async with aiohttp.ClientSession() as session:
        for proxy in (quiet, chosen):
            for url in ("/app.js", "/logo.png"):
                async with session.get(site + url, proxy=proxy.url) as resp:
                    await resp.read()
    for proxy in (quiet, chosen):
        assert await proxy.stop() == 0
    assert [r for r in read_capture(plain) if isinstance(r, Http)] == []
    (record,) = [r for r in read_capture(asked) if isinstance(r, Http)]
    assert (record.url, record.status, record.response_body) == (site + "/logo.png", 200, LOGO)
    assert record.client is not None and record.client.startswith(HOST)
    assert record.wait is not None and 0 <= record.wait <= record.duration


def test_flags() -> None:
    def http(*argv: str) -> bool | None:
        return options_from_args(build_parser().parse_args(list(argv))).capture_http

    assert http() is None  # by format: HAR on, JSONL off
    assert http("--capture-http") is True
    assert http("--no-capture-http") is False
