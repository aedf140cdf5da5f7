"""TLS for the proxy: a mitmproxy-compatible CA, leaf certificates per host, SSL contexts.

``ca`` owns the files and signs leaves, ``contexts`` builds ``ssl.SSLContext`` objects for both
legs, ``magic`` serves the CA certificate at ``http://wsproxy.invalid/`` through the proxy.
"""

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
