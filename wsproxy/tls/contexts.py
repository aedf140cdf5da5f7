"""SSL contexts: the server side that clients see, and the client side that talks upstream.

Both sides offer only ``http/1.1`` in ALPN: a WebSocket upgrade is an HTTP/1.1 request
(RFC 6455 section 4.1), and a client that negotiated ``h2`` with us would expect RFC 8441
extended CONNECT, which the proxy does not speak.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from wsproxy.exceptions import TLSError

ALPN_PROTOCOLS = ["http/1.1"]

# tmpfs keeps the leaf key off the disk for the instant it exists as a file.
_SHM = "/dev/shm"


def server_context(pem_bundle: bytes) -> ssl.SSLContext:
    """Build a server context from PEM bytes holding a private key, a leaf and its chain.

    ``SSLContext.load_cert_chain`` only reads files, so the bundle goes into a private
    directory (mode 0700, the file itself 0600 from creation) that is removed as soon as
    OpenSSL has read it.
    """
    import tempfile  # only runs that intercept TLS get here: tempfile's imports are ~1 MB

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(ALPN_PROTOCOLS)
    base = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK | os.X_OK) else None
    try:
        with tempfile.TemporaryDirectory(prefix="wsproxy-leaf-", dir=base) as tmp:
            path = os.path.join(tmp, "leaf.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem_bundle)
            ctx.load_cert_chain(path)
    except (OSError, ssl.SSLError) as e:
        raise TLSError(f"cannot load a leaf certificate: {e}") from e
    return ctx


def upstream_context(upstream_ca: Path | None = None, insecure: bool = False) -> ssl.SSLContext:
    """Client context for the upstream leg: system trust store plus ``upstream_ca`` if given.

    ``upstream_ca`` may be a PEM file or an OpenSSL hashed directory (``c_rehash``).
    ``insecure`` turns off hostname and chain checks, for test servers with throwaway certs.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(ALPN_PROTOCOLS)
    if upstream_ca is not None:
        path = Path(upstream_ca).expanduser()
        try:
            if path.is_dir():
                ctx.load_verify_locations(capath=str(path))
            else:
                ctx.load_verify_locations(cafile=str(path))
        except FileNotFoundError as e:
            raise TLSError(f"upstream CA file not found: {path}") from e
        except PermissionError as e:
            raise TLSError(f"upstream CA file not readable: {path}") from e
        except (OSError, ssl.SSLError, ValueError) as e:
            raise TLSError(f"upstream CA file {path} holds no usable certificate: {e}") from e
    if insecure:
        # check_hostname must go first: OpenSSL refuses CERT_NONE while it is on.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def describe_verify_error(exc: BaseException) -> str:
    """One line saying why an upstream TLS handshake failed, for the proxy's 502 log line.

    Libraries wrap the ``ssl`` error (aiohttp keeps it in ``certificate_error``; asyncio
    chains it), so the cause chain is searched for the most specific one.
    """
    found = _find_ssl_error(exc)
    # The ssl module sets verify_message and reason only on errors it raised itself.
    reason = getattr(found, "reason", None) or getattr(found, "strerror", None) or str(found)
    if isinstance(found, ssl.SSLCertVerificationError):
        reason = getattr(found, "verify_message", None) or reason
        return f"certificate verify failed: {reason}".rstrip(".")
    if isinstance(found, ssl.SSLError):
        return f"TLS error: {reason}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _find_ssl_error(exc: BaseException) -> BaseException:
    """Walk ``certificate_error``, ``__cause__`` and ``__context__`` to the first SSL error."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    fallback: BaseException | None = None
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        if isinstance(current, ssl.SSLError) and fallback is None:
            fallback = current
        for attr in ("certificate_error", "__cause__", "__context__"):
            nxt = getattr(current, attr, None)
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return fallback if fallback is not None else exc
