"""The PROXY protocol header (v1 text and v2 binary) a TCP balancer sends first.

A layer-4 balancer (HAProxy ``send-proxy``/``send-proxy-v2``, AWS NLB, ...) connects to the
proxy itself, so the socket's peer address is the balancer's. The PROXY protocol (haproxy.org,
``proxy-protocol.txt``) puts the real client's address in a header ahead of the client's own
bytes. This module reads that header from whatever bytes arrived so far: ``parse_header`` says
"need more" (``None``), gives the header and how many bytes it took, or raises
``ProxyProtocolError`` with the reason, as early as the bytes allow (a wrong first byte fails
at once, not after 107 bytes).

A LOCAL command (v2, a balancer's health check) or an address family the proxy cannot use
(v1 ``UNKNOWN``, v2 ``AF_UNSPEC``/``AF_UNIX``) carries no client address: ``source`` is None
and the connection keeps the balancer's. TLVs of v2 are skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

__all__ = [
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyProtocolError",
    "parse_header",
]

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # the longest v1 line, CRLF included (the spec's worst case)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED = struct.Struct("!12sBBH")  # signature, version/command, family/transport, length

# v2 version/command and family/transport nibbles.
_V2_VERSION = 0x2
_COMMAND_LOCAL = 0x0
_COMMAND_PROXY = 0x1
_FAMILY_UNSPEC = 0x0
_FAMILY_INET = 0x1
_FAMILY_INET6 = 0x2
_FAMILY_UNIX = 0x3
_TRANSPORT_UNSPEC = 0x0
_TRANSPORT_STREAM = 0x1
_INET_ADDRESSES = struct.Struct("!4s4sHH")
_INET6_ADDRESSES = struct.Struct("!16s16sHH")
_UNIX_ADDRESSES_SIZE = 216


class ProxyProtocolError(ValueError):
    """The bytes are not a valid PROXY protocol header (the message says why)."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What a header says: the client's and the balancer's addresses, when it carries them."""

    version: int  # 1 or 2
    local: bool  # a v2 LOCAL command: the balancer speaks for itself (a health check)
    source: tuple[str, int] | None  # the real client's (host, port); None: keep the peer's
    destination: tuple[str, int] | None  # the address the client connected to


def parse_header(data: bytes) -> tuple[ProxyHeader, int] | None:
    """The header at the start of ``data`` and its length, or None while it is incomplete."""
    if data[: len(V2_SIGNATURE)] == V2_SIGNATURE[: len(data)]:
        return _parse_v2(data)
    if data[: len(V1_PREFIX)] == V1_PREFIX[: len(data)]:
        return _parse_v1(data)
    raise ProxyProtocolError("no PROXY protocol header (neither v1 'PROXY ' nor the v2 signature)")


# -- v1 ----------------------------------------------------------------------------------------


def _parse_v1(data: bytes) -> tuple[ProxyHeader, int] | None:
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        stray = data.find(b"\r", 0, V1_MAX_LENGTH - 1)
        if 0 <= stray < len(data) - 1 or b"\n" in data[:V1_MAX_LENGTH]:
            raise ProxyProtocolError("v1 header: CR and LF must end the line together")
        if len(data) >= V1_MAX_LENGTH:
            raise ProxyProtocolError(f"v1 header longer than {V1_MAX_LENGTH} bytes")
        return None
    line = data[len(V1_PREFIX) : end]
    if not line.isascii():
        raise ProxyProtocolError("v1 header is not ASCII")
    fields = line.decode("ascii").split(" ")
    protocol = fields[0]
    if protocol == "UNKNOWN":
        return ProxyHeader(1, False, None, None), end + 2
    if protocol not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"v1 header: protocol {protocol!r} is not TCP4, TCP6 or UNKNOWN")
    if len(fields) != 5:
        raise ProxyProtocolError(
            f"v1 header: {protocol} needs source, destination and two ports "
            f"separated by single spaces, got {len(fields) - 1} fields"
        )
    family = IPv4Address if protocol == "TCP4" else IPv6Address
    source = _v1_address(fields[1], family, "source"), _v1_port(fields[3], "source")
    destination = _v1_address(fields[2], family, "destination"), _v1_port(fields[4], "destination")
    return ProxyHeader(1, False, source, destination), end + 2


def _v1_address(text: str, family: type[IPv4Address | IPv6Address], role: str) -> str:
    try:
        if "%" in text:  # a scope means nothing on the proxy's side of the balancer
            raise ValueError(text)
        address = ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"v1 header: {role} address {text!r} is not valid") from None
    if not isinstance(address, family):
        version = 4 if family is IPv4Address else 6
        raise ProxyProtocolError(f"v1 header: {role} address {text!r} is not IPv{version}")
    return _plain(address)


def _v1_port(text: str, role: str) -> int:
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0"):
        raise ProxyProtocolError(f"v1 header: {role} port {text!r} is not a decimal number")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"v1 header: {role} port {port} is over 65535")
    return port


# -- v2 ----------------------------------------------------------------------------------------


def _parse_v2(data: bytes) -> tuple[ProxyHeader, int] | None:
    if len(data) > len(V2_SIGNATURE):
        version, command = data[12] >> 4, data[12] & 0x0F
        if version != _V2_VERSION:
            raise ProxyProtocolError(f"v2 header: version {version} is not 2")
        if command not in (_COMMAND_LOCAL, _COMMAND_PROXY):
            raise ProxyProtocolError(f"v2 header: command {command} is neither LOCAL nor PROXY")
    if len(data) < _V2_FIXED.size:
        return None
    _, version_command, family_transport, length = _V2_FIXED.unpack_from(data)
    total = _V2_FIXED.size + length
    if len(data) < total:
        return None
    if version_command & 0x0F == _COMMAND_LOCAL:
        return ProxyHeader(2, True, None, None), total
    family, transport = family_transport >> 4, family_transport & 0x0F
    if family == _FAMILY_UNSPEC:
        return ProxyHeader(2, False, None, None), total
    if transport != _TRANSPORT_STREAM:
        kind = "unspecified" if transport == _TRANSPORT_UNSPEC else f"{transport} (datagram?)"
        raise ProxyProtocolError(f"v2 header: transport {kind} is not a stream (TCP)")
    body = data[_V2_FIXED.size : total]
    if family == _FAMILY_INET:
        return _v2_inet(body, _INET_ADDRESSES, IPv4Address, "IPv4"), total
    if family == _FAMILY_INET6:
        return _v2_inet(body, _INET6_ADDRESSES, IPv6Address, "IPv6"), total
    if family == _FAMILY_UNIX:
        if length < _UNIX_ADDRESSES_SIZE:
            raise ProxyProtocolError(
                f"v2 header: {length} address bytes are too few for AF_UNIX "
                f"(needs {_UNIX_ADDRESSES_SIZE})"
            )
        return ProxyHeader(2, False, None, None), total
    raise ProxyProtocolError(f"v2 header: address family {family} is not known")


def _v2_inet(
    body: bytes,
    layout: struct.Struct,
    family: type[IPv4Address | IPv6Address],
    name: str,
) -> ProxyHeader:
    if len(body) < layout.size:
        raise ProxyProtocolError(
            f"v2 header: {len(body)} address bytes are too few for {name} (needs {layout.size})"
        )
    source, destination, source_port, destination_port = layout.unpack_from(body)
    return ProxyHeader(
        2,
        False,
        (_plain(family(source)), source_port),
        (_plain(family(destination)), destination_port),
    )


def _plain(address: IPv4Address | IPv6Address) -> str:
    """The address as the listener writes a peer's: IPv4-mapped IPv6 as plain IPv4."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
