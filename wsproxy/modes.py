"""How clients reach a listener, spelled as mitmproxy spells ``--mode``.

``regular`` (an HTTP proxy), ``reverse:SCHEME://HOST[:PORT]`` (be the server, send everything
to one upstream), ``upstream:http[s]://HOST:PORT`` (an HTTP proxy that chains to another),
``transparent`` (connections redirected by the firewall) and ``socks5``. Each may end in
``@PORT`` or ``@HOST:PORT`` to give that listener its own address, so several ``--mode`` flags
make several listeners in one process. Parsing is pure: no sockets, no defaults read from the
environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wsproxy.sansio.targets import default_port, host_port

__all__ = [
    "Listen",
    "Mode",
    "ModeError",
    "Regular",
    "Reverse",
    "Socks5",
    "Transparent",
    "UpstreamProxy",
    "parse_listen",
    "resolve_listens",
]


class ModeError(ValueError):
    """A ``--mode`` that cannot be had; the message says what to write instead."""


@dataclass(frozen=True)
class Regular:
    """An HTTP proxy: CONNECT, and absolute-form requests."""

    def __str__(self) -> str:
        return "regular"


@dataclass(frozen=True)
class Reverse:
    """Be the server: every request goes to this upstream. ``scheme`` is the WebSocket
    scheme (``ws``/``wss``); ``reverse:http://`` and ``https://`` name the same two."""

    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "wss"

    def __str__(self) -> str:
        return f"reverse:{self.scheme}://{host_port(self.host, self.port)}"


@dataclass(frozen=True)
class UpstreamProxy:
    """An HTTP proxy whose own connections go through another HTTP proxy."""

    scheme: str  # "http" or "https": how this proxy talks to the next one
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    def __str__(self) -> str:
        return f"upstream:{self.scheme}://{host_port(self.host, self.port)}"


@dataclass(frozen=True)
class Transparent:
    """Connections the firewall redirected here; the original destination says where to."""

    def __str__(self) -> str:
        return "transparent"


@dataclass(frozen=True)
class Socks5:
    """A SOCKS5 proxy (RFC 1928): the CONNECT command names where to."""

    def __str__(self) -> str:
        return "socks5"


Mode = Regular | Reverse | UpstreamProxy | Transparent | Socks5

# The port a mode listens on when neither MODE@PORT nor -p says (mitmproxy's defaults).
DEFAULT_PORTS: dict[type, int] = {Socks5: 1080}
LISTEN_PORT = 8080


@dataclass(frozen=True)
class Listen:
    """One listener: its mode and, when the flag named them, its own host and port."""

    mode: Mode
    host: str | None = None
    port: int | None = None

    def spelled(self) -> str:
        """As the user would write it back: ``MODE[@HOST:PORT]``."""
        if self.port is None:
            return str(self.mode)
        where = str(self.port) if self.host is None else host_port(self.host, self.port)
        return f"{self.mode}@{where}"


def intercepts_tls(listens: tuple[Listen, ...]) -> bool:
    """Whether a listener of the run may be a client's TLS server, and so needs the CA: every
    mode but reverse may be asked for a tunnel (CONNECT, SOCKS5, a redirected connection) that
    carries TLS; a reverse listener serves plain HTTP and WebSocket only."""
    return not all(isinstance(listen.mode, Reverse) for listen in listens)


_URL = re.compile(
    r"(?P<scheme>[a-z0-9+.-]+)://(?P<host>\[[^\]]*\]|[^:/\[\]]*)(?::(?P<port>[^/]*))?/?"
)
_REVERSE_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}
_UNSUPPORTED = {
    "wireguard": "WireGuard mode is not supported; use transparent mode with a redirect rule",
    "local": "local (process redirect) mode is not supported; use transparent mode",
    "dns": "DNS mode is not supported: wsproxy relays WebSockets",
    "socks4": "SOCKS4 is not supported; use socks5",
    "tun": "tun mode is not supported; use transparent mode",
    "upstream_socks5": "chaining to a SOCKS5 proxy is not supported; use upstream:http://",
}
_EXAMPLES = (
    "regular, transparent, socks5, reverse:ws://HOST:PORT (ws, wss, http, https), "
    "upstream:http://HOST:PORT (or https), each optionally followed by @PORT or @HOST:PORT"
)


