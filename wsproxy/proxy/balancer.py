"""Behind a TCP balancer: read the PROXY protocol header (``--proxy-protocol``) and put the
real client's address in place of the balancer's.

Only balancers on ``--proxy-protocol-from`` networks (loopback by default) may send one: a
header from anyone else would let any client claim any address, past ``--allow-clients`` and
the per-client limits. A connection from another address, or one whose first bytes are not a
valid header, is closed without an answer, with a log line saying why: the bytes that came
are not the start of a request, so no HTTP (or SOCKS) answer would be understood.
"""

from __future__ import annotations

import asyncio
import ipaddress

from wsproxy.exceptions import ConfigError
from wsproxy.proxy.peer import Peer
from wsproxy.sansio.proxyproto import ProxyHeader, ProxyProtocolError, parse_header

__all__ = ["DEFAULT_BALANCERS", "BalancerPolicy", "HeaderRefused"]

DEFAULT_BALANCERS = ("127.0.0.0/8", "::1/128")


class HeaderRefused(Exception):
    """The connection did not bring a header the proxy may use (the message says why).
    ``silent``: it closed without sending a byte, as a balancer's TCP health check does."""

    def __init__(self, reason: str, *, silent: bool = False) -> None:
        super().__init__(reason)
        self.silent = silent


class BalancerPolicy:
    """Which peers may send a PROXY header, and reading it from one."""

    def __init__(self, networks: tuple[str, ...]) -> None:
        self._networks = []
        for text in networks:
            try:
                self._networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError as error:
                raise ConfigError(f"--proxy-protocol-from {text!r}: {error}") from None

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self._networks)

    async def read_header(self, peer: Peer, timeout: float) -> ProxyHeader:
        """The header ``peer`` sends first; what follows it stays in the peer's buffer."""
        if not self.trusts(peer.address[0]):
            raise HeaderRefused(
                "not allowed to send a PROXY protocol header (allow it with --proxy-protocol-from)"
            )
        received = b""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await peer.read()
                    if not data:
                        raise HeaderRefused(
                            f"closed after {len(received)} bytes, before a whole PROXY header",
                            silent=not received,
                        )
                    received += data
                    try:
                        result = parse_header(received)
                    except ProxyProtocolError as error:
                        raise HeaderRefused(str(error)) from None
                    if result is not None:
                        header, used = result
                        peer.unread(received[used:])
                        return header
        except TimeoutError:
            raise HeaderRefused(
                f"no whole PROXY header within --handshake-timeout {timeout:g}s"
            ) from None
        except OSError as error:  # the connection failed under us (a reset is just EOF)
            raise HeaderRefused(f"connection failed before a whole PROXY header: {error}") from None
