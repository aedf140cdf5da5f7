"""Log every WebSocket message and count them per direction (mitmproxy addon style).

Run with: mitmdump -s count_messages.py   (or: wsproxy -s count_messages.py)
"""

from mitmproxy import ctx, http

counts = {"client": 0, "server": 0}


def load(loader):
    loader.add_option(
        name="count_label",
        typespec=str,
        default="count",
        help="word that starts every log line",
    )


def configure(updated):
    if "count_label" in updated:
        ctx.log.info(f"count_messages configured: label={ctx.options.count_label}")


def running():
    ctx.log.info("count_messages running")


def websocket_start(flow: http.HTTPFlow):
    ctx.log.info(f"{ctx.options.count_label} start {flow.request.pretty_url}")


def websocket_message(flow: http.HTTPFlow):
    assert flow.websocket is not None
    message = flow.websocket.messages[-1]
    side = "client" if message.from_client else "server"
    counts[side] += 1
    kind = message.type.name
    ctx.log.info(
        f"{ctx.options.count_label} {side} #{counts[side]} {kind} {message.content!r} "
        f"total={len(flow.websocket.messages)}"
    )


def websocket_end(flow: http.HTTPFlow):
    assert flow.websocket is not None
    ctx.log.info(
        f"{ctx.options.count_label} end code={flow.websocket.close_code} "
        f"by_client={flow.websocket.closed_by_client} "
        f"client={counts['client']} server={counts['server']}"
    )


def done():
    ctx.log.info("count_messages done")
