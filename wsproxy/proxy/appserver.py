"""An aiohttp application on a TCP port (the web UI, the metrics endpoint, replay's server),
listening the way the proxy's own ports do.

aiohttp's ``TCPSite`` makes its server with ``loop.create_server``: on uvloop that accepts in
libuv, which at EMFILE closes waiting clients without a word (``wsproxy.proxy.acceptor``). So
the runner's request handler (``AppRunner.server``, a protocol factory) is served through
``acceptor.listen`` instead, and running out of descriptors is one warning on every loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from wsproxy.proxy.accept import AcceptWatch
from wsproxy.proxy.acceptor import Acceptor, listen


class AppServer:
    """``app`` served on one address from ``start`` until ``stop``."""

    def __init__(self, app: web.Application, **runner_options: Any) -> None:
        self.runner = web.AppRunner(app, handle_signals=False, **runner_options)
        self._server: asyncio.Server | Acceptor | None = None
        self._accepts = AcceptWatch()

    async def start(self, host: str | None, port: int) -> int:
        """Listen and serve; the port bound (port 0 picks one). OSError when the address
        cannot be had (nothing is left running then)."""
        await self.runner.setup()
        handler = self.runner.server
        assert handler is not None  # setup made it
        try:
            self._server = await listen(handler, host, port, self._accepts)
            await self._server.start_serving()
        except BaseException:
            if self._server is not None:
                self._server.close()
                self._server = None
            await self.runner.cleanup()
            raise
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening, then close the connections and the app (aiohttp's shutdown)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        await self.runner.cleanup()
