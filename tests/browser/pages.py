"""The browsers' test page and its servers: an https page that echoes messages over ws:// and
wss:// and POSTs what came back; shared by the Chromium and the Firefox tests."""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import trustme
from aiohttp import web

from tests.browser.harness import TEST_HOSTS, BrowserProcess
from tests.harness import HOST, ProxyProcess, WsUpstream, launch, ws_upstream

BIG = 70_000  # needs the 64-bit extended payload length
REPORT_TIMEOUT = 60.0  # seconds for the page to report back

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>wsproxy browser test</title></head>
<body><pre id="out">running</pre>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const token = params.get("token");
const messages = [token + " hello", token + " \\u00fcn\\u00efc\\u00f6d\\u00e9 \\u2713"];
messages.push((token + " big ").padEnd(Number(params.get("big")), "B"));

function roundTrip(url) {
  return new Promise((resolve) => {
    const got = [];
    const finish = (value) => { clearTimeout(timer); resolve(value); };
    const timer = setTimeout(() => finish("timeout; got " + JSON.stringify(got)), 20000);
    let ws;
    try { ws = new WebSocket(url); } catch (e) { finish("exception: " + e); return; }
    ws.onopen = () => { for (const m of messages) ws.send(m); };
    ws.onmessage = (event) => {
      got.push(event.data);
      if (got.length === messages.length) { ws.close(1000); finish(got); }
    };
    ws.onerror = () => finish("error event (handshake or TLS failed?)");
    ws.onclose = (e) => finish("closed early: " + e.code + "; got " + JSON.stringify(got));
  });
}

(async () => {
  const results = {sent: messages};
  for (const url of params.getAll("ws")) results[url] = await roundTrip(url);
  const body = JSON.stringify(results);
  document.getElementById("out").textContent = body;
  await fetch("/report", {method: "POST", body: body});
})();
</script></body></html>
"""


@dataclass
class Servers:
    page_port: int = 0
    ws_port: int = 0
    wss_port: int = 0
    reports: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    echoes: list[WsUpstream] = field(default_factory=list)  # the ws:// and wss:// ones

    @property
    def ws_paths(self) -> list[str]:
        return [path for echo in self.echoes for path in echo.paths]

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.ws_port}/echo"

    @property
    def wss_url(self) -> str:
        return f"wss://{HOST}:{self.wss_port}/echo"

    def page_url(self, token: str) -> str:
        query = urlencode(
            [("token", token), ("big", str(BIG)), ("ws", self.ws_url), ("ws", self.wss_url)]
        )
        return f"https://{HOST}:{self.page_port}/?{query}"


@asynccontextmanager
async def serve_pages(upstream_ca: trustme.CA) -> AsyncIterator[Servers]:
    """The https page server (aiohttp), a ws:// echo and a wss:// echo (websockets)."""
    state = Servers()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    upstream_ca.issue_cert(HOST, "localhost").configure_cert(tls)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html", charset="utf-8")

    async def report(request: web.Request) -> web.Response:
        state.reports.put_nowait(json.loads(await request.text()))
        return web.Response(text="thanks")

    async def nothing(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_post("/report", report)
    app.router.add_get("/favicon.ico", nothing)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, ssl_context=tls)
    await site.start()
    assert isinstance(site._server, asyncio.Server)
    state.page_port = int(site._server.sockets[0].getsockname()[1])

    try:
        async with (
            ws_upstream(max_size=2**24) as ws_echo,
            ws_upstream(ssl=tls, max_size=2**24) as wss_echo,
        ):
            state.echoes = [ws_echo, wss_echo]
            state.ws_port, state.wss_port = ws_echo.port, wss_echo.port
            yield state
    finally:
        await runner.cleanup()


@dataclass
class Run:
    result: dict[str, Any]  # what the page reported
    token: str
    log: str  # the proxy's
    code: int  # the proxy's exit code
    elapsed: float  # from the browser's start to the report


# Starts a browser on the page URL through the running proxy (the page's token is in the URL).
StartBrowser = Callable[[ProxyProcess, str], BrowserProcess]


