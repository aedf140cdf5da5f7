"""request_loop.route in tunnels: a CONNECT tunnel names its server; a redirected one
(transparent mode) goes to the original destination under the SNI or Host name, and refuses a
Host that is another IP address."""

from __future__ import annotations

import pytest

from wsproxy.exceptions import HttpError
from wsproxy.proxy.request_loop import route
from wsproxy.proxy.tunnel import Tunnel
from wsproxy.proxy.upstream import Upstream
from wsproxy.sansio.http11 import Headers, Request
from wsproxy.sansio.targets import parse_target

UPGRADE = [("Upgrade", "websocket"), ("Connection", "Upgrade")]


def routed(tunnel: Tunnel, host: str | None, *, upgrade: bool = True) -> Upstream:
    headers = [("Host", host)] if host is not None else []
    request = Request("GET", "/ws", "HTTP/1.1", Headers([*headers, *(UPGRADE if upgrade else [])]))
    upstream, path = route(
        request, parse_target(request, default_port=tunnel.default_port), tunnel, None
    )
    assert path == "/ws"
    return upstream


def test_a_connect_tunnel_is_unchanged_by_host() -> None:
    """Regular mode: the tunnel's host is the name; Host is neither checked nor used."""
    tunnel = Tunnel("wstest.example", 443, tls=True)
    upstream = routed(tunnel, "203.0.113.9")
    assert upstream == Upstream("wss", "wstest.example", 443)
    assert (upstream.server_name, upstream.authority) == ("wstest.example", "wstest.example")


def test_redirected_tls_goes_to_the_address_under_the_sni_name() -> None:
    tunnel = Tunnel("198.51.100.2", 443, tls=True, server_name="wstest.example", redirected=True)
    for host in ("wstest.example", "other.example", "198.51.100.2", None):
        upstream = routed(tunnel, host)
        assert upstream == Upstream("wss", "198.51.100.2", 443, "wstest.example"), host
        assert upstream.authority == "wstest.example"


def test_redirected_tls_without_sni_keeps_the_address() -> None:
    tunnel = Tunnel("198.51.100.2", 8443, tls=True, redirected=True)
    upstream = routed(tunnel, "wstest.example:8443", upgrade=False)
    assert upstream == Upstream("https", "198.51.100.2", 8443)
    assert upstream.authority == "198.51.100.2:8443"


def test_redirected_plain_http_takes_the_host_name_as_it_is() -> None:
    tunnel = Tunnel("198.51.100.2", 80, tls=False, redirected=True)
    upstream = routed(tunnel, "anything.example")
    assert upstream == Upstream("ws", "198.51.100.2", 80, "anything.example")
    assert upstream.authority == "anything.example"
    assert routed(tunnel, "198.51.100.2:80") == Upstream("ws", "198.51.100.2", 80)
    assert routed(tunnel, None) == Upstream("ws", "198.51.100.2", 80)  # HTTP/1.0 may omit it


def test_redirected_ipv6_host_compares_as_an_address() -> None:
    tunnel = Tunnel("2001:db8:2::2", 80, tls=False, redirected=True)
    assert routed(tunnel, "[2001:DB8:2:0::2]") == Upstream("ws", "2001:db8:2::2", 80)
    with pytest.raises(
        HttpError, match=r"Host 2001:db8::9 is another address .* \[2001:db8:2::2\]:80"
    ):
        routed(tunnel, "[2001:db8::9]")


@pytest.mark.parametrize("tls", [False, True])
def test_redirected_host_naming_another_address_is_400(tls: bool) -> None:
    tunnel = Tunnel("198.51.100.2", 443 if tls else 80, tls=tls, server_name=None, redirected=True)
    with pytest.raises(HttpError) as caught:
        routed(tunnel, "203.0.113.9")
    assert caught.value.status == 400
    assert "Host 203.0.113.9 is another address than the original destination 198.51.100.2" in (
        caught.value.reason
    )
