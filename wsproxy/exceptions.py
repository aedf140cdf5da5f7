"""The exception hierarchy of wsproxy.

::

    WsproxyError
    ├── ProtocolError        a peer broke RFC 6455/7692 after the upgrade: carries the close code
    ├── HttpError            a bad HTTP request or handshake: carries the HTTP status to answer
    │   └── HandshakeError   the WebSocket handshake itself failed (client request or upstream 101)
    ├── UpstreamError        the upstream could not be reached, reset, or timed out
    ├── TLSError             TLS could not be set up (CA files, certificates, verification)
    ├── ConfigError          a flag, option or file given by the user is invalid
    └── PluginError          a plugin could not be loaded or misbehaved

The sans-I/O core raises only ``ProtocolError`` and ``HttpError``; the asyncio shell turns them
into close frames and HTTP answers, so none of them reaches the console as a traceback.
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


class UpstreamError(WsproxyError):
    """The upstream server could not be reached, reset the connection or timed out."""

    def __init__(self, reason: str, status: int = 502) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class TLSError(WsproxyError):
    """TLS could not be set up: CA files, leaf certificates or upstream verification."""


class ConfigError(WsproxyError):
    """A flag, option or file given by the user is invalid."""


class PluginError(WsproxyError):
    """A plugin script could not be loaded or a plugin misbehaved."""