async def run_through_proxy(
    servers: Servers,
    upstream_ca_file: Path,
    tmp_path: Path,
    start: StartBrowser,
    *,
    socks5: bool = False,
    verbose: bool = True,
) -> Run:
    """A fresh proxy (``socks5``: a ``--mode socks5`` one; ``verbose``: at -v, frames
    recorded, else quiet, the way a user runs it by default), a browser ``start`` opens on
    the test page once the proxy wrote its CA, and what the page reported; the browser and
    the proxy are stopped on every path."""
    mode = ["--mode", "socks5"] if socks5 else []
    args = [*mode, "--upstream-ca", str(upstream_ca_file)]
    proxy = await launch(args, tmp_path / "confdir", tmp_path, verbose=verbose)
    browser: BrowserProcess | None = None
    try:
        assert proxy.ca_cert.is_file(), f"no CA at {proxy.ca_cert}\n{proxy.stderr()}"
        token = os.urandom(4).hex()
        started = time.monotonic()
        browser = start(proxy, servers.page_url(token))
        try:
            result = await asyncio.wait_for(servers.reports.get(), REPORT_TIMEOUT)
        except TimeoutError:
            raise AssertionError(
                f"the page never reported back\n--- proxy ---\n{proxy.stderr()}"
                f"\n--- browser ---\n{browser.log()[-3000:]}"
            ) from None
        elapsed = time.monotonic() - started
    finally:
        if browser is not None:
            browser.stop()
        code = await proxy.stop()
    return Run(result, token, proxy.stderr(), code, elapsed)


def frame_lines(log: str, conn_id: str, arrow: str, text: str) -> list[str]:
    """Log lines of connection ``conn_id`` in direction ``arrow`` previewing ``text``."""
    prefix = f"[{conn_id}] {arrow} "
    start = text[:40]
    return [line for line in log.splitlines() if prefix in line and start in line]


def conn_id_of(log: str, request: str) -> str:
    """The ``cN`` of the connection whose request line logged ``request``."""
    for line in log.splitlines():
        if request in line and "] " in line:
            return line.split("[", 1)[1].split("]", 1)[0]
    raise AssertionError(f"{request!r} not in the proxy log\n{log}")


REQUEST_LINE = re.compile(r"^\S+ \[c\d+\] \S+ ([A-Z]+) (\S+)$")


def requested(log: str) -> list[tuple[str, str, int | None]]:
    """(method, host, port) of every CONNECT and request line in the proxy's log."""
    out = []
    for line in log.splitlines():
        match = REQUEST_LINE.match(line)
        if match is None:
            continue
        method, target = match.groups()
        parts = urlsplit(target if method != "CONNECT" else f"//{target}")
        out.append((method, parts.hostname or "", parts.port))
    return out


def assert_echoed(result: dict[str, Any], token: str, log: str, servers: Servers) -> None:
    """The page sent its three messages and got each back, in order, over ws:// and wss://,
    both echoes reached at /echo."""
    sent = result["sent"]
    assert sent[0] == f"{token} hello"
    assert sent[1] == f"{token} ünïcödé ✓"
    assert len(sent) == 3 and len(sent[2]) == BIG
    assert result[servers.ws_url] == sent, log[-3000:]
    assert result[servers.wss_url] == sent, log[-3000:]
    assert servers.ws_paths == ["/echo", "/echo"]


def assert_frames_logged(log: str, servers: Servers, sent: list[str]) -> None:
    """The proxy's -v log shows every message both ways on the ws:// and the wss://
    connection: the frames went through it."""
    for url in (servers.ws_url, servers.wss_url):
        conn_id = conn_id_of(log, f"GET {url}")
        for text in sent:
            for arrow in ("client -> server", "server -> client"):
                assert frame_lines(log, conn_id, arrow, text), (
                    f"{url}: no {arrow} frame for {text[:40]!r}\n{log}"
                )


def assert_only_test_requests(log: str, servers: Servers) -> None:
    """Every CONNECT and request the proxy logged is the test's: none of the browser's own,
    and no failed lookup or connection."""
    ours = {servers.page_port, servers.ws_port, servers.wss_port}
    seen = requested(log)
    assert ("CONNECT", HOST, servers.page_port) in seen, log
    foreign = [r for r in seen if r[1] not in TEST_HOSTS or r[2] not in ours]
    assert foreign == [], log
    assert "cannot connect to" not in log, log


def assert_socks5_tunnels(log: str, servers: Servers) -> None:
    """In --mode socks5, the tunnels are the test's three (the page and both echoes)."""
    tunnels = set(re.findall(r"SOCKS5 CONNECT (\S+)", log))
    ours = {f"{HOST}:{port}" for port in (servers.page_port, servers.ws_port, servers.wss_port)}
    assert tunnels == ours, log


def assert_proxy_clean(log: str, code: int) -> None:
    """No traceback in the proxy's log, and a clean exit."""
    assert "Traceback" not in log, log
    assert code == 0, f"the proxy exited with {code}\n{log}"
