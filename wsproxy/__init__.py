"""wsproxy: a man-in-the-middle proxy to see, log, rewrite and block WebSocket traffic.

What plugin authors import lives here: the data a hook receives (``Flow``, ``Message``,
``FrameEvent``, ``HandshakeRequest``, ``HandshakeResponse``), the option declaration
(``Option``) and the exceptions. The proxy itself is run with the ``wsproxy`` command.
"""

from wsproxy.exceptions import (
    ConfigError,
    HandshakeError,
    HttpError,
    PluginError,
    ProtocolError,
    TLSError,
    UpstreamError,
    WsproxyError,
)
from wsproxy.model import (
    CloseInfo,
    Counters,
    Flow,
    FrameEvent,
    HandshakeRequest,
    HandshakeResponse,
    Message,
)
from wsproxy.plugins import Option

__version__ = "0.1.0"

__all__ = [
    "CloseInfo",
    "ConfigError",
    "Counters",
    "Flow",
    "FrameEvent",
    "HandshakeError",
    "HandshakeRequest",
    "HandshakeResponse",
    "HttpError",
    "Message",
    "Option",
    "PluginError",
    "ProtocolError",
    "TLSError",
    "UpstreamError",
    "WsproxyError",
    "__version__",
]
