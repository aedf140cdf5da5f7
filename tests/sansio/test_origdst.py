"""origdst.py: the sockaddr bytes ``getsockopt(SO_ORIGINAL_DST)`` returns, IPv4 and IPv6."""

from __future__ import annotations

import re
import socket
import struct
import sys
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproxy.sansio import origdst
from wsproxy.sansio.origdst import (
    SOCKADDR_IN6_SIZE,
    SOCKADDR_IN_SIZE,
    OriginalDestinationError,
    parse_sockaddr,
)


def sockaddr_in(host: str, port: int, family: int = origdst.AF_INET) -> bytes:
    """A ``struct sockaddr_in`` as the kernel writes it (family in host order)."""
    return struct.pack("=H", family) + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)


def sockaddr_in6(host: str, port: int, *, flowinfo: int = 0, scope: int = 0) -> bytes:
    """A ``struct sockaddr_in6`` (flowinfo in network order, scope id in host order)."""
    return (
        struct.pack("=H", origdst.AF_INET6)
        + struct.pack("!HI", port, flowinfo)
        + socket.inet_pton(socket.AF_INET6, host)
        + struct.pack("=I", scope)
    )


def test_the_numbers_are_the_linux_headers() -> None:
    assert origdst.SO_ORIGINAL_DST == origdst.IP6T_SO_ORIGINAL_DST == 80
    assert origdst.SOL_IP == socket.IPPROTO_IP == 0
    assert origdst.SOL_IPV6 == socket.IPPROTO_IPV6 == 41
    assert len(sockaddr_in("192.0.2.1", 80)) == SOCKADDR_IN_SIZE
    assert len(sockaddr_in6("2001:db8::1", 80)) == SOCKADDR_IN6_SIZE


@pytest.mark.skipif(sys.platform != "linux", reason="the family numbers are Linux's")
def test_the_families_are_the_linux_ones() -> None:
    assert origdst.AF_INET == socket.AF_INET
    assert origdst.AF_INET6 == socket.AF_INET6


def test_ipv4_as_the_kernel_answered_in_a_redirect() -> None:
    # Recorded from getsockopt(SOL_IP, 80, 16) on a REDIRECTed connection to 198.51.100.2:80.
    raw = bytes.fromhex("02000050c63364020000000000000000")
    if sys.byteorder == "big":
        raw = raw[1::-1] + raw[2:]
    assert parse_sockaddr(raw) == ("198.51.100.2", 80)


@pytest.mark.parametrize(
    ("host", "port"),
    [("198.51.100.2", 443), ("203.0.113.255", 1), ("0.0.0.0", 65535), ("127.0.0.1", 8080)],
)
def test_ipv4(host: str, port: int) -> None:
    assert parse_sockaddr(sockaddr_in(host, port)) == (host, port)


def test_ipv4_needs_no_padding() -> None:
    """The eight zero bytes of sin_zero are not read: family, port and address suffice."""
    assert parse_sockaddr(sockaddr_in("192.0.2.7", 81)[:8]) == ("192.0.2.7", 81)


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("2001:db8::2", 443, "2001:db8::2"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", 80, "2001:db8::1"),  # compressed
        ("::1", 8080, "::1"),
        ("::ffff:198.51.100.9", 80, "198.51.100.9"),  # IPv4-mapped: as IPv4
    ],
)
def test_ipv6(host: str, port: int, expected: str) -> None:
    assert parse_sockaddr(sockaddr_in6(host, port, flowinfo=0x12345)) == (expected, port)


def test_ipv6_link_local_keeps_its_scope() -> None:
    assert parse_sockaddr(sockaddr_in6("fe80::1", 80, scope=3)) == ("fe80::1%3", 80)


def test_ipv6_scope_is_dropped_where_it_means_nothing() -> None:
    assert parse_sockaddr(sockaddr_in6("2001:db8::5", 80, scope=3)) == ("2001:db8::5", 80)
    assert parse_sockaddr(sockaddr_in6("fe80::1", 80, scope=0)) == ("fe80::1", 80)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "0 bytes are too short"),
        (b"\x02", "1 bytes are too short"),
        (sockaddr_in("192.0.2.1", 80)[:7], "sockaddr_in of 7 bytes (needs 8)"),
        (sockaddr_in6("2001:db8::1", 80)[:27], "sockaddr_in6 of 27 bytes (needs 28)"),
        (sockaddr_in("192.0.2.1", 80, family=1), "address family 1 is neither"),  # AF_UNIX
        (bytes(16), "address family 0 is neither"),  # AF_UNSPEC: nothing written
    ],
)
def test_what_is_not_an_address_says_why(raw: bytes, message: str) -> None:
    with pytest.raises(OriginalDestinationError, match=re.escape(message)):
        parse_sockaddr(raw)


@given(st.integers(0, 2**32 - 1), st.integers(0, 65535))
def test_every_ipv4_address_and_port(address: int, port: int) -> None:
    host = str(IPv4Address(address))
    assert parse_sockaddr(sockaddr_in(host, port)) == (host, port)


@given(st.integers(0, 2**128 - 1), st.integers(0, 65535))
def test_every_ipv6_address_and_port(address: int, port: int) -> None:
    parsed = IPv6Address(address)
    host, got_port = parse_sockaddr(sockaddr_in6(str(parsed), port))
    expected = parsed.ipv4_mapped if parsed.ipv4_mapped is not None else parsed
    assert (host, got_port) == (str(expected), port)
