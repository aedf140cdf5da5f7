"""Block WebSocket messages that mention a word, and tell the client (mitmproxy addon style).

* request: adds an ``X-Inspected-By`` header to the upgrade request; paths under ``/forbidden``
  are killed before they reach the server.
* response: records the upstream's status in flow.metadata.
* websocket_message: client messages containing ``blocker_word`` are dropped, and the client
  gets a text reply injected with ``inject.websocket``.
"""

import logging
import typing

from mitmproxy import ctx, http


class Blocker:
    def __init__(self):
        self.blocked = 0

    def load(self, loader):
        loader.add_option(
            name="blocker_word",
            typespec=str,
            default="secret",
            help="client messages containing this word are dropped",
        )
        loader.add_option(
            name="blocker_reply",
            typespec=typing.Optional[str],  # noqa: UP045 (mitmproxy's documented style)
            default=None,
            help="the text injected back to the client (default: a notice)",
        )

    def request(self, flow: http.HTTPFlow) -> None:
        flow.request.headers["X-Inspected-By"] = "blocker"
        if "x-remove-me" in flow.request.headers:
            del flow.request.headers["X-Remove-Me"]
        if flow.request.path.startswith("/forbidden"):
            flow.kill()

    def response(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        flow.metadata["upstream_status"] = flow.response.status_code
        flow.response.headers["X-Blocker"] = "on"

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        assert flow.websocket is not None
        message = flow.websocket.messages[-1]
        if not message.from_client or ctx.options.blocker_word.encode() not in message.content:
            return
        message.drop()
        self.blocked += 1
        reply = ctx.options.blocker_reply or f"blocked #{self.blocked}"
        ctx.master.commands.call("inject.websocket", flow, True, reply.encode(), True)
        logging.info(f"blocker: dropped {message.content!r} ({flow.metadata['upstream_status']})")


addons = [Blocker()]
