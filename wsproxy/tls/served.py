"""Certificates the user brings: ``--certs [DOMAIN=]FILE.pem``, served to clients instead of a
leaf generated for the host (mitmproxy's ``certs`` option).

The file holds the private key and the certificate chain, leaf first, in PEM (any order of
key and certificates; what follows the leaf goes on the wire after it). It is served for
DOMAIN when given (``*.example.com`` covers every name under example.com, ``*`` every host),
and always for the names in the leaf itself (its common name and subject alternative names),
as mitmproxy registers them. Without DOMAIN mitmproxy would also serve it for every other
host (``*``); wsproxy serves a generated leaf there, which the client can verify, and
``--certs '*=FILE'`` asks for mitmproxy's way.

Lookup follows mitmproxy's order: the host itself, then its wildcard forms from the most
specific (``*.b.example.com``, ``*.example.com``, ``*.com``), then ``*``; a later ``--certs``
for the same name wins. Every problem with a file (unreadable, no key, an encrypted key, no
certificate, a key that is not the leaf's) is a ``ConfigError`` that names the file, found at
start-up rather than at the first handshake.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from wsproxy.exceptions import ConfigError, TLSError, os_error_text
from wsproxy.tls.contexts import server_context

__all__ = ["ServedCert", "ServedCerts", "load_served", "parse_spec"]

log = logging.getLogger("wsproxy")

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----\r?\n?", re.DOTALL)


@dataclass(frozen=True)
class ServedCert:
    """One ``--certs`` file, ready to serve: the PEM bundle (key, leaf, chain) and its
    context, and the names it is served for."""

    path: Path
    names: tuple[str, ...]
    bundle: bytes
    context: ssl.SSLContext

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.bundle)[0]


class ServedCerts:
    """Every ``--certs`` file, by the names they are served for."""

    def __init__(self, certs: Sequence[ServedCert]) -> None:
        self._by_name: dict[str, ServedCert] = {}
        for cert in certs:
            for name in cert.names:
                self._by_name[name] = cert  # a later --certs for the same name wins

    def find(self, host: str) -> ServedCert | None:
        """The certificate to serve for ``host`` (lower case, no brackets), if any."""
        for name in _lookup_forms(host):
            cert = self._by_name.get(name)
            if cert is not None:
                return cert
        return None


def _lookup_forms(host: str) -> list[str]:
    """``www.example.com`` -> itself, ``*.example.com``, ``*.com``, ``*``."""
    labels = host.split(".")
    forms = [host]
    if not _is_ip(host):
        forms += ["*." + ".".join(labels[i:]) for i in range(1, len(labels))]
    return [*forms, "*"]


def parse_spec(spec: str) -> tuple[str | None, Path]:
    """``[DOMAIN=]FILE`` -> (DOMAIN lower-cased, or None; FILE)."""
    domain, eq, path = spec.partition("=")
    if not eq:
        domain, path = "", spec
    domain = domain.strip().lower().rstrip(".")
    if eq and not domain:
        raise ConfigError(f"--certs {spec!r}: no domain before '=' (write DOMAIN=FILE or FILE)")
    if "*" in domain and domain != "*" and not (domain.startswith("*.") and "*" not in domain[2:]):
        raise ConfigError(
            f"--certs {spec!r}: a wildcard domain is '*' or starts with '*.' (*.example.com)"
        )
    if not path:
        raise ConfigError(f"--certs {spec!r}: no file after '='")
    return (domain or None), Path(path).expanduser()


def load_served(specs: Sequence[str]) -> ServedCerts:
    """Every ``--certs`` spec loaded and checked; ConfigError for the first bad one."""
    certs = [load_cert(*parse_spec(spec)) for spec in specs]
    for cert in certs:
        log.info("--certs %s: served for %s", cert.path, ", ".join(cert.names))
    return ServedCerts(certs)


def load_cert(domain: str | None, path: Path) -> ServedCert:
    """One certificate file, checked: a key, a leaf first, the key the leaf's."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"--certs {path}: cannot read the file: {os_error_text(error)}") from None
    blocks = [(m.group(1).decode(), m.group(0)) for m in _PEM_BLOCK.finditer(raw)]
    key_blocks = [block for kind, block in blocks if kind.endswith("PRIVATE KEY")]
    cert_blocks = [block for kind, block in blocks if kind == "CERTIFICATE"]
    if not cert_blocks:
        raise ConfigError(f"--certs {path}: no PEM certificate in the file")
    if not key_blocks:
        raise ConfigError(
            f"--certs {path}: no private key in the file (put the PEM key in the same file "
            "as the certificate chain)"
        )
    key = _load_key(path, key_blocks[0])
    try:
        chain = [x509.load_pem_x509_certificate(block) for block in cert_blocks]
    except ValueError as error:
        raise ConfigError(f"--certs {path}: a certificate cannot be read: {error}") from None
    _check_key(path, key, chain)
    names = _names(chain[0])
    if domain is not None:
        names = [domain, *(name for name in names if name != domain)]
    elif not names:
        raise ConfigError(
            f"--certs {path}: the certificate names no host (no common name or subject "
            "alternative name); give one: --certs DOMAIN=FILE"
        )
    if chain[0].not_valid_after_utc < datetime.datetime.now(datetime.UTC):
        log.warning("--certs %s: the certificate expired on %s", path, chain[0].not_valid_after_utc)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    bundle = key_pem + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    try:
        context = server_context(bundle)
    except TLSError as error:
        raise ConfigError(f"--certs {path}: {error}") from None
    return ServedCert(path, tuple(names), bundle, context)


def _load_key(path: Path, block: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(block, password=None)
    except TypeError:
        raise ConfigError(
            f"--certs {path}: the private key is encrypted; decrypt it first "
            "(openssl pkey -in FILE -out PLAIN.pem)"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as error:
        raise ConfigError(f"--certs {path}: the private key cannot be read: {error}") from None


def _check_key(path: Path, key: PrivateKeyTypes, chain: list[x509.Certificate]) -> None:
    """The key must be the leaf's, and the leaf must come first."""
    public = key.public_key()
    if chain[0].public_key() == public:
        return
    for index, cert in enumerate(chain[1:], start=2):
        if cert.public_key() == public:
            raise ConfigError(
                f"--certs {path}: the private key belongs to certificate {index} in the file; "
                "put the leaf certificate first"
            )
    raise ConfigError(f"--certs {path}: the private key does not match the certificate")


def _names(leaf: x509.Certificate) -> list[str]:
    """The leaf's own names: common name, then DNS and IP subject alternative names."""
    names: list[str] = []
    for attribute in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value
        names.append((value.decode() if isinstance(value, bytes) else value).lower())
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    names += [name.lower() for name in san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return list(dict.fromkeys(name.rstrip(".") for name in names if name))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
