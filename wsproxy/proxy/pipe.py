"""Two connections joined: bytes copied both ways unchanged, with backpressure, until both
end. Used for hosts that are not intercepted (``--ignore-hosts``, ``--allow-hosts``) and for
WebSockets passed through untouched (``--no-websocket``)."""

from __future__ import annotations

import asyncio

from wsproxy.proxy.peer import Peer

__all__ = ["pipe"]


async def pipe(a: Peer, b: Peer, close_timeout: float) -> None:
    """Copy until both sides have ended (each one's EOF passed on to the other as a
    half-close), or one connection is gone and the other had ``close_timeout`` seconds to
    end; both are closed when it returns. Bytes already read into either peer's buffer go
    first."""
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
    # Both EOFs seen: nothing more can come either way (the transports stay half open until
    # closed, so waiting for ``closed`` alone would keep a finished pipe forever).
    watched = (a.closed, b.closed, a.ended, b.ended)
    while not (a.closed.done() or b.closed.done() or (a.ended.done() and b.ended.done())):
        waiting = [f for f in watched if not f.done()]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    unfinished = [f for f in (a.ended, b.ended) if not f.done()]
    if unfinished:
        await asyncio.wait(unfinished, timeout=close_timeout)
    a.close()
    b.close()
