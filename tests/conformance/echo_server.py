"""A `websockets` echo server for the Autobahn|Testsuite run through wsproxy.

It echoes each message fragment by fragment (``recv_streaming``), so messages of any size and
any number of fragments come back as they went out; websockets' ``recv`` would cap a message
at 1,000 fragments and close with 1009, which is the echo server's limit, not the proxy's.

Usage: python tests/conformance/echo_server.py PORT [--no-compression]
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


async def echo(ws: ServerConnection) -> None:
    try:
        while True:
            await ws.send(ws.recv_streaming())
    except ConnectionClosed:
        pass


async def main(port: int, compression: str | None) -> None:
    async with serve(echo, "127.0.0.1", port, max_size=None, compression=compression):
        print(f"echo server on ws://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    compress = None if "--no-compression" in sys.argv else "deflate"
    asyncio.run(main(int(sys.argv[1]), compress))
