"""The proxy's two TLS handshakes: as the server a client sees after CONNECT, and as the
client of an upstream; and how to tell a ClientHello from plain HTTP.

Both run over a connection that already carries TCP (``proxy.peer.Peer``, with its memory-BIO
``tls.memory.TLSLayer``); this module only needs the three calls of ``TLSConnection``. A
client's failure is reported through ``alerts.HandshakeFailureLog`` (warn only when the CA is
distrusted or no TLS could be agreed); an upstream's becomes an ``UpstreamError`` with the
status to answer the client with (504 for a timeout, 502 otherwise).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Protocol

from wsproxy.exceptions import UpstreamError
from wsproxy.tls.alerts import HandshakeFailureLog
from wsproxy.tls.contexts import describe_verify_error

if TYPE_CHECKING:
    from wsproxy.tls.ca import CertAuthority

__all__ = [
    "TLS_HANDSHAKE_RECORD",
    "TLSConnection",
    "accept_client",
    "connect_upstream",
    "is_client_hello",
]

TLS_HANDSHAKE_RECORD = 0x16  # the first byte of a TLS ClientHello (RFC 8446 5.1)


class TLSConnection(Protocol):
    """What a handshake needs of a connection (``proxy.peer.Peer`` is one)."""

    def start_tls(
        self, context: ssl.SSLContext, *, server_side: bool, hostname: str | None
    ) -> None: ...

    async def handshake_tls(self, deadline: float | None = None) -> None: ...

    def abort(self) -> None: ...


def is_client_hello(first: bytes) -> bool:
    """Whether the first bytes a client sent in a tunnel start a TLS handshake."""
    return bool(first) and first[0] == TLS_HANDSHAKE_RECORD


async def accept_client(
    conn: TLSConnection,
    ca: CertAuthority,
    host: str,
    *,
    timeout: float,
    failures: HandshakeFailureLog,
    conn_id: str,
) -> bool:
    """Be the TLS server for ``host`` (a leaf signed by ``ca``); False when it failed."""
    conn.start_tls(ca.client_facing_context(host), server_side=True, hostname=None)
    try:
        await conn.handshake_tls(_deadline(timeout))
    except OSError as error:  # ssl.SSLError, a reset, EOF or TimeoutError
        # Warns only when the client distrusts the CA or cannot agree on TLS: a hang-up
        # (Chromium drops its spare preconnect sockets after the ClientHello) is debug.
        failures.report(conn_id, host, error, ca.cert_pem_path)
        return False
    return True


async def connect_upstream(
    conn: TLSConnection, context: ssl.SSLContext, host: str, *, where: str, timeout: float
) -> None:
    """TLS with the upstream ``host`` (``where`` is host:port, for the error)."""
    conn.start_tls(context, server_side=False, hostname=host)
    try:
        await conn.handshake_tls(_deadline(timeout))
    except TimeoutError:
        conn.abort()
        raise UpstreamError(f"TLS handshake with {where} timed out", 504) from None
    except (ssl.SSLError, ConnectionError) as error:
        conn.abort()
        raise UpstreamError(
            f"TLS with {where} failed: {describe_verify_error(error)}", 502, "tls"
        ) from None


def _deadline(timeout: float) -> float | None:
    """The loop time a handshake must be done by (None: ``timeout`` 0, no limit)."""
    return asyncio.get_running_loop().time() + timeout if timeout else None
