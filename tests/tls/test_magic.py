"""The magic page at http://wsproxy.invalid/: certificate downloads, never the key."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from wsproxy.options import Options
from wsproxy.tls import MAGIC_HOST, CertAuthority, render, trust_notice


def test_magic_host_is_reserved() -> None:
    assert MAGIC_HOST == "wsproxy.invalid"  # RFC 6761 section 6.4: never resolves


@pytest.mark.parametrize("path", ["/", "/index.html", "/?from=docs"])
def test_index_links_every_format(ca: CertAuthority, path: str) -> None:
    status, ctype, body = render(path, ca)
    assert (status, ctype) == (200, "text/html; charset=utf-8")
    page = body.decode()
    for link in ("/cert/pem", "/cert/cer", "/cert/p12"):
        assert f'href="{link}"' in page
    assert ca.fingerprint in page


def test_pem(ca: CertAuthority) -> None:
    status, ctype, body = render("/cert/pem", ca)
    assert (status, ctype) == (200, "application/x-pem-file")
    assert body == ca.cert_pem_path.read_bytes()
    assert x509.load_pem_x509_certificate(body) == ca.cert


def test_cer_is_der(ca: CertAuthority) -> None:
    status, ctype, body = render("/cert/cer", ca)
    assert (status, ctype) == (200, "application/pkix-cert")
    assert x509.load_der_x509_certificate(body) == ca.cert


def test_p12_has_the_certificate_only(ca: CertAuthority) -> None:
    status, ctype, body = render("/cert/p12", ca)
    assert (status, ctype) == (200, "application/x-pkcs12")
    bundle = pkcs12.load_pkcs12(body, None)
    assert bundle.key is None
    assert [c.certificate for c in bundle.additional_certs] == [ca.cert]


@pytest.mark.parametrize(
    "path", ["/cert", "/cert/key", "/mitmproxy-ca.pem", "/cert/pem/", "/../mitmproxy-ca.pem", ""]
)
def test_unknown_paths_are_404(ca: CertAuthority, path: str) -> None:
    status, ctype, body = render(path, ca)
    assert status == 404
    assert ctype.startswith("text/plain")
    assert b"/cert/pem" in body


@pytest.mark.parametrize("path", ["/", "/cert/pem", "/cert/cer", "/cert/p12", "/nope"])
def test_the_private_key_is_never_served(ca: CertAuthority, path: str) -> None:
    _, _, body = render(path, ca)
    assert b"PRIVATE KEY" not in body
    key_der = ca.key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert key_der[-64:] not in body


def test_trust_notice_with_the_default_confdir_names_plain_wsproxy_ca(ca: CertAuthority) -> None:
    """``wsproxy ca`` without ``--confdir`` when the CA is in the default place."""
    default = CertAuthority(Options().confdir, ca.key, ca.cert, [ca.cert])
    line = trust_notice(default, regular=True)
    assert "run `wsproxy ca` for its path" in line
    assert str(Options().confdir / "mitmproxy-ca-cert.pem") in line
