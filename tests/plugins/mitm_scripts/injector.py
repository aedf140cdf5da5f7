"""Answer client messages that mention a secret with an injected reply, and inject a greeting
plus ticks from a task started in ``websocket_start`` until the flow ends (mitmproxy addon style:
the calls of mitmproxy's websocket-inject-message.py example).

The greeting starts with "Hello" and every third tick carries "FOOBAR", so an addon after this
one (``watcher.py``) changes and drops injected messages.
"""

import asyncio
import logging

from mitmproxy import ctx, http

tasks = set()


def websocket_message(flow: http.HTTPFlow):
    message = flow.websocket.messages[-1]
    if message.is_text and "secret" in message.text:
        message.drop()
        ctx.master.commands.call("inject.websocket", flow, message.from_client, b"ssssssh")


async def tick(flow: http.HTTPFlow):
    ctx.master.commands.call("inject.websocket", flow, True, b"Hello from the proxy")
    n = 0
    while flow.websocket.timestamp_end is None:
        n += 1
        text = f"tick {n} FOOBAR" if n % 3 == 0 else f"tick {n}"
        ctx.master.commands.call("inject.websocket", flow, True, text.encode())
        await asyncio.sleep(0.05)
    logging.info(f"injector: ticks stopped, live={flow.live}")


def websocket_start(flow: http.HTTPFlow):
    task = asyncio.create_task(tick(flow))
    tasks.add(task)
    task.add_done_callback(tasks.remove)
