"""Loop detection: a request that comes back to the proxy that already relayed it.

Two signs, checked at the first hop that would repeat (RFC 9110 7.6.3, 15.6.9 508 as WebDAV's
RFC 5842 7.2 defines it): the request carries a ``Via`` entry with this proxy's pseudonym, or
the connection the proxy just opened reached one of its own listening sockets. The pseudonym is
random per process, so two different wsproxy processes chained on purpose never refuse each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import ip_address
from typing import Any

VIA_PROTOCOL = "1.1"  # received-protocol: HTTP/1.1, the only version the proxy forwards


def via_entry(pseudonym: str) -> str:
    """This proxy's element of a Via header field (received-protocol received-by)."""
    return f"{VIA_PROTOCOL} {pseudonym}"


def append_via(values: list[str], pseudonym: str) -> str:
    """The Via field value to forward: what came in, with this proxy's entry last."""
    return ", ".join([*values, via_entry(pseudonym)]) if values else via_entry(pseudonym)


def carries_via(values: Iterable[str], pseudonym: str) -> bool:
    """Whether any Via element names this proxy as its received-by."""
    for value in values:
        for element in value.split(","):
            parts = element.split()
            if len(parts) >= 2 and parts[1] == pseudonym:
                return True
    return False


def _ip(address: str) -> str:
    """An address in one spelling: IPv4-mapped IPv6 as IPv4, scope ids dropped."""
    text = address.split("%", 1)[0]
    try:
        parsed = ip_address(text)
    except ValueError:
        return text
    mapped = getattr(parsed, "ipv4_mapped", None)
    return str(mapped if mapped is not None else parsed)


# A socket address as ``getsockname`` gives it: (host, port), and for IPv6 also flowinfo and
# scope id, which play no part here.
Address = tuple[Any, ...]


def reaches_own_listener(remote: Address, local: Address, listening: Iterable[Address]) -> bool:
    """Whether an outgoing connection from ``local`` to ``remote`` landed on our own listener.

    A listener on a wildcard address (0.0.0.0, ::) accepts on every local address: a connection
    reached it when the port matches and the remote address is one of this machine's, which the
    kernel shows by picking that same address (or loopback) as the connection's source.
    """
    remote_port = remote[1]
    remote_ip: str | None = None  # parsed only when a port matches: most connections differ
    for address in listening:
        host, port = address[0], address[1]
        if port != remote_port:
            continue
        if remote_ip is None:
            remote_ip = _ip(remote[0])
        listen_ip = _ip(host)
        if listen_ip == remote_ip:
            return True
        try:
            wildcard = ip_address(listen_ip).is_unspecified
            loopback = ip_address(remote_ip).is_loopback
        except ValueError:
            continue
        if wildcard and (loopback or remote_ip == _ip(local[0])):
            return True
    return False
