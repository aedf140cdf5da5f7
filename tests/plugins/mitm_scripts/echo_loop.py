"""Answer every injected message with another one: a loop without end, as it would be in
mitmproxy. Started by a client message "loop"; each message carries 16 KiB of padding."""

from mitmproxy import ctx, http

PAD = "x" * 16384


def websocket_message(flow: http.HTTPFlow):
    message = flow.websocket.messages[-1]
    if message.from_client and message.text == "loop":
        message.drop()
        ctx.master.commands.call("inject.websocket", flow, True, _text(1))
    elif message.injected:
        n = int(message.text.split()[1]) + 1
        flow.metadata["loops"] = n
        ctx.master.commands.call("inject.websocket", flow, True, _text(n))


def _text(n: int) -> bytes:
    return f"loop {n} {PAD}".encode()
