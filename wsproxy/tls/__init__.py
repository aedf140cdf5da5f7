"""TLS for the proxy: a mitmproxy-compatible CA, leaf certificates per host, SSL contexts.

``ca`` owns the files and signs leaves, ``contexts`` builds ``ssl.SSLContext`` objects for both
legs, ``magic`` serves the CA certificate at ``http://wsproxy.invalid/`` through the proxy.

The names below are imported on first use: ``ca`` needs ``cryptography`` (about 10 MB of a
process's memory), which a run that never intercepts TLS (reverse mode) should not pay for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsproxy.tls.ca import CertAuthority, ca_cert_path
    from wsproxy.tls.contexts import describe_verify_error, upstream_context
    from wsproxy.tls.magic import MAGIC_HOST, render, trust_notice

__all__ = [
    "MAGIC_HOST",
    "CertAuthority",
    "ca_cert_path",
    "describe_verify_error",
    "render",
    "trust_notice",
    "upstream_context",
]

_HOMES = {
    "CertAuthority": "ca",
    "ca_cert_path": "ca",
    "describe_verify_error": "contexts",
    "upstream_context": "contexts",
    "MAGIC_HOST": "magic",
    "render": "magic",
    "trust_notice": "magic",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
