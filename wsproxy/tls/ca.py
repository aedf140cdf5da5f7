"""The certificate authority: mitmproxy-compatible CA files and leaf certificates on demand.

The files have the names and formats mitmproxy 11 writes (``CertStore.create_store``), so one
confdir serves both tools and a CA already trusted for mitmproxy works unchanged:

=========================  ==================================================  ======
``mitmproxy-ca.pem``       PEM private key, then the PEM certificate            0600
``mitmproxy-ca.p12``       PKCS#12 with key and certificate                     0600
``mitmproxy-ca-cert.pem``  the certificate, PEM                                 0644
``mitmproxy-ca-cert.cer``  the same PEM bytes (mitmproxy's choice, for Android)  0644
``mitmproxy-ca-cert.p12``  PKCS#12 with the certificate only                    0644
=========================  ==================================================  ======

mitmproxy also keeps ``mitmproxy-dhparam.pem``; it writes that file itself when it is missing,
and we have no use for finite-field DH, so we never create it.

``mitmproxy-ca.pem`` is the commit point: it is linked into place only when complete, and the
other files are derived from it (and rewritten if missing) on every start.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import os
import ssl
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wsproxy.exceptions import TLSError
from wsproxy.tls.contexts import server_context
from wsproxy.tls.served import ServedCerts

log = logging.getLogger(__name__)

KEY_FILE = "mitmproxy-ca.pem"
KEY_P12_FILE = "mitmproxy-ca.p12"
CERT_PEM_FILE = "mitmproxy-ca-cert.pem"
CERT_CER_FILE = "mitmproxy-ca-cert.cer"
CERT_P12_FILE = "mitmproxy-ca-cert.p12"

CA_NAME = "wsproxy"
CA_KEY_SIZE = 2048  # as mitmproxy's default
CA_VALIDITY = datetime.timedelta(days=10 * 365)  # as mitmproxy's CA_EXPIRY
# Clients with a slow clock must not see a certificate from the future (mitmproxy does the same).
BACKDATE = datetime.timedelta(days=2)
# Apple and Chromium cap leaf lifetimes (825 and 398 days); 180 stays well below both.
LEAF_VALIDITY = datetime.timedelta(days=180)
LEAF_CACHE_SIZE = 1000
# A proxy that runs for months rebuilds cached leaves long before they expire.
LEAF_MAX_AGE = datetime.timedelta(days=90).total_seconds()

CAKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_SniCallback = Callable[[ssl.SSLObject, str | None, ssl.SSLContext], int | None]
_V = TypeVar("_V")


def ca_cert_path(confdir: Path) -> Path:
    """Where the CA certificate users should trust lives (``wsproxy ca --path``)."""
    return Path(confdir).expanduser() / CERT_PEM_FILE


def _new_leaf_key() -> ec.EllipticCurvePrivateKey:
    """P-256: far faster to make than RSA 2048, and accepted by every current browser."""
    return ec.generate_private_key(ec.SECP256R1())


class CertAuthority:
    """A CA key and certificate that sign one leaf per host, with the SSL contexts built on them."""

    def __init__(
        self, confdir: Path, key: CAKey, cert: x509.Certificate, chain: list[x509.Certificate]
    ) -> None:
        self.confdir = confdir
        self.key = key
        self.cert = cert
        # ``chain`` is what follows each leaf on the wire: the CA first, then any intermediates
        # a mitmproxy pem holds after it (mitmproxy sends them all too).
        self._chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        self._aki = _authority_key_id(cert, key)
        self._lock = threading.Lock()
        self._leaf_key: ec.EllipticCurvePrivateKey | None = None
        self._leaves: _Cache[tuple[bytes, ssl.SSLContext]] = _Cache(LEAF_CACHE_SIZE)
        self._facing: _Cache[ssl.SSLContext] = _Cache(LEAF_CACHE_SIZE)
        # True when load_or_create made this CA (the first start with this confdir), so the
        # proxy can say once where it is and how to trust it.
        self.created = False
        # --certs: certificates served instead of a generated leaf for the hosts they are for.
        self.served: ServedCerts | None = None

    # -- files -----------------------------------------------------------------------------

    @classmethod
    def load_or_create(cls, confdir: Path) -> CertAuthority:
        """Load the CA from ``confdir``, creating the directory (0700) and the CA if missing."""
        confdir = Path(confdir).expanduser()
        try:
            _ensure_private_dir(confdir)
            key_path = confdir / KEY_FILE
            created = False
            if not key_path.exists():
                key, cert = _create_ca()
                # If another process got there first, its CA wins and we load that one.
                pem = _key_pem(key) + _cert_pem(cert)
                created = _write_atomic(key_path, pem, 0o600, exclusive=True)
            ca = cls._load(confdir)
            ca.created = created
            ca._write_missing_files()
        except OSError as e:
            raise TLSError(f"cannot set up the CA in {confdir}: {e}") from e
        return ca

    @classmethod
    def _load(cls, confdir: Path) -> CertAuthority:
        path = confdir / KEY_FILE
        raw = path.read_bytes()
        try:
            key = serialization.load_pem_private_key(raw, password=None)
        except TypeError as e:
            raise TLSError(f"{path}: the CA key is encrypted; wsproxy needs it unencrypted") from e
        except ValueError as e:
            raise TLSError(f"{path}: no usable PEM private key: {e}") from e
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise TLSError(f"{path}: a {type(key).__name__} CA key is not supported (RSA or EC)")
        try:
            certs = x509.load_pem_x509_certificates(raw)
        except ValueError as e:
            raise TLSError(f"{path}: no PEM certificate after the key: {e}") from e
        if certs[0].public_key() != key.public_key():
            raise TLSError(f"{path}: the first certificate does not match the private key")
        if certs[0].not_valid_after_utc < datetime.datetime.now(datetime.UTC):
            log.warning("the CA certificate in %s has expired; delete the CA files", path)
        return cls(confdir, key, certs[0], certs)

    def _write_missing_files(self) -> None:
        """Derive the other four files from the pem, so an interrupted first start heals."""
        d = self.confdir
        derived: list[tuple[str, Callable[[], bytes], int]] = [
            (KEY_P12_FILE, lambda: _p12(self.cert, self.key), 0o600),
            (CERT_PEM_FILE, self.cert_pem, 0o644),
            (CERT_CER_FILE, self.cert_pem, 0o644),
            (CERT_P12_FILE, self.cert_p12, 0o644),
        ]
        for name, make, mode in derived:
            if not (d / name).exists():
                _write_atomic(d / name, make(), mode)

    @property
    def cert_pem_path(self) -> Path:
        """The certificate file users should trust."""
        return self.confdir / CERT_PEM_FILE

    def cert_pem(self) -> bytes:
        return _cert_pem(self.cert)

    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def cert_p12(self) -> bytes:
        """PKCS#12 with the certificate only: what Windows and macOS import dialogs expect."""
        return _p12(self.cert, None)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate, colon-separated, to compare with what a browser shows."""
        return self.cert.fingerprint(hashes.SHA256()).hex(":").upper()

    # -- leaves ----------------------------------------------------------------------------

    def leaf_context(self, host: str) -> ssl.SSLContext:
        """A server context presenting a leaf for ``host``; built once, then served from an LRU."""
        return self._leaf(host)[1]

    def leaf_certificate(self, host: str) -> x509.Certificate:
        """The leaf that ``leaf_context(host)`` presents, for display and tests."""
        return x509.load_pem_x509_certificates(self._leaf(host)[0])[0]

    def client_facing_context(self, default_host: str) -> ssl.SSLContext:
        """The context for ``start_tls(server_side=True)`` towards a client.

        Its own certificate is for ``default_host`` (the CONNECT target), used when the client
        sends no SNI, as clients do for IP addresses (RFC 6066 section 3). When SNI names
        another host, the callback swaps in that host's leaf context before the handshake goes on.
        """
        host = _normalize_host(default_host)
        ctx = self._facing.get(host, self._lock)
        if ctx is None:
            ctx = server_context(self._leaf(host)[0])
            ctx.sni_callback = self._sni_callback(host)
            self._facing.put(host, ctx, self._lock)
        return ctx

    def _sni_callback(self, default_host: str) -> _SniCallback:
        def on_sni(sslobj: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> int | None:
            try:
                if server_name and _normalize_host(server_name) != default_host:
                    sslobj.context = self.leaf_context(server_name)
            except Exception as e:
                # An exception escaping here would be printed as "unraisable" by CPython; we
                # refuse the handshake with an alert instead and say why on one line.
                log.warning("TLS: no certificate for SNI %r: %s", server_name, e)
                return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
            return None

        return on_sni

    def _leaf(self, host: str) -> tuple[bytes, ssl.SSLContext]:
        host = _normalize_host(host)
        served = self.served.find(host) if self.served is not None else None
        if served is not None:
            return served.bundle, served.context
        entry = self._leaves.get(host, self._lock)
        if entry is None:
            # Built outside the lock: two threads may race to sign the same host, which is
            # harmless, while holding the lock would serialise every handshake behind one.
            key = self._get_leaf_key()
            bundle = _key_pem(key) + _cert_pem(self._issue_leaf(host, key)) + self._chain_pem
            entry = (bundle, server_context(bundle))
            self._leaves.put(host, entry, self._lock)
        return entry

    def _get_leaf_key(self) -> ec.EllipticCurvePrivateKey:
        """One key for every leaf of this CA instance: signing is cheap, key generation is not."""
        with self._lock:
            if self._leaf_key is None:
                self._leaf_key = _new_leaf_key()
            return self._leaf_key

    def _issue_leaf(self, host: str, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        san = _subject_alt_name(host)
        now = datetime.datetime.now(datetime.UTC)
        not_after = min(now + LEAF_VALIDITY, self.cert.not_valid_after_utc)
        usage = _key_usage(
            digital_signature=True, key_encipherment=isinstance(key, rsa.RSAPrivateKey)
        )
        builder = (
            x509.CertificateBuilder()
            # RFC 5280 caps the CN at 64 characters; the SAN carries the full name anyway.
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(san.value)[:64])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(self._aki, critical=False)
        )
        return builder.sign(self.key, hashes.SHA256())


class _Cache(Generic[_V]):
    """An LRU that also forgets entries older than ``LEAF_MAX_AGE``."""

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, _V]] = OrderedDict()

    def get(self, key: str, lock: threading.Lock) -> _V | None:
        with lock:
            item = self._items.get(key)
            if item is None:
                return None
            if self._clock() - item[0] > LEAF_MAX_AGE:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: str, value: _V, lock: threading.Lock) -> None:
        with lock:
            self._items[key] = (self._clock(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


# -- certificate building ------------------------------------------------------------------


def _create_ca() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=CA_KEY_SIZE)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, CA_NAME),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(ca: x509.Certificate, key: CAKey) -> x509.AuthorityKeyIdentifier:
    """Copy the CA's own SKI when it has one: a CA made by other tools may hash differently."""
    try:
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _normalize_host(host: str) -> str:
    """Lower-case, without IPv6 brackets or the root dot, so one host gets one cache entry."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.rstrip(".")
    if not host:
        raise TLSError("cannot make a certificate for an empty host name")
    return host


def _subject_alt_name(host: str) -> x509.GeneralName:
    """An IP address SAN for addresses (RFC 5280 4.2.1.6), else a DNS name in IDNA form."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return x509.DNSName(host.encode("idna").decode("ascii"))
    except UnicodeError as e:
        raise TLSError(f"cannot make a certificate for {host!r}: {e}") from e


