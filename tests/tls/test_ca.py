"""The CA files: names, formats, modes, atomic writes, reloading, mitmproxy interop."""

from __future__ import annotations

import datetime
import os
import stat
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from wsproxy.exceptions import TLSError
from wsproxy.tls import CertAuthority, ca_cert_path
from wsproxy.tls import ca as ca_module

FILES = {
    "mitmproxy-ca.pem": 0o600,
    "mitmproxy-ca.p12": 0o600,
    "mitmproxy-ca-cert.pem": 0o644,
    "mitmproxy-ca-cert.cer": 0o644,
    "mitmproxy-ca-cert.p12": 0o644,
}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    return tmp_path / "conf" / "wsproxy"


def test_creates_the_mitmproxy_file_set(confdir: Path) -> None:
    ca = CertAuthority.load_or_create(confdir)
    assert sorted(os.listdir(confdir)) == sorted(FILES)
    assert mode(confdir) == 0o700
    for name, expected in FILES.items():
        assert mode(confdir / name) == expected, name
    assert ca.cert_pem_path == confdir / "mitmproxy-ca-cert.pem" == ca_cert_path(confdir)


def test_files_hold_what_mitmproxy_writes(confdir: Path) -> None:
    ca = CertAuthority.load_or_create(confdir)
    raw = (confdir / "mitmproxy-ca.pem").read_bytes()
    assert raw.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert raw.index(b"PRIVATE KEY-----") < raw.index(b"-----BEGIN CERTIFICATE-----")
    key = serialization.load_pem_private_key(raw, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    assert x509.load_pem_x509_certificates(raw) == [ca.cert]

    pem = (confdir / "mitmproxy-ca-cert.pem").read_bytes()
    assert pem == ca.cert_pem() == (confdir / "mitmproxy-ca-cert.cer").read_bytes()
    assert b"PRIVATE" not in pem

    p12_key, p12_cert, extra = pkcs12.load_key_and_certificates(
        (confdir / "mitmproxy-ca.p12").read_bytes(), None
    )
    assert p12_cert == ca.cert and extra == []
    assert p12_key is not None and p12_key.public_key() == key.public_key()

    # Without a key, PKCS#12 readers list the certificate among the "additional" ones.
    cert_only = pkcs12.load_pkcs12((confdir / "mitmproxy-ca-cert.p12").read_bytes(), None)
    assert cert_only.key is None
    assert [c.certificate for c in cert_only.additional_certs] == [ca.cert]
    assert cert_only.additional_certs[0].friendly_name == b"wsproxy"


def test_ca_certificate_properties(confdir: Path) -> None:
    cert = CertAuthority.load_or_create(confdir).cert
    name = x509.Name(
        [
            x509.NameAttribute(x509.NameOID.COMMON_NAME, "wsproxy"),
            x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "wsproxy"),
        ]
    )
    assert cert.subject == cert.issuer == name
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    now = datetime.datetime.now(datetime.UTC)
    backdate = now - cert.not_valid_before_utc
    assert datetime.timedelta(days=1) < backdate <= datetime.timedelta(days=2, minutes=1)
    assert cert.not_valid_after_utc - now > datetime.timedelta(days=9 * 365)
    cert.verify_directly_issued_by(cert)


def test_reload_gives_the_same_ca_and_rewrites_nothing(confdir: Path) -> None:
    first = CertAuthority.load_or_create(confdir)
    before = {name: (confdir / name).stat().st_mtime_ns for name in FILES}
    second = CertAuthority.load_or_create(confdir)
    assert second.cert == first.cert
    assert second.fingerprint == first.fingerprint
    assert {name: (confdir / name).stat().st_mtime_ns for name in FILES} == before


