"""The exception hierarchy of wsproxy.

::

    WsproxyError
    ├── ProtocolError        a peer broke RFC 6455/7692 after the upgrade: carries the close code
    ├── HttpError            a bad HTTP request or handshake: carries the HTTP status to answer
    │   └── HandshakeError   the WebSocket handshake itself failed (client request or upstream 101)
    ├── UpstreamError        the upstream could not be reached, reset, or timed out
    ├── TLSError             TLS could not be set up (CA files, certificates, verification)
    ├── ConfigError          a flag, option or file given by the user is invalid
    ├── PluginError          a plugin could not be loaded or misbehaved
    └── StartupError         the proxy cannot start: its address is taken, a capture cannot
                             be created

On the command line, ``ConfigError`` and ``PluginError`` exit with status 2 (the command line
is wrong, as argparse's own errors), the others with 1 (it was right, the run failed); either
way one line on stderr, never a traceback. ``os_error_text`` words an ``OSError`` for that line.

The sans-I/O core raises only ``ProtocolError`` and ``HttpError``; the asyncio shell turns them
into close frames and HTTP answers, so none of them reaches the console as a traceback.

Where they are defined: ``wsproxy.sansio`` imports only itself and the standard library, so the
classes the core raises, and the root they derive from, are defined in ``wsproxy.sansio.errors``
(``WsproxyError``, ``ProtocolError``, ``HttpError``, ``HandshakeError``) and re-exported here;
the rest are defined here. This module is the public name for all of them: import from here,
and ``isinstance`` checks against any of them hold whichever module raised the error.
"""

from __future__ import annotations

import os

from wsproxy.sansio.errors import HandshakeError, HttpError, ProtocolError, WsproxyError

__all__ = [
    "ConfigError",
    "HandshakeError",
    "HttpError",
    "PluginError",
    "ProtocolError",
    "StartupError",
    "TLSError",
    "UpstreamError",
    "WsproxyError",
]


class UpstreamError(WsproxyError):
    """The upstream server could not be reached, reset the connection or timed out."""

    def __init__(self, reason: str, status: int = 502, kind: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        # What failed, for --metrics-port: "connect", "tls" or "timeout" (504 unless told).
        self.kind = kind if kind is not None else ("timeout" if status == 504 else "connect")


class TLSError(WsproxyError):
    """TLS could not be set up: CA files, leaf certificates or upstream verification."""


class ConfigError(WsproxyError):
    """A flag, option or file given by the user is invalid."""


class PluginError(WsproxyError):
    """A plugin script could not be loaded or a plugin misbehaved."""


class StartupError(WsproxyError):
    """The proxy cannot start: it cannot listen on its address or create a capture file."""


def os_error_text(error: OSError) -> str:
    """``Address already in use``, ``Is a directory``: what went wrong, without the errno
    number and the file name (the caller says which file or address)."""
    if error.strerror:
        # asyncio's bind error puts the whole sentence in strerror; errno says it plainly.
        if error.errno and error.errno > 0:
            return os.strerror(error.errno)
        return str(error.strerror)
    return str(error) or type(error).__name__
