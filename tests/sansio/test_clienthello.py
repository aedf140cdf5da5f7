"""clienthello.py: the SNI host name of a ClientHello, from real hellos (Python's ssl writes
them) and hand-built ones, whole, split across records and fed a byte at a time."""

from __future__ import annotations

import itertools
import ssl
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproxy.sansio.clienthello import (
    MAX_HELLO,
    MAX_RECORD,
    Hello,
    Incomplete,
    Malformed,
    scan_client_hello,
)


def real_hello(server_hostname: str | None) -> bytes:
    """The first flight of a real TLS client (Python's ssl over memory BIOs)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def vector(width: int, data: bytes) -> bytes:
    return len(data).to_bytes(width, "big") + data


def extension(kind: int, data: bytes) -> bytes:
    return struct.pack("!HH", kind, len(data)) + data


def sni(*names: tuple[int, bytes]) -> bytes:
    """A server_name extension listing ``(name_type, name)`` entries."""
    return extension(0, vector(2, b"".join(bytes([t]) + vector(2, n) for t, n in names)))


def body(extensions: bytes | None) -> bytes:
    """A ClientHello body: version, random, session id, suites, compression, extensions."""
    head = b"\x03\x03" + bytes(32) + vector(1, bytes(32)) + vector(2, b"\x13\x01") + b"\x01\x00"
    return head if extensions is None else head + vector(2, extensions)


def handshake(message: bytes, kind: int = 1) -> bytes:
    return bytes([kind]) + len(message).to_bytes(3, "big") + message


def records(payload: bytes, *cuts: int, kind: int = 0x16) -> bytes:
    """``payload`` in handshake records, cut at the given offsets."""
    out = b""
    edges = [0, *cuts, len(payload)]
    for start, end in itertools.pairwise(edges):
        out += struct.pack("!BHH", kind, 0x0301, end - start) + payload[start:end]
    return out


def hello(extensions: bytes | None) -> bytes:
    return records(handshake(body(extensions)))


@pytest.mark.parametrize(
    ("name", "expected"),
    [("wstest.example", "wstest.example"), ("WS.Example.ORG", "ws.example.org"), (None, None)],
)
def test_a_real_hello(name: str | None, expected: str | None) -> None:
    data = real_hello(name)
    assert scan_client_hello(data) == Hello(expected)
    # A ClientHello followed by more bytes (early data, the next record) reads the same.
    assert scan_client_hello(data + b"\x17\x03\x03\x00\x01x") == Hello(expected)


def test_a_real_hello_to_an_ip_address_has_no_name() -> None:
    """Clients send no SNI for an IP literal (RFC 6066 3): the leaf is named from the address."""
    assert scan_client_hello(real_hello("198.51.100.2")) == Hello(None)
    assert scan_client_hello(real_hello("2001:db8::2")) == Hello(None)


def test_every_prefix_is_incomplete() -> None:
    data = real_hello("wstest.example")
    for end in range(len(data)):
        assert scan_client_hello(data[:end]) == Incomplete(), end
    assert scan_client_hello(data) == Hello("wstest.example")


@given(st.lists(st.integers(1, 400), max_size=6, unique=True))
def test_a_hello_split_across_records(cuts: list[int]) -> None:
    message = handshake(body(sni((0, b"split.example"))))
    points = sorted(c for c in cuts if c < len(message))
    assert scan_client_hello(records(message, *points)) == Hello("split.example")


def test_byte_at_a_time_across_records() -> None:
    data = records(handshake(body(sni((0, b"a.example")))), 3, 50)
    for end in range(len(data)):
        assert scan_client_hello(data[:end]) == Incomplete(), end
    assert scan_client_hello(data) == Hello("a.example")


def test_hand_built_hellos() -> None:
    assert scan_client_hello(hello(None)) == Hello(None)  # no extensions at all
    assert scan_client_hello(hello(b"")) == Hello(None)  # an empty list
    other = extension(10, b"\x00\x02\x00\x1d")  # supported_groups first, then SNI
    assert scan_client_hello(hello(other + sni((0, b"x.example")))) == Hello("x.example")
    assert scan_client_hello(hello(other)) == Hello(None)
    # Another name type first (none is defined but host_name; RFC 6066 keeps room), then ours.
    assert scan_client_hello(hello(sni((7, b"??"), (0, b"y.example")))) == Hello("y.example")
    assert scan_client_hello(hello(sni((7, b"??")))) == Hello(None)
    assert scan_client_hello(hello(sni((0, b"_srv.example")))) == Hello("_srv.example")
    assert scan_client_hello(hello(sni((0, b"a")))) == Hello("a")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET / HTTP/1.1\r\n", "record type 71 is not a handshake"),
        (records(handshake(body(None)), kind=0x17), "record type 23 is not a handshake"),
        (struct.pack("!BHH", 0x16, 0x0301, 0), "a handshake record of 0 bytes"),
        (struct.pack("!BHH", 0x16, 0x0301, MAX_RECORD + 1), "of 16385 bytes (1 to 16384)"),
        (records(handshake(body(None), kind=2)), "handshake message type 2 is not a ClientHello"),
        (records(b"\x01" + (MAX_HELLO + 1).to_bytes(3, "big")), "of 65537 bytes is over 65536"),
        (records(handshake(b"\x03\x03" + bytes(10))), "truncated field"),
        (records(handshake(body(None)[:35] + b"\x20")), "truncated field"),
        (records(handshake(body(b"") + b"\x00")), "does not match the message"),
        (records(handshake(body(None) + b"\x00")), "unpack_from requires"),
        (hello(struct.pack("!HH", 10, 9) + b"\x00"), "extension 10 runs past"),
        (hello(extension(0, b"\x00\x05\x00\x00\x01")), "list's length does not match"),
        (hello(extension(0, vector(2, b"\x00\x00\x09ab"))), "runs past its list"),
        (hello(sni((0, b"bad name.example"))), "is not a DNS host name"),
        (hello(sni((0, b"trailing.dot."))), "is not a DNS host name"),
        (hello(sni((0, b"198.51.100.2"))), "is not a DNS host name"),
        (hello(sni((0, b""))), "is not a DNS host name"),
        (hello(sni((0, b"x" * 254))), "is not a DNS host name"),
        (hello(sni((0, "bü.example".encode()))), "can't decode byte"),
    ],
)
def test_what_is_not_a_readable_hello_says_why(data: bytes, reason: str) -> None:
    scan = scan_client_hello(data)
    assert isinstance(scan, Malformed), scan
    assert reason in scan.reason


@given(st.binary(max_size=300))
def test_any_bytes_give_an_answer(data: bytes) -> None:
    assert isinstance(scan_client_hello(data), Incomplete | Hello | Malformed)


@given(st.binary(max_size=200))
def test_any_hello_body_gives_an_answer(junk: bytes) -> None:
    assert isinstance(scan_client_hello(records(handshake(junk))), Hello | Malformed)