def test_existing_directory_is_left_alone(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    CertAuthority.load_or_create(tmp_path)
    assert mode(tmp_path) == 0o755


def test_missing_derived_files_are_restored(confdir: Path) -> None:
    ca = CertAuthority.load_or_create(confdir)
    for name in ("mitmproxy-ca.p12", "mitmproxy-ca-cert.pem", "mitmproxy-ca-cert.cer"):
        (confdir / name).unlink()
    again = CertAuthority.load_or_create(confdir)
    assert again.cert == ca.cert
    assert sorted(os.listdir(confdir)) == sorted(FILES)
    assert mode(confdir / "mitmproxy-ca.p12") == 0o600
    assert (confdir / "mitmproxy-ca-cert.pem").read_bytes() == ca.cert_pem()


def test_key_files_are_never_readable_by_others(
    confdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[tuple[str, int]] = []
    real_mkstemp = tempfile.mkstemp

    def spy(*args: object, **kwargs: object) -> tuple[int, str]:
        fd, path = real_mkstemp(*args, **kwargs)  # type: ignore[call-overload]
        created.append((path, stat.S_IMODE(os.fstat(fd).st_mode)))
        return fd, path

    monkeypatch.setattr(tempfile, "mkstemp", spy)
    old_umask = os.umask(0)  # the most permissive umask must not matter
    try:
        CertAuthority.load_or_create(confdir)
    finally:
        os.umask(old_umask)
    assert len(created) == len(FILES)
    assert all(m == 0o600 for _, m in created)
    assert all(Path(p).parent == confdir for p, _ in created)
    assert mode(confdir / "mitmproxy-ca.pem") == 0o600
    assert mode(confdir / "mitmproxy-ca-cert.pem") == 0o644
    assert mode(confdir) == 0o700


def test_a_failed_write_leaves_no_ca_and_no_temp_file(
    confdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(TLSError, match="No space left"):
        CertAuthority.load_or_create(confdir)
    assert os.listdir(confdir) == []


def test_no_temp_files_are_left(confdir: Path) -> None:
    CertAuthority.load_or_create(confdir)
    assert not [n for n in os.listdir(confdir) if n.startswith(".") or n.endswith(".tmp")]


def test_a_concurrent_creator_wins(confdir: Path, tmp_path: Path) -> None:
    """Two first starts at once: the CA linked first is the one both processes use."""
    other = CertAuthority.load_or_create(tmp_path / "other")
    real_create = ca_module._create_ca

    def create_while_another_process_commits() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
        result = real_create()
        pem = (tmp_path / "other" / "mitmproxy-ca.pem").read_bytes()
        (confdir / "mitmproxy-ca.pem").write_bytes(pem)
        return result

    mp = pytest.MonkeyPatch()
    mp.setattr(ca_module, "_create_ca", create_while_another_process_commits)
    try:
        ca = CertAuthority.load_or_create(confdir)
    finally:
        mp.undo()
    assert ca.cert == other.cert
    assert (confdir / "mitmproxy-ca-cert.pem").read_bytes() == other.cert_pem()


def test_write_atomic_exclusive_keeps_the_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"first")
    assert ca_module._write_atomic(target, b"second", 0o600, exclusive=True) is False
    assert target.read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["f"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"garbage", "no usable PEM private key"),
        (b"", "no usable PEM private key"),
    ],
)
def test_unusable_pem_is_a_tls_error(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "mitmproxy-ca.pem").write_bytes(content)
    with pytest.raises(TLSError, match=message):
        CertAuthority.load_or_create(tmp_path)


def test_key_without_certificate_is_a_tls_error(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "mitmproxy-ca.pem").write_bytes(ca_module._key_pem(key))
    with pytest.raises(TLSError, match="no PEM certificate"):
        CertAuthority.load_or_create(tmp_path)


def test_encrypted_key_is_a_tls_error(tmp_path: Path, confdir: Path) -> None:
    ca = CertAuthority.load_or_create(confdir)
    encrypted = ca.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (tmp_path / "mitmproxy-ca.pem").write_bytes(encrypted + ca.cert_pem())
    with pytest.raises(TLSError, match="encrypted"):
        CertAuthority.load_or_create(tmp_path)


def test_mismatched_key_is_a_tls_error(tmp_path: Path, confdir: Path) -> None:
    ca = CertAuthority.load_or_create(confdir)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "mitmproxy-ca.pem").write_bytes(ca_module._key_pem(key) + ca.cert_pem())
    with pytest.raises(TLSError, match="does not match"):
        CertAuthority.load_or_create(tmp_path)


def test_confdir_that_is_a_file_is_a_tls_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(TLSError, match="not a directory"):
        CertAuthority.load_or_create(tmp_path / "file")


def test_ca_cert_path_expands_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ca_cert_path(Path("~/.wsproxy")) == tmp_path / ".wsproxy" / "mitmproxy-ca-cert.pem"


def test_created_parents_of_the_confdir_are_private(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    old_umask = os.umask(0o022)  # the usual umask: mkdir(parents=True) would make them 0755
    try:
        CertAuthority.load_or_create(tmp_path / "a" / "b" / "confdir")
    finally:
        os.umask(old_umask)
    assert mode(tmp_path) == 0o755  # it existed: the user's
    for directory in ("a", "a/b", "a/b/confdir"):
        assert mode(tmp_path / directory) == 0o700, directory


# -- mitmproxy interop ---------------------------------------------------------------------


@pytest.fixture
def certs() -> ModuleType:
    """mitmproxy's CA store; only these tests need mitmproxy (a module-level importorskip
    would skip every test of this file without it)."""
    return pytest.importorskip("mitmproxy.certs")


def test_a_mitmproxy_confdir_loads_in_ours(tmp_path: Path, certs: ModuleType) -> None:
    store = certs.CertStore.from_store(tmp_path, "mitmproxy", 2048)
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    ca = CertAuthority.load_or_create(tmp_path)
    assert ca.cert == store.default_ca._cert
    assert ca.key.public_key() == store.default_privatekey.public_key()
    # Every file mitmproxy wrote is still there, byte for byte, and nothing was added.
    assert {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)} == before
    leaf = ca.leaf_certificate("example.com")
    leaf.verify_directly_issued_by(store.default_ca._cert)


def test_our_confdir_loads_in_mitmproxy(confdir: Path, certs: ModuleType) -> None:
    ca = CertAuthority.load_or_create(confdir)
    store = certs.CertStore.from_store(confdir, "mitmproxy", 2048)
    assert store.default_ca._cert == ca.cert
    assert store.default_privatekey.public_key() == ca.key.public_key()
    entry = store.get_cert("example.com", [x509.DNSName("example.com")])
    entry.cert._cert.verify_directly_issued_by(ca.cert)
