"""Leaf certificates: names, extensions, validity, the shared key and the context cache."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wsproxy.exceptions import TLSError
from wsproxy.tls import CertAuthority
from wsproxy.tls import ca as ca_module


@pytest.fixture
def fresh_ca(ca: CertAuthority) -> CertAuthority:
    """Same CA, empty caches and no leaf key yet."""
    return CertAuthority(ca.confdir, ca.key, ca.cert, [ca.cert])


def san(cert: x509.Certificate) -> list[x509.GeneralName]:
    return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


def cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("example.com", x509.DNSName("example.com")),
        ("Example.COM.", x509.DNSName("example.com")),
        ("bücher.example", x509.DNSName("xn--bcher-kva.example")),
        ("127.0.0.1", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
        ("[::1]", x509.IPAddress(ipaddress.ip_address("::1"))),
        ("2001:db8::1", x509.IPAddress(ipaddress.ip_address("2001:db8::1"))),
    ],
)
def test_subject_alt_name_is_dns_or_ip(
    ca: CertAuthority, host: str, expected: x509.GeneralName
) -> None:
    cert = ca.leaf_certificate(host)
    assert san(cert) == [expected]
    assert cn(cert) == str(expected.value)


def test_common_name_is_truncated_to_64_characters(ca: CertAuthority) -> None:
    host = "a" * 60 + "." + "b" * 60 + ".example"
    cert = ca.leaf_certificate(host)
    assert cn(cert) == host[:64]
    assert san(cert) == [x509.DNSName(host)]


def test_leaf_extensions(ca: CertAuthority) -> None:
    cert = ca.leaf_certificate("example.com")
    ext = cert.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert not ku.value.key_cert_sign
    # RFC 5480 section 3: an EC key may not carry keyEncipherment.
    assert not ku.value.key_encipherment
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    leaf_ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert leaf_ski.digest != ca_ski.digest  # equal SKIs break SChannel (mitmproxy #6494)


def test_leaf_is_signed_by_the_ca(ca: CertAuthority) -> None:
    cert = ca.leaf_certificate("example.com")
    assert cert.issuer == ca.cert.subject
    cert.verify_directly_issued_by(ca.cert)
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"


def test_leaf_validity_is_short_and_backdated(ca: CertAuthority) -> None:
    cert = ca.leaf_certificate("example.com")
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc < datetime.timedelta(days=200)
    assert now - cert.not_valid_before_utc > datetime.timedelta(days=1)
    assert cert.not_valid_after_utc - now > datetime.timedelta(days=170)
    assert cert.not_valid_after_utc <= ca.cert.not_valid_after_utc


def test_serials_are_random(fresh_ca: CertAuthority, ca: CertAuthority) -> None:
    serials = {fresh_ca.leaf_certificate(f"h{i}.example").serial_number for i in range(5)}
    serials.add(ca.leaf_certificate("h0.example").serial_number)
    assert len(serials) == 6
    assert all(s.bit_length() > 64 for s in serials)


@pytest.mark.parametrize("host", ["", "  ", ".", "[]", "a..example", "x" * 64 + ".example"])
def test_unusable_host_names_are_tls_errors(ca: CertAuthority, host: str) -> None:
    with pytest.raises(TLSError, match="cannot make a certificate"):
        ca.leaf_context(host)


def test_one_leaf_key_per_ca_instance(
    fresh_ca: CertAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = ca_module._new_leaf_key

    def counting() -> ec.EllipticCurvePrivateKey:
        calls.append(1)
        return real()

    monkeypatch.setattr(ca_module, "_new_leaf_key", counting)
    certs = [fresh_ca.leaf_certificate(h) for h in ("a.example", "b.example", "10.0.0.1")]
    fresh_ca.client_facing_context("c.example")
    assert len(calls) == 1
    assert len({c.public_key().public_numbers() for c in certs}) == 1  # type: ignore[union-attr]


def test_contexts_are_cached_per_host(
    fresh_ca: CertAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fresh_ca.leaf_context("example.com")
    signed: list[str] = []
    real = fresh_ca._issue_leaf

    def spy(host: str, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        signed.append(host)
        return real(host, key)

    monkeypatch.setattr(fresh_ca, "_issue_leaf", spy)
    assert fresh_ca.leaf_context("example.com") is first
    assert fresh_ca.leaf_context("EXAMPLE.com.") is first
    assert fresh_ca.leaf_context("example.org") is not first
    assert signed == ["example.org"]


def test_client_facing_contexts_are_cached_per_default_host(fresh_ca: CertAuthority) -> None:
    ctx = fresh_ca.client_facing_context("example.com")
    assert fresh_ca.client_facing_context("example.com") is ctx
    assert fresh_ca.client_facing_context("example.org") is not ctx
    assert ctx is not fresh_ca.leaf_context("example.com")  # the SNI callback is its own
    assert ctx.sni_callback is not None


def test_cache_evicts_the_least_recently_used(ca: CertAuthority) -> None:
    cache: ca_module._Cache[int] = ca_module._Cache(2)
    lock = ca._lock
    cache.put("a", 1, lock)
    cache.put("b", 2, lock)
    assert cache.get("a", lock) == 1  # "b" is now the oldest
    cache.put("c", 3, lock)
    assert len(cache) == 2
    assert cache.get("b", lock) is None
    assert cache.get("a", lock) == 1 and cache.get("c", lock) == 3


def test_cache_forgets_old_entries(ca: CertAuthority) -> None:
    clock = [1000.0]
    cache: ca_module._Cache[int] = ca_module._Cache(10, clock=lambda: clock[0])
    cache.put("a", 1, ca._lock)
    clock[0] += ca_module.LEAF_MAX_AGE - 1
    assert cache.get("a", ca._lock) == 1
    clock[0] += 2
    assert cache.get("a", ca._lock) is None
    assert len(cache) == 0


def test_leaf_never_outlives_the_ca(tmp_path: Path, ca: CertAuthority) -> None:
    """A CA close to expiry (an old mitmproxy confdir) caps the leaf's notAfter."""
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
    short = (
        x509.CertificateBuilder()
        .subject_name(ca.cert.subject)
        .issuer_name(ca.cert.subject)
        .public_key(ca.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(ca.cert.not_valid_before_utc)
        .not_valid_after(soon)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    old = CertAuthority(tmp_path, ca.key, short, [short])
    leaf = old.leaf_certificate("example.com")
    assert leaf.not_valid_after_utc == soon.replace(microsecond=0)
    # No SKI on that CA: the AKI is computed from its public key instead.
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert (
        aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key()).digest
    )
