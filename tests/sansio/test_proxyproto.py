"""proxyproto.py: PROXY protocol v1 and v2 headers, whole, byte at a time, and every refusal."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproxy.sansio.proxyproto import (
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    parse_header,
)

AFTER = b"GET / HTTP/1.1\r\n"  # the client's own bytes, which the header is not to take


def v2(command: int, family: int, body: bytes, *, version: int = 2) -> bytes:
    return (
        V2_SIGNATURE + bytes([version << 4 | command, family]) + struct.pack("!H", len(body)) + body
    )


def v2_inet(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"") -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return v2(1, 0x11, body + tlvs)


def v2_inet6(src: str, dst: str, sport: int, dport: int) -> bytes:
    pack = socket.inet_pton
    body = (
        pack(socket.AF_INET6, src) + pack(socket.AF_INET6, dst) + struct.pack("!HH", sport, dport)
    )
    return v2(1, 0x21, body)


def bytewise(data: bytes) -> tuple[ProxyHeader, int]:
    """Feed ``data`` one byte more at a time: "need more" until the header is whole."""
    for end in range(len(data)):
        result = parse_header(data[:end])
        if result is not None:
            return result
    result = parse_header(data)
    assert result is not None
    return result


def refused(data: bytes, match: str) -> None:
    with pytest.raises(ProxyProtocolError, match=match):
        for end in range(1, len(data) + 1):  # the error comes as soon as the bytes show it
            parse_header(data[:end])


# -- v1 ----------------------------------------------------------------------------------------


def test_v1_tcp4() -> None:
    line = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n"
    header, used = bytewise(line + AFTER)
    assert used == len(line)
    assert header == ProxyHeader(1, False, ("203.0.113.7", 56324), ("192.0.2.1", 443))


def test_v1_tcp6() -> None:
    line = b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n"
    header, used = bytewise(line)
    assert used == len(line)
    assert header.source == ("2001:db8::7", 65535)
    assert header.destination == ("2001:db8::1", 0)


def test_v1_tcp6_ipv4_mapped_is_plain_ipv4() -> None:
    header, _ = bytewise(b"PROXY TCP6 ::ffff:198.51.100.2 ::1 1 2\r\n")
    assert header.source == ("198.51.100.2", 1)


def test_v1_unknown_keeps_the_peer_address() -> None:
    line = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"
    header, used = bytewise(line + AFTER)
    assert used == len(line)
    assert header == ProxyHeader(1, False, None, None)
    assert parse_header(b"PROXY UNKNOWN\r\n") == (ProxyHeader(1, False, None, None), 15)


def test_v1_longest_line_is_accepted() -> None:
    line = b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 16) + b"\r\n"
    assert len(line) == V1_MAX_LENGTH
    assert bytewise(line)[1] == V1_MAX_LENGTH


def test_v1_too_long() -> None:
    refused(b"PROXY UNKNOWN " + b"x" * V1_MAX_LENGTH, "longer than 107")
    # CRLF just past the limit
    refused(b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 15) + b"\r\n", "longer than 107")


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "CR and LF"),
        (b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n", "CR and LF"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "CR and LF"),
        (b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1 2\r\n", "not ASCII"),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "'UDP4' is not TCP4"),
        (b"PROXY \r\n", "'' is not TCP4"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "got 3 fields"),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "got 5 fields"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "got 5 fields"),
        (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "source address '1.2.3.256' is not valid"),
        (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "destination address '::1' is not IPv4"),
        (b"PROXY TCP6 ::1 1.2.3.4 1 2\r\n", "destination address '1.2.3.4' is not IPv6"),
        (b"PROXY TCP6 ::1%eth0 ::1 1 2\r\n", "source address '::1%eth0' is not valid"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "source port 65536 is over 65535"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "destination port 99999 is over"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "source port '-1' is not a decimal"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "source port '080' is not a decimal"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n", "destination port '\\+2' is not"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 \xd9\xa1 2\r\n", "not ASCII"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n", "source port '' is not"),
    ],
)
def test_v1_refusals(line: bytes, match: str) -> None:
    refused(line, match)


def test_v1_port_zero_is_fine() -> None:
    assert bytewise(b"PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n")[0].source == ("1.2.3.4", 0)


# -- neither -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [b"GET / HTTP/1.1\r\n", b"\x16\x03\x01", b"\x05\x01\x00", b"PROXY\r\n", b"proxy "]
)
def test_no_header_fails_at_the_first_wrong_byte(data: bytes) -> None:
    refused(data, "no PROXY protocol header")


def test_nothing_yet_needs_more() -> None:
    assert parse_header(b"") is None
    assert parse_header(b"PROX") is None
    assert parse_header(V2_SIGNATURE[:5]) is None


# -- v2 ----------------------------------------------------------------------------------------


def test_v2_ipv4_with_tlvs_skipped() -> None:
    tlvs = bytes([0x04, 0x00, 0x01, 0x00]) + bytes([0x01, 0x00, 0x02]) + b"h2"  # NOOP, ALPN
    data = v2_inet("203.0.113.9", "192.0.2.1", 40000, 8080, tlvs)
    header, used = bytewise(data + AFTER)
    assert used == len(data)
    assert header == ProxyHeader(2, False, ("203.0.113.9", 40000), ("192.0.2.1", 8080))


def test_v2_ipv6() -> None:
    data = v2_inet6("2001:db8::9", "2001:db8::1", 1, 65535)
    header, used = bytewise(data + AFTER)
    assert used == len(data)
    assert header == ProxyHeader(2, False, ("2001:db8::9", 1), ("2001:db8::1", 65535))


def test_v2_ipv4_mapped_ipv6_is_plain_ipv4() -> None:
    assert bytewise(v2_inet6("::ffff:192.0.2.5", "::1", 7, 8))[0].source == ("192.0.2.5", 7)


def test_v2_local_keeps_the_peer_address_whatever_follows() -> None:
    for family, body in [(0x00, b""), (0x11, bytes(12)), (0xFF, b"junk")]:
        data = v2(0, family, body)
        assert bytewise(data + AFTER) == (ProxyHeader(2, True, None, None), len(data))


def test_v2_unspec_and_unix_keep_the_peer_address() -> None:
    for data in (v2(1, 0x00, b""), v2(1, 0x00, b"x" * 10), v2(1, 0x31, bytes(216))):
        assert bytewise(data) == (ProxyHeader(2, False, None, None), len(data))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (v2(1, 0x11, bytes(12), version=1), "version 1 is not 2"),
        (v2(1, 0x11, bytes(12), version=3), "version 3 is not 2"),
        (v2(2, 0x11, bytes(12)), "command 2 is neither"),
        (v2(0xF, 0x11, bytes(12)), "command 15 is neither"),
        (v2(1, 0x12, bytes(12)), "transport 2 \\(datagram\\?\\) is not a stream"),
        (v2(1, 0x10, bytes(12)), "transport unspecified is not a stream"),
        (v2(1, 0x11, bytes(11)), "11 address bytes are too few for IPv4 \\(needs 12\\)"),
        (v2(1, 0x21, bytes(35)), "35 address bytes are too few for IPv6 \\(needs 36\\)"),
        (v2(1, 0x31, bytes(215)), "215 address bytes are too few for AF_UNIX"),
        (v2(1, 0x41, bytes(12)), "address family 4 is not known"),
        (b"\r\n\r\n\x00\r\nQUIX\n", "no PROXY protocol header"),
    ],
)
def test_v2_refusals(data: bytes, match: str) -> None:
    refused(data, match)


def test_v2_waits_for_its_announced_length() -> None:
    data = v2_inet("192.0.2.1", "192.0.2.2", 1, 2, b"\x04\x00\x00" * 100)
    assert parse_header(data[:16]) is None
    assert parse_header(data[:-1]) is None
    assert parse_header(data) == (parse_header(data + b"more") or (None, 0))


@given(st.binary(max_size=200))
def test_no_input_crashes(data: bytes) -> None:
    for candidate in (data, b"PROXY " + data, V2_SIGNATURE + data):
        try:
            result = parse_header(candidate)
        except ProxyProtocolError:
            continue
        if result is not None:
            assert 0 < result[1] <= len(candidate)


@given(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=4).map(str),
    st.integers(0, 65535),
    st.integers(0, 65535),
)
def test_v1_and_v2_agree(src: str, dst: str, sport: int, dport: int) -> None:
    line = f"PROXY TCP4 {src} {dst} {sport} {dport}\r\n".encode()
    one = parse_header(line)
    two = parse_header(v2_inet(src, dst, sport, dport))
    assert one is not None and two is not None
    assert (one[0].source, one[0].destination) == (two[0].source, two[0].destination)
    assert one[0].source == (src, sport)
