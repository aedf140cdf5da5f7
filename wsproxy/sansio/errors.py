"""The errors the sans-I/O core raises, and the root of every wsproxy error.

They live here, not in ``wsproxy.exceptions``, so that ``wsproxy.sansio`` imports only itself
and the standard library (the arrows point down: the shell depends on the core, never the
reverse). ``wsproxy.exceptions`` re-exports every class, so the hierarchy is still one tree and
``from wsproxy.exceptions import ProtocolError`` names the very class raised here.

The root ``WsproxyError`` lives here too, because the core's errors derive from it and the core
may not import upwards; the shell's own errors (upstream, TLS, config, plugins) derive from it in
``wsproxy.exceptions``.
"""

from __future__ import annotations


class WsproxyError(Exception):
    """Root of every error wsproxy raises on purpose."""


class ProtocolError(WsproxyError):
    """A peer broke the WebSocket protocol; ``code`` is the close code to send it (RFC 6455 7.4)."""

    def __init__(self, reason: str, code: int = 1002) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class HttpError(WsproxyError):
    """A request the proxy refuses; ``status`` is the HTTP status to answer with."""

    def __init__(
        self, status: int, reason: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
        self.headers = headers or []


class HandshakeError(HttpError):
    """The WebSocket opening handshake failed (SEED-NOTES sections 1-2)."""
