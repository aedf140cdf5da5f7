"""Real TLS handshakes over loopback: the client-facing context as the proxy will use it.

The server accepts plain TCP and then upgrades with ``start_tls(server_side=True)``, which is
what the proxy does after answering a CONNECT; clients trust nothing but our CA file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from wsproxy.tls import CertAuthority


def trusting(ca_file: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


class Seen:
    """What the client saw of the handshake."""

    def __init__(self, sslobj: ssl.SSLObject, greeting: bytes) -> None:
        der = sslobj.getpeercert(binary_form=True)
        assert der is not None
        self.cert = x509.load_der_x509_certificate(der)
        self.alpn = sslobj.selected_alpn_protocol()
        self.greeting = greeting

    @property
    def names(self) -> list[str]:
        ext = self.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return [str(n.value) for n in ext.value]


def handshake(
    ca: CertAuthority,
    default_host: str,
    client_ctx: ssl.SSLContext,
    server_hostname: str | None,
    server_ctx: Callable[[], ssl.SSLContext] | None = None,
) -> Seen:
    """CONNECT-style: plain TCP, then the server starts TLS with the client-facing context."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            ctx = server_ctx() if server_ctx else ca.client_facing_context(default_host)
            await writer.start_tls(ctx)
            writer.write(b"hello")
            await writer.drain()
        except (ssl.SSLError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                await writer.wait_closed()

    async def main() -> Seen:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname=server_hostname
            )
            try:
                seen = Seen(writer.get_extra_info("ssl_object"), await reader.read())
            finally:
                writer.close()
                with contextlib.suppress(ssl.SSLError, ConnectionError):
                    await writer.wait_closed()
        finally:
            server.close()
            await server.wait_closed()
        return seen

    return asyncio.run(asyncio.wait_for(main(), 10))


def test_sni_picks_the_leaf(ca: CertAuthority) -> None:
    seen = handshake(ca, "connect-target.test", trusting(ca.cert_pem_path), "example.test")
    assert seen.names == ["example.test"]
    assert seen.alpn == "http/1.1"
    assert seen.greeting == b"hello"


def test_sni_equal_to_the_default_host(ca: CertAuthority) -> None:
    seen = handshake(ca, "example.test", trusting(ca.cert_pem_path), "EXAMPLE.test")
    assert seen.names == ["example.test"]


def test_no_sni_for_an_ip_host_gets_the_default_leaf(ca: CertAuthority) -> None:
    """Clients send no SNI for IP literals (RFC 6066 section 3) yet check the IP SAN."""
    seen = handshake(ca, "127.0.0.1", trusting(ca.cert_pem_path), "127.0.0.1")
    assert seen.names == ["127.0.0.1"]
    assert seen.greeting == b"hello"


def test_no_sni_at_all_gets_the_default_leaf(ca: CertAuthority) -> None:
    client = trusting(ca.cert_pem_path)
    client.check_hostname = False  # chain still verified against our CA
    seen = handshake(ca, "connect-target.test", client, None)
    assert seen.names == ["connect-target.test"]


def test_leaf_context_alone_serves_its_host(ca: CertAuthority) -> None:
    seen = handshake(
        ca,
        "unused.test",
        trusting(ca.cert_pem_path),
        "direct.test",
        server_ctx=lambda: ca.leaf_context("direct.test"),
    )
    assert seen.names == ["direct.test"]


def test_client_trusting_another_ca_refuses(ca: CertAuthority, tmp_path: Path) -> None:
    other = CertAuthority.load_or_create(tmp_path)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(ca, "example.test", trusting(other.cert_pem_path), "example.test")


def test_sni_failure_is_an_alert_and_a_log_line(
    ca: CertAuthority, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    facing = CertAuthority(ca.confdir, ca.key, ca.cert, [ca.cert])

    def broken(host: str) -> ssl.SSLContext:
        raise RuntimeError("signing failed")

    ctx = facing.client_facing_context("default.test")
    monkeypatch.setattr(facing, "leaf_context", broken)
    # The client sees the alert, or the reset that follows it, depending on timing.
    with (
        caplog.at_level(logging.WARNING, logger="wsproxy.tls.ca"),
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        handshake(facing, "", trusting(ca.cert_pem_path), "boom.test", server_ctx=lambda: ctx)
    assert "no certificate for SNI 'boom.test': signing failed" in caplog.text
    assert "Traceback" not in caplog.text
