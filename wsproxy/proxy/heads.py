"""Reading one HTTP head off a peer, with the proxy's limits and a timeout."""

from __future__ import annotations

from wsproxy.exceptions import HttpError
from wsproxy.proxy.peer import Peer
from wsproxy.sansio.http11 import HeadParser, Limits, Request, Response

__all__ = ["read_head"]


async def read_head(
    peer: Peer, limits: Limits, *, response: bool = False, timeout: float | None
) -> Request | Response | None:
    """One head from ``peer``; None when it closes before sending a byte. Bytes after the
    head go back into the peer's buffer. ``timeout`` None or 0: wait as long as it takes."""
    parser = HeadParser(limits, is_response=response)
    seen = False
    if peer.buffered:  # often the whole head is here already: then no timer is armed
        seen = True
        head = parser.feed(peer.take_buffer())
        if head is not None:
            peer.unread(parser.leftover)
            return head
    deadline = peer.deadline(timeout)
    while True:
        data = await peer.read(deadline)
        if not data:
            if seen:
                raise HttpError(502 if response else 400, "connection closed mid-head")
            return None
        seen = True
        head = parser.feed(data)
        if head is not None:
            peer.unread(parser.leftover)
            return head
