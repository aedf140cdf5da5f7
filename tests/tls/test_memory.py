"""Tests of wsproxy.tls.memory and the pure part of wsproxy.tls.handshakes: two TLS layers
joined in memory, no sockets."""

from __future__ import annotations

import ssl

import pytest

from wsproxy.tls import CertAuthority
from wsproxy.tls.handshakes import is_client_hello
from wsproxy.tls.memory import TLSLayer


def joined(ca: CertAuthority) -> tuple[TLSLayer, TLSLayer]:
    """A client and a server layer after their handshake, each fed what the other wrote."""
    trusting = ssl.create_default_context(cafile=str(ca.cert_pem_path))
    client = TLSLayer(trusting, server_side=False, server_hostname="example.com")
    server = TLSLayer(ca.client_facing_context("example.com"), server_side=True)
    assert client.feed(b"") == b""  # writes the ClientHello
    for _ in range(10):
        if client.handshake_done and server.handshake_done:
            break
        assert server.feed(client.pending()) == b""
        assert client.feed(server.pending()) == b""
    assert client.handshake_done and server.handshake_done
    server.feed(client.pending())  # the client's last flight, if any
    return client, server


def test_data_both_ways(ca: CertAuthority) -> None:
    client, server = joined(ca)
    assert server.feed(client.encrypt(b"hello")) == b"hello"
    assert client.feed(server.encrypt(b"world")) == b"world"


def test_close_notify_ends_the_other_side(ca: CertAuthority) -> None:
    client, server = joined(ca)
    alert = client.close_notify()
    assert alert
    assert server.feed(alert) == b"" and server.closed


@pytest.mark.parametrize(
    ("first", "expected"), [(b"\x16\x03\x01", True), (b"GET / HTTP/1.1", False), (b"", False)]
)
def test_is_client_hello(first: bytes, expected: bool) -> None:
    assert is_client_hello(first) is expected
