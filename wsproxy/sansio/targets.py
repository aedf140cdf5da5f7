"""Where an HTTP request goes: request targets, Host headers, default ports (RFC 7230 5.3-5.4).

The errors carry the status to answer with (400, or 505 for a version this proxy cannot
relay), as everywhere in ``http11``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from wsproxy.sansio.errors import HttpError
from wsproxy.sansio.http11 import Request

__all__ = [
    "DEFAULT_PORTS",
    "Target",
    "check_request",
    "default_port",
    "format_authority",
    "host_port",
    "parse_host_header",
    "parse_target",
]

# RFC 7230 2.7.1-2.7.2 (http, https) and RFC 6455 3 (ws, wss): the schemes a target may name.
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
# RFC 3986 3.2.2: reg-name = *( unreserved / pct-encoded / sub-delims ).
_REG_NAME_RE = re.compile(r"[A-Za-z0-9\-._~%!$&'()*+,;=]+")
_IPV6_RE = re.compile(r"[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9\-._~%]+)?")


def default_port(scheme: str) -> int:
    """443 for the TLS schemes (https, wss), 80 for the others."""
    return DEFAULT_PORTS.get(scheme.lower(), 80)


def host_port(host: str, port: int) -> str:
    """``host:port`` with an IPv6 address in brackets (``[::1]:8080``, RFC 3986 3.2.2): the one
    way logs, error reasons and captures write an address, so ``::1:8080`` never appears."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_authority(host: str, port: int, scheme: str) -> str:
    """``host[:port]`` as a Host header or URL writes it: IPv6 in brackets, the scheme's
    default port left out (RFC 7230 5.4, RFC 3986 3.2.3)."""
    if port == default_port(scheme):
        return f"[{host}]" if ":" in host else host
    return host_port(host, port)


@dataclass(frozen=True)
class Target:
    """Where a request goes (RFC 7230 5.3).

    ``form`` is origin, absolute, authority (CONNECT) or asterisk (``OPTIONS *``). ``host`` has
    no brackets around IPv6. ``port`` defaults by scheme (80 for http/ws, 443 for https/wss).
    ``path`` includes the query: "/" when the absolute form has none, "" for the authority
    form and "*" for the asterisk form.
    """

    form: Literal["origin", "absolute", "authority", "asterisk"]
    scheme: str | None
    host: str | None
    port: int | None
    path: str


def _parse_port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5 or not 0 < int(text) < 65536:
        raise HttpError(400, f"invalid port: {text!r}")
    return int(text)


def _parse_authority(text: str, default_port: int | None) -> tuple[str, int]:
    """``host[:port]`` or ``[v6]:port``; the port is required when default_port is None."""
    if "@" in text:
        raise HttpError(400, "userinfo in request target is refused")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise HttpError(400, f"unterminated IPv6 address: {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if _IPV6_RE.fullmatch(host) is None or ":" not in host:
            raise HttpError(400, f"invalid IPv6 address: {host!r}")
        if rest and not rest.startswith(":"):
            raise HttpError(400, f"invalid authority: {text!r}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_ = text.partition(":")
        port_text = port_text_ if colon else None
        if _REG_NAME_RE.fullmatch(host) is None:
            raise HttpError(400, f"invalid host: {host!r}")
    if port_text:
        return host, _parse_port(port_text)
    if default_port is None:
        raise HttpError(400, f"port required in {text!r}")
    return host, default_port  # RFC 3986 3.2.3: an empty port means the default


def parse_host_header(value: str, default_port: int) -> tuple[str, int]:
    """Split a Host header value (RFC 7230 5.4) into (host, port); 400 when malformed."""
    if not value:
        raise HttpError(400, "empty Host header")
    return _parse_authority(value, default_port)


def parse_target(request: Request, *, default_port: int = 80) -> Target:
    """Classify and split the request-target (RFC 7230 5.3).

    For the origin and asterisk forms the host comes from the Host header, with
    ``default_port`` when it has none (pass 443 for requests that arrived over TLS).
    """
    target = request.target
    if request.method == "CONNECT":
        # RFC 7231 4.3.6: CONNECT takes the authority form only, port included.
        hostport = _parse_authority(target, None)
        return Target("authority", None, hostport[0], hostport[1], "")
    if target.startswith("/") or target == "*":
        if target == "*" and request.method != "OPTIONS":
            raise HttpError(400, "asterisk target is only valid for OPTIONS")
        host_value = request.headers.get("Host")
        host: str | None = None
        port: int | None = None
        if host_value is not None:
            host, port = parse_host_header(host_value, default_port)
        form: Literal["origin", "asterisk"] = "asterisk" if target == "*" else "origin"
        return Target(form, None, host, port, target)
    scheme, sep, rest = target.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise HttpError(400, f"unsupported request target: {target[:60]!r}")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    host, port = _parse_authority(authority, DEFAULT_PORTS[scheme])
    if not path.startswith("/"):
        path = "/" + path
    return Target("absolute", scheme, host, port, path)


def check_request(req: Request) -> None:
    """Refuse requests this proxy cannot relay: version (RFC 7230 2.6) and Host (5.4)."""
    if req.method == "PRI" and req.target == "*" and req.version == "HTTP/2.0":
        raise HttpError(400, "HTTP/2 connection preface: this proxy speaks HTTP/1.1 only")
    if req.version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(505, f"HTTP version not supported: {req.version}")
    hosts = req.headers.get_all("Host")
    if len(hosts) > 1:
        raise HttpError(400, "duplicate Host header")
    if not hosts:
        if req.version == "HTTP/1.1":
            raise HttpError(400, "missing Host header")
        return
    if hosts[0] or req.target.startswith("/"):
        parse_host_header(hosts[0], 80)
