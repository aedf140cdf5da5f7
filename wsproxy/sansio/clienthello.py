"""The server name a TLS ClientHello asks for (SNI, RFC 6066 section 3), read before any
handshake is done.

A redirected connection names no host: the proxy knows only the address the client connected
to. The name the client wants is in its first flight, and the proxy needs it before it chooses
between piping (``--ignore-hosts``) and intercepting, and before it connects upstream with
that name for SNI and the certificate check. ``scan_client_hello`` reads the buffered bytes:
it says the hello is incomplete, gives the name (or None without the extension), or says why
the bytes are not a ClientHello it can read. It never raises, and reads at most
``MAX_HELLO`` bytes of handshake (mitmproxy's own peek reads a whole hello the same way).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

__all__ = ["MAX_HELLO", "Hello", "Incomplete", "Malformed", "Scan", "scan_client_hello"]

# RFC 8446 5.1: a record's fragment is at most 2^14 bytes; a hello may span several records.
MAX_RECORD = 1 << 14
# The largest ClientHello waited for: a post-quantum key share (Chromium's ML-KEM, about
# 1.2 KiB) and many PSK identities fit; a client that sends more is not waited on.
MAX_HELLO = 64 * 1024

HANDSHAKE_RECORD = 0x16  # ContentType handshake (RFC 8446 5.1)
CLIENT_HELLO = 1  # HandshakeType client_hello (RFC 8446 4)
SERVER_NAME = 0  # ExtensionType server_name (RFC 6066 3)
HOST_NAME = 0  # NameType host_name (RFC 6066 3)

_RECORD_HEADER = struct.Struct("!BHH")  # type, legacy_record_version, length
_U16 = struct.Struct("!H")
# RFC 6066 3: "HostName" is an ASCII DNS host name, without a trailing dot; no IP literals.
_HOST_NAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_IPV4_LIKE = re.compile(r"[0-9.]+")


@dataclass(frozen=True)
class Incomplete:
    """More bytes are needed to read the whole ClientHello."""


@dataclass(frozen=True)
class Hello:
    """A whole ClientHello; ``server_name`` is its SNI host name in lower case, or None."""

    server_name: str | None


@dataclass(frozen=True)
class Malformed:
    """Not a ClientHello this reader understands; ``reason`` says which check failed."""

    reason: str


Scan = Incomplete | Hello | Malformed


class _Bad(Exception):
    """A check failed inside the hello's body (becomes ``Malformed``)."""


def scan_client_hello(data: bytes) -> Scan:
    """What the first bytes of a connection say about the server name (see the module)."""
    handshake = bytearray()
    offset = 0
    while True:
        if len(handshake) >= 4:
            length = int.from_bytes(handshake[1:4], "big")
            if handshake[0] != CLIENT_HELLO:
                return Malformed(f"handshake message type {handshake[0]} is not a ClientHello")
            if length > MAX_HELLO:
                return Malformed(f"a ClientHello of {length} bytes is over {MAX_HELLO}")
            if len(handshake) >= 4 + length:
                try:
                    return Hello(_server_name(bytes(handshake[4 : 4 + length])))
                except (_Bad, struct.error, UnicodeDecodeError) as error:
                    return Malformed(f"ClientHello: {error}")
        if len(data) - offset < _RECORD_HEADER.size:
            return Incomplete()
        kind, _version, size = _RECORD_HEADER.unpack_from(data, offset)
        if kind != HANDSHAKE_RECORD:
            return Malformed(f"record type {kind} is not a handshake")
        if size == 0 or size > MAX_RECORD:
            return Malformed(f"a handshake record of {size} bytes (1 to {MAX_RECORD})")
        start = offset + _RECORD_HEADER.size
        if len(data) - start < size:
            return Incomplete()
        handshake += data[start : start + size]
        offset = start + size


def _server_name(body: bytes) -> str | None:
    """The host_name of the server_name extension of a ClientHello body (RFC 8446 4.1.2)."""
    pos = 2 + 32  # legacy_version, random
    pos = _skip(body, pos, 1)  # legacy_session_id <0..32>
    pos = _skip(body, pos, 2)  # cipher_suites <2..2^16-2>
    pos = _skip(body, pos, 1)  # legacy_compression_methods <1..2^8-1>
    if pos == len(body):
        return None  # no extensions at all (RFC 5246 7.4.1.2 allows it)
    (ext_len,) = _U16.unpack_from(body, pos)
    pos += 2
    end = pos + ext_len
    if end != len(body):
        raise _Bad("the extensions' length does not match the message")
    while pos < end:
        kind, size = struct.unpack_from("!HH", body, pos)
        pos += 4
        if pos + size > end:
            raise _Bad(f"extension {kind} runs past the extensions")
        if kind == SERVER_NAME:
            return _host_name(body[pos : pos + size])
        pos += size
    return None


def _host_name(ext: bytes) -> str | None:
    """The first host_name of a ServerNameList (RFC 6066 3 allows one of each type)."""
    (list_len,) = _U16.unpack_from(ext, 0)
    if list_len + 2 != len(ext):
        raise _Bad("the server name list's length does not match its extension")
    pos = 2
    while pos < len(ext):
        kind = ext[pos]
        (size,) = _U16.unpack_from(ext, pos + 1)
        pos += 3
        if pos + size > len(ext):
            raise _Bad("a server name runs past its list")
        if kind == HOST_NAME:
            name = ext[pos : pos + size].decode("ascii")
            if _HOST_NAME.fullmatch(name) is None or _IPV4_LIKE.fullmatch(name):
                raise _Bad(f"server name {name[:80]!r} is not a DNS host name")
            return name.lower()
        pos += size
    return None


def _skip(body: bytes, pos: int, width: int) -> int:
    """Past a vector whose length takes ``width`` bytes."""
    if pos + width > len(body):
        raise _Bad("truncated field")
    size = int.from_bytes(body[pos : pos + width], "big")
    if pos + width + size > len(body):
        raise _Bad("truncated field")
    return pos + width + size
