"""The cost of decoding in the ``-v`` log: proxy CPU time for 64-byte Socket.IO events with
``-v`` (decoding on, the default) and with ``-v --no-decode``, side by side in one run.

    python bench/decode_bench.py [--messages 20000] [--rounds 3]

A websockets echo server and client (in this process) talk through ``python -m wsproxy -v
--mode reverse:ws://...`` at ``/socket.io/?EIO=4&transport=websocket``; the client sends
``--messages`` events of 64 bytes (``42["chat","…",{"n":…}]``) in windows of 100 and waits for
their echoes. The figure is the proxy's CPU seconds (user + system, from /proc) for the
messages, its log going to a file; the ratio decoding / no decoding must stay at or under 2
(issue 14). Each mode runs ``--rounds`` times, alternating, and the best round counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from _common import (
    HOST,
    cpu_seconds,
    free_port,
    proc_tree,
    render,
    require_modules,
    spawn,
    stop_group,
    wait_port_sync,
)

require_modules("decode_bench.py", "websockets")

from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402

PATH = "/socket.io/?EIO=4&transport=websocket"
WINDOW = 100


def event(number: int) -> str:
    """A Socket.IO EVENT of exactly 64 bytes."""
    head = f'42["chat","",{{"n":{number}}}]'
    text = f'42["chat","{"x" * (64 - len(head))}",{{"n":{number}}}]'
    assert len(text) == 64, text
    return text


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def one_round(decode: bool, messages: int, log_dir: Path) -> float:
    async with serve(echo, HOST, 0, compression=None) as server:
        upstream = server.sockets[0].getsockname()[1]
        port = free_port()
        args = [
            sys.executable,
            "-m",
            "wsproxy",
            "-v",
            "--listen-host",
            HOST,
            "-p",
            str(port),
            "--confdir",
            str(log_dir / "confdir"),
            "--mode",
            f"reverse:ws://{HOST}:{upstream}",
        ]
        if not decode:
            args.append("--no-decode")
        with open(log_dir / f"log-{decode}.txt", "wb") as log:
            proxy = spawn(args, stdout=log, stderr=log)
            try:
                wait_port_sync(port, proxy, 30)
                async with connect(f"ws://{HOST}:{port}{PATH}", compression=None) as ws:
                    await ws.send(event(0))
                    await ws.recv()  # warmed up: the decoder is chosen
                    pids = proc_tree(proxy.pid)
                    before = cpu_seconds(pids)
                    for start in range(0, messages, WINDOW):
                        batch = [event(n) for n in range(start, min(start + WINDOW, messages))]
                        for message in batch:
                            await ws.send(message)
                        for _ in batch:
                            await ws.recv()
                    used = cpu_seconds(pids) - before
            finally:
                stop_group(proxy)
    return used


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    opts = parser.parse_args()
    best = {True: float("inf"), False: float("inf")}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(opts.rounds):
            for decode in (False, True):
                used = await one_round(decode, opts.messages, Path(tmp))
                best[decode] = min(best[decode], used)
        shown = (Path(tmp) / "log-True.txt").read_text().splitlines()
        sample = next(line for line in shown if "client -> server TEXT" in line)
    ratio = best[True] / best[False]
    rows = [
        ["-v mode", "proxy CPU s", "µs / message"],
        ["-v --no-decode", f"{best[False]:.3f}", f"{best[False] / opts.messages * 1e6:.1f}"],
        ["-v (decoding)", f"{best[True]:.3f}", f"{best[True] / opts.messages * 1e6:.1f}"],
    ]
    print(
        f"decode bench: {opts.messages} Socket.IO events of 64 B each way, best of "
        f"{opts.rounds} rounds"
    )
    print(render(rows))
    print(f"ratio decoding / no decoding: {ratio:.2f} (must be <= 2.00)")
    print(f"a decoded line: {sample}")
    if opts.json:
        print(json.dumps({"decode": best[True], "no_decode": best[False], "ratio": ratio}))
    return 0 if ratio <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
