"""The WebSocket opening handshake, from both sides of the proxy (RFC 6455 section 4).

The proxy is the server towards its client and the client towards the upstream, so each
check is applied where RFC 6455 puts it (SEED-NOTES sections 1 and 2):

* ``check_client_request`` is the server's reading of the upgrade request (RFC 6455 4.2.1);
  a refusal is a ``HandshakeError`` with 400, or 426 and ``Sec-WebSocket-Version: 13``
  (4.2.2), and the upstream is never contacted.
* ``check_upstream_response`` is the client's reading of the 101 (RFC 6455 4.1); any failure
  is a ``HandshakeError(502)`` whose reason names the check, so the log says why.
* ``upstream_request_headers``, ``strip_hop_by_hop`` and ``response_to_client`` build what
  is relayed, without the hop-by-hop headers of RFC 7230 6.1.

Every reason text says exactly which check failed: they end up in logs and in the body of
the proxy's answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass

from wsproxy.sansio.errors import HandshakeError
from wsproxy.sansio.extensions import parse_extension_header, parse_token_list
from wsproxy.sansio.http11 import Headers, Request, Response

__all__ = [
    "GUID",
    "ClientHandshake",
    "accept_key",
    "check_client_request",
    "check_upstream_response",
    "generate_key",
    "is_upgrade_request",
    "response_to_client",
    "strip_hop_by_hop",
    "upstream_request_headers",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3

# RFC 7230 6.1 and RFC 2616 13.5.1: headers meaningful for one connection only. Proxy-*
# headers (Proxy-Authorization, Proxy-Connection, Proxy-Authenticate) are the proxy's own.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "te", "trailer", "upgrade"})
# A ``Connection`` header may name more headers to drop; these are never dropped because of
# it: removing the framing headers of a body the proxy relays in its wire encoding would
# desynchronize the upstream (the "Connection: Content-Length" smuggling trick), and Host
# is required.
_NEVER_DROPPED = frozenset({"content-length", "transfer-encoding", "host"})


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for ``key``: base64(sha1(key + GUID)) (RFC 6455 4.2.2 item 5.4)."""
    digest = hashlib.sha1((key + GUID).encode("ascii"), usedforsecurity=False).digest()
    return binascii.b2a_base64(digest, newline=False).decode("ascii")


def generate_key() -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64 (RFC 6455 4.1 item 7); from
    ``os.urandom`` as ``secrets`` would draw them, without its imports."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def _loose_tokens(values: list[str]) -> list[str]:
    """Lower-cased items of comma lists, without refusing malformed ones."""
    return [item.strip().lower() for value in values for item in value.split(",")]


def is_upgrade_request(req: Request) -> bool:
    """Whether ``req`` asks for a WebSocket (an Upgrade header naming ``websocket``).

    Such requests are then checked strictly by ``check_client_request``; others are plain
    HTTP. The test is lenient on purpose so that a malformed upgrade request is refused with a
    precise reason instead of being relayed as plain HTTP.
    """
    return "websocket" in _loose_tokens(req.headers.get_all("Upgrade"))


@dataclass(frozen=True)
class ClientHandshake:
    """What the client asked for; ``extensions`` are the raw header values, to relay."""

    key: str
    version: str
    protocols: list[str]
    extensions: list[str]
    origin: str | None


def _fail(reason: str, status: int = 400) -> HandshakeError:
    return HandshakeError(status, reason)


def _single(headers: Headers, name: str) -> str:
    values = headers.get_all(name)
    if not values:
        raise _fail(f"missing {name} header")
    if len(values) > 1:
        raise _fail(f"duplicate {name} header")
    return values[0]


def _tokens_lower(headers: Headers, name: str, status: int) -> list[str]:
    return [token.lower() for token in parse_token_list(headers.get_all(name), status)]


