"""Peers the namespace tests run inside their namespaces, as subprocesses
(``ip netns exec NS python -m tests.nspeer ...``): Python 3.11 has no ``os.setns``, so a
server or client in another namespace is another process. Each prints JSON lines on stdout.

* ``server --cert C --key K [--address-cert C --address-key K]``: ``tests.harness.aiohttp_app``
  on port 80 and, with TLS, 443 (``--cert`` for SNI names, ``--address-cert`` without SNI),
  on every address, plus ``GET /where`` (the Host header and peer it saw), ``GET /page``
  (a page that round-trips messages over ``?ws=URL`` WebSockets and POSTs the results to
  ``/report``), ``POST /report`` (printed as ``{"report": ...}``). Prints ``{"ready": true}``
  once it listens; runs until stdin closes.
* ``ws URL [--ca FILE] [--connect ADDRESS] [--send TEXT ...]``: a ``websockets`` client with
  no proxy; prints ``{"echo": [...], "peer_cert": ...}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
from typing import Any

from aiohttp import web
from websockets.asyncio.client import connect

from tests.harness import AioServer, aiohttp_app

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>transparent</title></head><body><script>
"use strict";
const urls = new URLSearchParams(location.search).getAll("ws");
function roundTrip(url) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve("timeout"), 20000);
    const done = (value) => { clearTimeout(timer); resolve(value); };
    const ws = new WebSocket(url);
    ws.onopen = () => ws.send("hello from " + url);
    ws.onmessage = (event) => { ws.close(1000); done(event.data); };
    ws.onerror = () => done("error event (handshake or TLS failed?)");
    ws.onclose = (e) => done("closed early: " + e.code);
  });
}
(async () => {
  const results = {page: location.href};
  for (const url of urls) results[url] = await roundTrip(url);
  await fetch("/report", {method: "POST", body: JSON.stringify(results)});
})();
</script></body></html>
"""


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def server(args: argparse.Namespace) -> None:
    app = aiohttp_app(AioServer())

    async def where(request: web.Request) -> web.Response:
        return web.json_response({"host": request.headers.get("Host"), "peer": request.remote})

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def report(request: web.Request) -> web.Response:
        say(report=await request.json())
        return web.Response(text="thanks")

    app.router.add_get("/where", where)
    app.router.add_get("/page", page)
    app.router.add_post("/report", report)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, None, 80).start()
    if args.cert:
        await web.TCPSite(runner, None, 443, ssl_context=_server_context(args)).start()
    say(ready=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    await runner.cleanup()


def _server_context(args: argparse.Namespace) -> ssl.SSLContext:
    """``--cert`` for a ClientHello that names a host (SNI), ``--address-cert`` for one that
    names none (a client connecting to an IP address)."""
    by_name = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    by_name.load_cert_chain(args.cert, args.key)
    if not args.address_cert:
        return by_name
    by_address = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    by_address.load_cert_chain(args.address_cert, args.address_key)

    def choose(tls: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        tls.context = by_name if name else by_address

    by_address.sni_callback = choose
    return by_address


async def ws_client(args: argparse.Namespace) -> None:
    kwargs: dict[str, Any] = {"proxy": None, "open_timeout": 10}
    if args.connect:
        kwargs["host"] = args.connect
    if args.url.startswith("wss://"):
        kwargs["ssl"] = ssl.create_default_context(cafile=args.ca)
    try:
        async with connect(args.url, **kwargs) as ws:
            echo = []
            for text in args.send:
                await ws.send(text)
                echo.append(await asyncio.wait_for(ws.recv(), 10))
            tls = ws.transport.get_extra_info("ssl_object")
            issuer = dict(x[0] for x in tls.getpeercert()["issuer"]) if tls else None
            say(echo=echo, issuer=issuer)
    except Exception as error:  # what went wrong is the test's to judge: print it
        say(error=f"{type(error).__name__}: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.nspeer")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("server")
    serve.add_argument("--cert")
    serve.add_argument("--key")
    serve.add_argument("--address-cert")
    serve.add_argument("--address-key")
    client = commands.add_parser("ws")
    client.add_argument("url")
    client.add_argument("--ca")
    client.add_argument("--connect")
    client.add_argument("--send", nargs="*", default=["hello", "wörld"])
    args = parser.parse_args()
    asyncio.run(server(args) if args.command == "server" else ws_client(args))


if __name__ == "__main__":
    main()
