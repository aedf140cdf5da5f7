"""The upstream context against a trustme server, and the one-line verify error."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
import trustme

from wsproxy.exceptions import TLSError
from wsproxy.tls import describe_verify_error, upstream_context


def connect(upstream_ca: trustme.CA, client: ssl.SSLContext, server_hostname: str) -> str | None:
    """Handshake with a trustme-signed "localhost" server; return the ALPN protocol."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    upstream_ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()

    async def main() -> str | None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client, server_hostname=server_hostname
            )
            alpn: str | None = writer.get_extra_info("ssl_object").selected_alpn_protocol()
            writer.close()
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                await writer.wait_closed()
        finally:
            server.close()
            await server.wait_closed()
        return alpn

    return asyncio.run(asyncio.wait_for(main(), 10))


def test_untrusted_upstream_fails(upstream_ca: trustme.CA) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        connect(upstream_ca, upstream_context(), "localhost")
    assert describe_verify_error(info.value) == (
        "certificate verify failed: unable to get local issuer certificate"
    )


def test_upstream_ca_file_is_trusted(upstream_ca: trustme.CA, upstream_ca_file: Path) -> None:
    assert connect(upstream_ca, upstream_context(upstream_ca_file), "localhost") == "http/1.1"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_upstream_ca_directory_is_trusted(
    upstream_ca: trustme.CA, upstream_ca_file: Path, tmp_path: Path
) -> None:
    # OpenSSL's hashed-directory layout, <subject hash>.0, as c_rehash makes it.
    out = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(upstream_ca_file)],
        check=True,
        capture_output=True,
        text=True,
    )
    (tmp_path / f"{out.stdout.strip()}.0").write_bytes(upstream_ca_file.read_bytes())
    assert connect(upstream_ca, upstream_context(tmp_path), "localhost") == "http/1.1"


def test_hostname_is_checked(upstream_ca: trustme.CA, upstream_ca_file: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        connect(upstream_ca, upstream_context(upstream_ca_file), "other.test")
    reason = describe_verify_error(info.value)
    assert reason.startswith("certificate verify failed: Hostname mismatch")
    assert "other.test" in reason and not reason.endswith(".")


def test_insecure_skips_verification(upstream_ca: trustme.CA) -> None:
    ctx = upstream_context(insecure=True)
    assert not ctx.check_hostname and ctx.verify_mode == ssl.CERT_NONE
    assert connect(upstream_ca, ctx, "other.test") == "http/1.1"


def test_upstream_context_defaults() -> None:
    ctx = upstream_context()
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_missing_ca_file_is_a_tls_error(tmp_path: Path) -> None:
    with pytest.raises(TLSError, match=r"upstream CA file not found: .*nope\.pem"):
        upstream_context(tmp_path / "nope.pem")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_ca_file_is_a_tls_error(upstream_ca_file: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked.pem"
    locked.write_bytes(upstream_ca_file.read_bytes())
    locked.chmod(0)
    with pytest.raises(TLSError, match="not readable"):
        upstream_context(locked)


def test_ca_file_without_certificates_is_a_tls_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(TLSError, match="holds no usable certificate"):
        upstream_context(junk)


def test_describe_finds_the_ssl_error_behind_wrappers(upstream_ca: trustme.CA) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        connect(upstream_ca, upstream_context(), "localhost")
    verify_error = info.value

    class ClientConnectorCertificateError(OSError):
        """Shaped like aiohttp's: the ssl error kept in an attribute."""

        certificate_error = verify_error

    expected = "certificate verify failed: unable to get local issuer certificate"
    assert describe_verify_error(ClientConnectorCertificateError("wrapped")) == expected
    try:
        raise ConnectionError("upstream failed") from verify_error
    except ConnectionError as chained:
        assert describe_verify_error(chained) == expected


def test_describe_other_errors() -> None:
    assert describe_verify_error(ConnectionRefusedError(111, "Connection refused")) == (
        "ConnectionRefusedError: [Errno 111] Connection refused"
    )
    assert describe_verify_error(TimeoutError()) == "TimeoutError"
    bare = ssl.SSLCertVerificationError(1, "made by hand")
    assert describe_verify_error(bare) == "certificate verify failed: made by hand"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with pytest.raises(ssl.SSLError) as info:
        ctx.load_verify_locations(cadata="junk")
    assert describe_verify_error(info.value).startswith("TLS error: ")