def _check_key(key: str) -> None:
    try:
        # strict_mode: only the base64 alphabet, padding only at the end (b64decode's
        # validate=True, without its Python-level checks)
        raw = binascii.a2b_base64(key.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _fail(f"Sec-WebSocket-Key is not base64: {key!r}") from None
    if len(raw) != 16:
        raise _fail(f"Sec-WebSocket-Key does not decode to 16 bytes: {key!r}")


def check_client_request(req: Request) -> ClientHandshake:
    """Check an upgrade request as the server (RFC 6455 4.2.1); raise HandshakeError if bad."""
    if req.method != "GET":
        raise _fail(f"WebSocket upgrade must use GET, not {req.method}")
    if req.version < "HTTP/1.1":  # versions are "HTTP/d.d" (http11's parser checks)
        raise _fail(f"WebSocket upgrade needs HTTP/1.1 or later, not {req.version}")
    headers = req.headers
    _single(headers, "Host")
    if "upgrade" not in _tokens_lower(headers, "Connection", 400):
        raise _fail("Connection header lacks the upgrade token")
    if "websocket" not in _tokens_lower(headers, "Upgrade", 400):
        raise _fail("Upgrade header does not name websocket")
    version = _single(headers, "Sec-WebSocket-Version")
    if version != "13":
        # RFC 6455 4.2.2: answer with the versions we support.
        raise HandshakeError(
            426,
            f"unsupported Sec-WebSocket-Version: {version!r}",
            [("Sec-WebSocket-Version", "13")],
        )
    key = _single(headers, "Sec-WebSocket-Key")
    _check_key(key)
    protocols = parse_token_list(headers.get_all("Sec-WebSocket-Protocol"))
    extensions = headers.get_all("Sec-WebSocket-Extensions")
    parse_extension_header(extensions)
    origins = headers.get_all("Origin")
    if len(origins) > 1:
        raise _fail("duplicate Origin header")
    return ClientHandshake(key, version, protocols, extensions, origins[0] if origins else None)


def check_upstream_response(
    resp: Response, key: str, offered_protocols: list[str], offered_extensions: list[str]
) -> tuple[str | None, list[str]]:
    """Check the upstream's 101 as the client (RFC 6455 4.1, client steps 1-6).

    ``key`` is the Sec-WebSocket-Key sent upstream, ``offered_*`` what was offered to it
    (``offered_extensions`` as raw header values). Returns the chosen subprotocol and the raw
    Sec-WebSocket-Extensions values; only the extension names are checked here, their
    parameters are deflate.py's business. Any failure is a HandshakeError(502).
    """
    if resp.status != 101:
        raise _fail(f"upstream answered {resp.status}, not 101", 502)
    headers = resp.headers
    upgrade = _tokens_lower(headers, "Upgrade", 502)
    if upgrade != ["websocket"]:
        raise _fail(f"upstream Upgrade header is not websocket: {headers.get_all('Upgrade')}", 502)
    if "upgrade" not in _tokens_lower(headers, "Connection", 502):
        raise _fail("upstream Connection header lacks the upgrade token", 502)
    accepts = headers.get_all("Sec-WebSocket-Accept")
    if len(accepts) != 1:
        raise _fail(f"upstream sent {len(accepts)} Sec-WebSocket-Accept headers, not 1", 502)
    if accepts[0] != accept_key(key):
        raise _fail(f"upstream Sec-WebSocket-Accept is wrong: {accepts[0]!r}", 502)
    protocols = parse_token_list(headers.get_all("Sec-WebSocket-Protocol"), 502)
    if len(protocols) > 1:
        raise _fail(f"upstream chose several subprotocols: {protocols}", 502)
    protocol = protocols[0] if protocols else None
    if protocol is not None and protocol not in offered_protocols:
        raise _fail(f"upstream chose a subprotocol that was not offered: {protocol!r}", 502)
    extensions = headers.get_all("Sec-WebSocket-Extensions")
    # Extension names are tokens, compared case-insensitively (RFC 7230 3.2.6) as deflate does.
    offered = {name.lower() for name, _ in parse_extension_header(offered_extensions, 502)}
    for name, _ in parse_extension_header(extensions, 502):
        if name.lower() not in offered:
            raise _fail(f"upstream accepted an extension that was not offered: {name!r}", 502)
    return protocol, extensions


# How a header the proxy adds is spelled when the head it goes into had none of that name.
_CANONICAL = {
    "connection": "Connection",
    "upgrade": "Upgrade",
    "sec-websocket-extensions": "Sec-WebSocket-Extensions",
    "sec-websocket-accept": "Sec-WebSocket-Accept",
    "host": "Host",
    "via": "Via",
}


def _dropped_names(headers: Headers) -> set[str]:
    """Lower-case names to drop when relaying: hop-by-hop ones and those named in Connection."""
    named = set(_loose_tokens(headers.get_all("Connection"))) - _NEVER_DROPPED - {""}
    dropped = named | _HOP_BY_HOP
    dropped.update(name for name in headers.names() if name.startswith("proxy-"))
    return dropped


def strip_hop_by_hop(headers: Headers) -> Headers:
    """A copy of ``headers`` fit to relay as plain HTTP (RFC 7230 6.1).

    Drops Connection, the headers it names, Keep-Alive, TE, Trailer, Upgrade and Proxy-*.
    Transfer-Encoding and Content-Length stay: the proxy relays bodies in their wire encoding.
    """
    dropped = _dropped_names(headers)
    return Headers._valid(
        [(name, value) for name, value in headers.raw() if name.lower() not in dropped]
    )


def _upgrade_headers(headers: Headers, replace: dict[str, list[str] | None]) -> Headers:
    """Strip hop-by-hop headers but keep ``Connection: Upgrade`` and ``Upgrade: websocket`` in
    place; each name in ``replace`` (lower case) gets the given values, or keeps its own
    when None. New values take the place of the first original one, else go at the end."""
    dropped = _dropped_names(headers) - {"connection", "upgrade"}
    fixed = {"connection": ["Upgrade"], "upgrade": ["websocket"]}
    for name, values in replace.items():
        if values is not None:
            for value in values:
                Headers._check(name, value)  # the fields kept from ``headers`` are checked
            fixed[name] = values
    out: list[tuple[str, str]] = []
    placed: set[str] = set()
    for item in headers.raw():
        lower = item[0].lower()
        if lower in dropped:
            continue
        if lower in fixed:
            if lower not in placed:
                placed.add(lower)
                name = item[0]
                out += [(name, new) for new in fixed[lower]]
            continue
        out.append(item)
    if len(placed) < len(fixed):
        for lower, values in fixed.items():
            if lower not in placed:
                name = _CANONICAL.get(lower, lower)
                out += [(name, new) for new in values]
    return Headers._valid(out)


def upstream_request_headers(
    req: Request,
    *,
    extensions: list[str] | None,
    host: str | None = None,
    via: str | None = None,
) -> Headers:
    """Headers of the upgrade request the proxy sends upstream.

    The client's headers minus hop-by-hop and proxy headers, with ``Connection: Upgrade`` and
    ``Upgrade: websocket``. ``extensions`` replaces the Sec-WebSocket-Extensions offer: None
    keeps the client's, an empty list removes it. ``host`` and ``via``, when given, replace
    Host and Via as ``Headers.set`` would, in the same pass over the fields.
    """
    replace: dict[str, list[str] | None] = {"sec-websocket-extensions": extensions}
    if host is not None:
        replace["host"] = [host]
    if via is not None:
        replace["via"] = [via]
    return _upgrade_headers(req.headers, replace)


def response_to_client(
    upstream_resp: Response, client_key: str, *, via: str | None = None
) -> Response:
    """The 101 the proxy sends its client, from the upstream's (already checked) 101.

    Same headers minus hop-by-hop ones, with Sec-WebSocket-Accept computed for the client's
    own key (identical to the upstream's when the proxy reused that key); ``via``, when
    given, replaces Via as ``Headers.set`` would.
    """
    replace: dict[str, list[str] | None] = {"sec-websocket-accept": [accept_key(client_key)]}
    if via is not None:
        replace["via"] = [via]
    headers = _upgrade_headers(upstream_resp.headers, replace)
    return Response("HTTP/1.1", 101, upstream_resp.reason or "Switching Protocols", headers)
