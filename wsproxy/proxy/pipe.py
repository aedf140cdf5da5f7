"""Two connections joined: bytes copied both ways unchanged, with backpressure, until both
end. Used for hosts that are not intercepted (``--ignore-hosts``, ``--allow-hosts``) and for
WebSockets passed through untouched (``--no-websocket``)."""

from __future__ import annotations

import asyncio

from wsproxy.proxy.peer import Peer

__all__ = ["pipe"]


async def pipe(a: Peer, b: Peer, close_timeout: float) -> None:
    """Copy until one side closes, then give the other ``close_timeout`` seconds to finish
    (a half-close is passed on as one); both are closed when it returns. Bytes already read
    into either peer's buffer go first."""
    for src, dst in ((a, b), (b, a)):
        src.on_data = dst.write
        src.on_eof = lambda _reason, dst=dst: dst.write_eof()
        dst.on_pause_writing = src.pause_reading
        dst.on_resume_writing = src.resume_reading
        pending = src.take_buffer()
        if pending:
            dst.write(pending)
        if src.at_eof:
            dst.write_eof()
    await asyncio.wait([a.closed, b.closed], return_when=asyncio.FIRST_COMPLETED)
    await asyncio.wait([a.closed, b.closed], timeout=close_timeout)
    a.close()
    b.close()
