"""The web UI's checks, pure: who may talk to it, and from which page.

The UI can read and change every WebSocket the proxy sees, so each request proves it knows the
token (or the ``--web-password``): compared in constant time (``hmac.compare_digest``), so the
answer's timing says nothing about how much of a guess was right.

DNS rebinding: a page on ``evil.example`` whose name is made to resolve to 127.0.0.1 reaches
the UI as a same-origin site; its requests still carry ``Host: evil.example``, so only the UI's
own names are accepted (loopback names, the ``--web-host``, and IP literals when it listens on
every address: a rebinding attack needs a DNS name). Browsers send an ``Origin`` with every
WebSocket opening handshake and the same-origin policy does not apply to WebSockets, so the
push channel also refuses an ``Origin`` that is not the UI's own (cross-site WebSocket
hijacking). No CORS headers are ever sent, so no other origin may read an answer.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from wsproxy.sansio.targets import host_port

__all__ = [
    "SECURITY_HEADERS",
    "UiAddress",
    "bearer",
    "is_loopback",
    "token_matches",
]

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the page's URL holds the token
}
API_HEADERS = {"Cache-Control": "no-store"}

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")


def token_matches(given: str | None, expected: str) -> bool:
    """Whether ``given`` is the token, in time independent of where they differ."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer T`` header (RFC 6750 2.1), else None."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) stays on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _split_host(header: str) -> tuple[str, int | None] | None:
    """``Host`` as (lowercase host without brackets, port or None); None when malformed."""
    text = header.strip().lower()
    if not text or any(c in text for c in "/@?# \t"):
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
    elif text.count(":") > 1:
        return None  # an IPv6 address without brackets
    else:
        host, _, port_text = text.partition(":")
        rest = ":" + port_text if port_text or text.endswith(":") else ""
    if not rest:
        return host, None
    if not rest.startswith(":") or not rest[1:].isdigit():
        return None
    return host, int(rest[1:])


class UiAddress:
    """Where the UI listens, and which ``Host`` and ``Origin`` values name it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host.strip("[]").lower()
        self.port = port
        self.wildcard = self.host in WILDCARDS
        names = {*LOOPBACK_NAMES} if self.wildcard or is_loopback(self.host) else set()
        if not self.wildcard:
            names.add(self.host)
        self.names = frozenset(names)

    @property
    def url(self) -> str:
        """The UI's base URL (a wildcard address shown as 127.0.0.1)."""
        shown = "127.0.0.1" if self.wildcard else self.host
        return f"http://{host_port(shown, self.port)}"

    def host_allowed(self, header: str | None) -> bool:
        """Whether a request's ``Host`` header names this UI (DNS rebinding, see the doc)."""
        if header is None:
            return False
        parts = _split_host(header)
        if parts is None:
            return False
        host, port = parts
        if (port if port is not None else 80) != self.port:
            return False
        if host in self.names:
            return True
        if self.wildcard:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                return False
            return True
        return False

    def origin_allowed(self, origin: str | None, host_header: str | None) -> bool:
        """Whether a WebSocket's ``Origin`` is this UI's page: ``http://`` and the same
        host as the request's ``Host`` (already checked). No ``Origin``: not a browser, so
        no page can be behind it; the token still has to be right."""
        if origin is None:
            return True
        try:
            parts = urlsplit(origin.strip())
        except ValueError:
            return False
        if parts.scheme != "http" or parts.path not in ("", "/") or parts.query:
            return False
        if host_header is None or not self.host_allowed(parts.netloc):
            return False
        return _split_host(parts.netloc) == _split_host(host_header)
