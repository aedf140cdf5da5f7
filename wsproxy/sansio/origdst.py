"""The original destination of a redirected connection, from the bytes Linux returns.

A connection that an iptables/nftables ``REDIRECT`` (or ``DNAT``) sent to the proxy still
knows where the client meant to go: netfilter's connection tracking answers
``getsockopt(SOL_IP, SO_ORIGINAL_DST)`` with a ``struct sockaddr_in`` (IPv4,
``linux/netfilter_ipv4.h``) and ``getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)`` with a
``struct sockaddr_in6`` (IPv6, ``linux/netfilter_ipv6/ip6_tables.h``). The shell makes the call;
this module reads the answer, so the byte layout is tested without a firewall.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

__all__ = [
    "IP6T_SO_ORIGINAL_DST",
    "SOCKADDR_IN6_SIZE",
    "SOCKADDR_IN_SIZE",
    "SOL_IP",
    "SOL_IPV6",
    "SO_ORIGINAL_DST",
    "OriginalDestinationError",
    "parse_sockaddr",
]

# The option numbers and levels of the Linux headers (both options are 80).
SO_ORIGINAL_DST = 80
IP6T_SO_ORIGINAL_DST = 80
SOL_IP = 0
SOL_IPV6 = 41

# Address families as Linux numbers them (``socket.AF_INET``/``AF_INET6`` on Linux): the
# option exists only there, so these values are the ones the bytes carry.
AF_INET = 2
AF_INET6 = 10

# struct sockaddr_in: sa_family_t (host order), port (network order), 4 address bytes, 8 zero.
SOCKADDR_IN_SIZE = 16
# struct sockaddr_in6: family, port, flowinfo (4), 16 address bytes, scope id (4, host order).
SOCKADDR_IN6_SIZE = 28

_FAMILY = struct.Struct("=H")  # sa_family_t is a host-order unsigned short
_PORT = struct.Struct("!H")
_SCOPE = struct.Struct("=I")


class OriginalDestinationError(ValueError):
    """The bytes are not a socket address this module reads (says which check failed)."""


def parse_sockaddr(raw: bytes) -> tuple[str, int]:
    """``(host, port)`` of a ``sockaddr_in`` or ``sockaddr_in6``.

    An IPv4-mapped IPv6 address comes back as IPv4 (``::ffff:192.0.2.1`` is ``192.0.2.1``,
    as the proxy's own listener addresses are compared); a link-local one keeps its numeric
    scope (``fe80::1%2``), without which it cannot be connected to.
    """
    if len(raw) < _FAMILY.size:
        raise OriginalDestinationError(f"{len(raw)} bytes are too short for a socket address")
    (family,) = _FAMILY.unpack_from(raw)
    if family == AF_INET:
        if len(raw) < 8:
            raise OriginalDestinationError(f"sockaddr_in of {len(raw)} bytes (needs 8)")
        (port,) = _PORT.unpack_from(raw, 2)
        return str(IPv4Address(raw[4:8])), port
    if family == AF_INET6:
        if len(raw) < SOCKADDR_IN6_SIZE:
            raise OriginalDestinationError(
                f"sockaddr_in6 of {len(raw)} bytes (needs {SOCKADDR_IN6_SIZE})"
            )
        (port,) = _PORT.unpack_from(raw, 2)
        address = IPv6Address(raw[8:24])
        (scope,) = _SCOPE.unpack_from(raw, 24)
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped), port
        if scope and address.is_link_local:
            return f"{address}%{scope}", port
        return str(address), port
    raise OriginalDestinationError(f"address family {family} is neither IPv4 nor IPv6")
