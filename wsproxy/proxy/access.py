"""Who may use the proxy: client addresses and HTTP Basic proxy authentication.

An open proxy on a public address is an abuse magnet, so by default only clients on loopback
and private networks are served (as mitmproxy's ``block_global``); ``--allow-clients CIDR``
adds networks. ``--proxyauth user:pass`` requires RFC 7617 Basic credentials in
``Proxy-Authorization`` (RFC 7235 4.4) and answers 407 with ``Proxy-Authenticate`` otherwise;
a SOCKS5 listener asks for the same credentials by RFC 1929 username/password. Credentials
are compared in constant time and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

from wsproxy.exceptions import ConfigError, HttpError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_DEFAULT_NETWORKS = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
)

REALM = 'Basic realm="wsproxy"'
VERDICTS_KEPT = 4096  # client addresses whose verdict is remembered


class AccessPolicy:
    def __init__(self, allow_clients: tuple[str, ...] = (), proxyauth: str | None = None) -> None:
        networks: list[IPNetwork] = []
        for text in (*_DEFAULT_NETWORKS, *allow_clients):
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError as error:
                raise ConfigError(f"--allow-clients {text!r}: {error}") from None
        self._networks = networks
        # Verdicts by address text: a client opens many connections, and parsing its address
        # against every network each time is most of what admission costs. Bounded: emptied
        # when full (a scan from many addresses only costs the parsing it saves otherwise).
        self._verdicts: dict[str, bool] = {}
        self._credentials: bytes | None = None
        if proxyauth is not None:
            _check_proxyauth(proxyauth)
            self._credentials = proxyauth.encode("utf-8")

    def allows(self, address: str) -> bool:
        verdict = self._verdicts.get(address)
        if verdict is None:
            if len(self._verdicts) >= VERDICTS_KEPT:
                self._verdicts.clear()
            verdict = self._verdicts[address] = self._allows(address)
        return verdict

    def _allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self._networks)

    @property
    def requires_password(self) -> bool:
        """Whether ``--proxyauth`` is set."""
        return self._credentials is not None

    def password_matches(self, username: bytes, password: bytes) -> bool:
        """RFC 1929 credentials (a SOCKS5 client's) against ``--proxyauth``: the user name
        is what comes before its first colon, as in Basic (RFC 7617 2). Both halves are
        compared in constant time, whichever differs."""
        if self._credentials is None:
            return True
        user, _, secret = self._credentials.partition(b":")
        user_ok = hmac.compare_digest(username, user)
        secret_ok = hmac.compare_digest(password, secret)
        return user_ok and secret_ok

    def check_proxy_auth(self, header: str | None) -> None:
        """Raise 407 unless ``header`` carries the configured Basic credentials."""
        if self._credentials is None:
            return
        if header is None:
            raise HttpError(407, "proxy authentication required", [("Proxy-Authenticate", REALM)])
        scheme, _, token = header.strip().partition(" ")
        given = b""
        if scheme.lower() == "basic":
            try:
                given = base64.b64decode(token.strip(), validate=True)
            except (binascii.Error, ValueError):
                given = b""
        if not hmac.compare_digest(given, self._credentials):
            raise HttpError(407, "wrong proxy credentials", [("Proxy-Authenticate", REALM)])


def _check_proxyauth(spec: str) -> None:
    """``user:pass``; mitmproxy's other forms get their own answer."""
    if spec == "any":
        raise ConfigError(
            "--proxyauth any (accept any credentials) is not supported: give user:pass"
        )
    if spec.startswith("@"):
        raise ConfigError("--proxyauth @FILE (an htpasswd file) is not supported: give user:pass")
    if spec.startswith(("ldap:", "ldaps:")):
        raise ConfigError("--proxyauth with LDAP is not supported: give user:pass")
    if ":" not in spec:
        raise ConfigError("--proxyauth takes user:pass")
