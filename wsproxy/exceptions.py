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

Where they are defined: ``wsproxy.sansio`` imports only itself and the standard library, so the
classes the core raises, and the root they derive from, are defined in ``wsproxy.sansio.errors``
(``WsproxyError``, ``ProtocolError``, ``HttpError``, ``HandshakeError``) and re-exported here;
the rest are defined here. This module is the public name for all of them: import from here,
and ``isinstance`` checks against any of them hold whichever module raised the error.
"""

from __future__ import annotations

from wsproxy.sansio.errors import HandshakeError, HttpError, ProtocolError, WsproxyError

__all__ = [
    "ConfigError",
    "HandshakeError",
    "HttpError",
    "PluginError",
    "ProtocolError",
    "TLSError",
    "UpstreamError",
    "WsproxyError",
]


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