def _key_pem(key: CAKey) -> bytes:
    # TraditionalOpenSSL ("BEGIN RSA PRIVATE KEY") is what mitmproxy writes; keep the file alike.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _p12(cert: x509.Certificate, key: CAKey | None) -> bytes:
    return pkcs12.serialize_key_and_certificates(
        CA_NAME.encode(), key, cert, None, serialization.NoEncryption()
    )


# -- files ---------------------------------------------------------------------------------


def _ensure_private_dir(path: Path) -> None:
    """Create ``path`` with mode 0700, and each missing parent too (``mkdir(parents=True)``
    would make those 0777 minus the umask, usually 0755); existing directories are the user's
    and left alone."""
    if path.is_dir():
        return
    missing = [path]
    missing += [parent for parent in path.parents if not parent.exists()]
    for directory in reversed(missing):  # the outermost first
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise TLSError(f"{directory} exists and is not a directory") from None
            continue  # made by someone else meanwhile: theirs
        os.chmod(directory, 0o700)  # mkdir's mode went through the umask


def _write_atomic(path: Path, data: bytes, mode: int, *, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` so readers see the old file, the new one, or none: never half.

    The temp file comes from ``mkstemp``, which opens it ``O_EXCL`` with mode 0600, so a key
    is never readable by others, not even for an instant. ``exclusive`` links it into place
    only if ``path`` does not exist yet, and returns False when someone else was first.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        if not exclusive:
            os.replace(tmp, path)
        elif not _link_if_absent(tmp, path):
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(path.parent)
    return True


def _link_if_absent(src: str, dst: Path) -> bool:
    try:
        os.link(src, dst)
    except FileExistsError:
        return False
    except OSError:
        # Some filesystems (FAT, some FUSE) have no hard links: a plain check then replace.
        if dst.exists():
            return False
        os.replace(src, dst)
    return True


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable; not every platform lets a directory be fsynced."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