def parse_listen(text: str) -> Listen:
    """``MODE[@PORT|@HOST:PORT]`` as one ``--mode`` flag gives it."""
    spec, at, where = text.rpartition("@") if "@" in text else (text, "", "")
    host: str | None = None
    port: int | None = None
    if at:
        host, port = _parse_at(text, where)
    return Listen(_parse_mode(spec), host, port)


def _parse_at(text: str, where: str) -> tuple[str | None, int]:
    host: str | None = None
    port_text = where
    if ":" in where:
        host, _, port_text = where.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not host or (":" in host and not where.startswith("[")):
            raise ModeError(f"--mode {text!r}: write the address as @HOST:PORT or @[IPv6]:PORT")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ModeError(f"--mode {text!r}: {port_text!r} after '@' is not a port (0-65535)")
    return host, int(port_text)


def _parse_mode(spec: str) -> Mode:
    name, colon, rest = spec.partition(":")
    if name == "regular" and not colon:
        return Regular()
    if name == "transparent" and not colon:
        return Transparent()
    if name == "socks5" and not colon:
        return Socks5()
    if name == "reverse" and colon:
        scheme, host, port = _parse_url(spec, rest, _REVERSE_SCHEMES, "reverse")
        return Reverse(_REVERSE_SCHEMES[scheme], host, port)
    if name == "upstream" and colon:
        scheme, host, port = _parse_url(spec, rest, {"http": "http", "https": "https"}, "upstream")
        return UpstreamProxy(scheme, host, port)
    if name in _UNSUPPORTED:
        raise ModeError(f"--mode {spec!r}: {_UNSUPPORTED[name]}")
    raise ModeError(f"unknown mode {spec!r}: use {_EXAMPLES}")


def _parse_url(spec: str, url: str, schemes: dict[str, str], kind: str) -> tuple[str, str, int]:
    match = _URL.fullmatch(url)
    if match is None or not match["host"].strip("[]"):
        raise ModeError(f"--mode {spec!r}: write {kind}:SCHEME://HOST[:PORT]")
    scheme = match["scheme"]
    if scheme not in schemes:
        known = ", ".join(f"{s}://" for s in schemes)
        raise ModeError(f"--mode {spec!r}: {kind} mode takes {known} (not {scheme}://)")
    port_text = match["port"]
    if port_text is None or port_text == "":
        port = default_port(scheme)
    elif port_text.isdigit() and 0 < int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise ModeError(f"--mode {spec!r}: {port_text!r} is not a port (1-65535)")
    return scheme, match["host"].strip("[]"), port


def resolve_listens(
    listens: tuple[Listen, ...], listen_host: str, listen_port: int | None
) -> tuple[Listen, ...]:
    """Every listener with its host and port filled in: MODE@… first, then ``-p`` /
    ``--listen-host``, then the mode's default. Two listeners on one address are refused
    here, with both named, rather than by the second bind."""
    listens = listens or (Listen(Regular()),)
    resolved: list[Listen] = []
    taken: dict[tuple[str, int], Listen] = {}
    for listen in listens:
        port = listen.port
        if port is None:
            port = listen_port if listen_port is not None else _default_port(listen.mode)
        filled = Listen(listen.mode, listen.host or listen_host, port)
        assert filled.host is not None
        key = (filled.host, port)
        if port != 0 and key in taken:
            raise ModeError(
                f"--mode {taken[key].spelled()} and --mode {listen.spelled()} would both listen "
                f"on {host_port(filled.host, port)}: give one its own port with "
                "MODE@PORT"
            )
        taken[key] = listen
        resolved.append(filled)
    return tuple(resolved)


def _default_port(mode: Mode) -> int:
    return DEFAULT_PORTS.get(type(mode), LISTEN_PORT)
