"""TLS over memory BIOs: ciphertext in, plaintext out, and the other way round.

The proxy does TLS this way rather than with ``loop.start_tls``: after a CONNECT it must look
at the first bytes to tell a TLS ClientHello from plain HTTP, and bytes it has read cannot be
handed back to asyncio's own TLS layer. ``proxy.peer.Peer`` feeds this layer what its
transport receives and writes what the layer produces.
"""

from __future__ import annotations

import contextlib
import ssl

__all__ = ["READ_SIZE", "TLSLayer"]

READ_SIZE = 256 * 1024  # plaintext taken from OpenSSL per read() call


_ENCODED: dict[str, bytes] = {}
_ENCODED_KEPT = 1024


def _encoded(hostname: str) -> bytes:
    """The name as ``ssl`` sends it (IDNA, as its ``_encode_hostname`` does with a str),
    encoded once per name: the codec costs microseconds on every upstream connection."""
    encoded = _ENCODED.get(hostname)
    if encoded is None:
        if len(_ENCODED) >= _ENCODED_KEPT:
            _ENCODED.clear()
        encoded = _ENCODED[hostname] = hostname.encode("idna")
    return encoded


class TLSLayer:
    """One TLS connection, either side, over a pair of memory BIOs."""

    def __init__(
        self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None
    ) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.sslobj = context.wrap_bio(
            self.incoming,
            self.outgoing,
            server_side=server_side,
            server_hostname=None if server_hostname is None else _encoded(server_hostname),
        )
        self.handshake_done = False
        self.closed = False

    def feed(self, data: bytes) -> bytes:
        """Take ciphertext; return the plaintext it completes. Raises ssl.SSLError."""
        if data:
            self.incoming.write(data)
        if not self.handshake_done:
            try:
                self.sslobj.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.handshake_done = True
        chunks = []
        incoming, sslobj = self.incoming, self.sslobj
        while True:
            try:
                chunk = sslobj.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.closed = True
                break
            if not chunk:  # SSLObject.read() returns b"" for the peer's close_notify
                self.closed = True
                break
            chunks.append(chunk)
            # OpenSSL takes one record at a time from the BIO: with no ciphertext left in it
            # and no plaintext left over, another read could only raise SSLWantReadError (an
            # exception per chunk received, saved).
            if not incoming.pending and not sslobj.pending():
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def encrypt(self, data: bytes | memoryview) -> bytes:
        self.sslobj.write(data)
        return self.outgoing.read()

    def pending(self) -> bytes:
        return self.outgoing.read() if self.outgoing.pending else b""

    def close_notify(self) -> bytes:
        """Our close_notify alert, to send before a half-close (none if it cannot be made)."""
        with contextlib.suppress(ssl.SSLError):
            self.sslobj.unwrap()
        return self.pending()
