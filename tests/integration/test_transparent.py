"""Transparent mode end to end, in network namespaces (``tests.netns``): a client with no
proxy setting, a router whose iptables/nftables REDIRECT rules send the client's traffic to
``python -m wsproxy --mode transparent`` running there, and servers behind the router on
TEST-NET addresses. The peers are real: ``websockets`` clients and ``curl`` in the client
namespace, aiohttp servers in the server namespace (``tests.nspeer``).

The server's certificates are split so that the test proves which name the proxy verified
upstream: ``wstest.example`` (and ``ignored.example``) have a certificate without any IP
address, served when the ClientHello names them; a ClientHello without SNI gets one for the
IP addresses only.

Needs root, ``ip``, ``iptables``/``ip6tables`` and ``nft``: skipped without them, except
under ``CI=true``, where the test fails instead.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.browser.harness import Chromium, browser_tools, make_nssdb
from tests.harness import ROOT, ProxyProcess, StartProxy, proxy_free_env
from tests.netns import Net, in_netns, require, topology

pytestmark = pytest.mark.timeout(120)

NAME = "wstest.example"
IGNORED = "ignored.example"
ALLOW = ("--allow-clients", "192.0.2.0/24", "--allow-clients", "2001:db8:1::/64")
RUN_TIMEOUT = 30.0


@dataclass
class Certs:
    names: tuple[Path, Path]  # cert, key for the names (no IP address in it)
    addresses: tuple[Path, Path]  # for the IP addresses only


@pytest.fixture
def net() -> Iterator[Net]:
    require("iptables", "ip6tables", "nft", "curl")
    with topology() as net:
        yield net


@pytest.fixture(scope="module")
def certs(upstream_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Certs:
    tmp = tmp_path_factory.mktemp("server-certs")
    pairs = []
    for label, identities in (
        ("names", (NAME, IGNORED)),
        ("addresses", (Net.server_ip, Net.server_ip_b, Net.server_ip6)),
    ):
        leaf = upstream_ca.issue_cert(*identities)
        cert, key = tmp / f"{label}.pem", tmp / f"{label}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        pairs.append((cert, key))
    return Certs(pairs[0], pairs[1])


class NsServer:
    """``tests.nspeer server`` in the server namespace; ``next(key)`` is its next JSON line
    with that key."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def next(self, key: str, timeout: float = RUN_TIMEOUT) -> Any:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while line := await self.proc.stdout.readline():
                fields = json.loads(line)
                if key in fields:
                    return fields[key]
        raise AssertionError(f"the server ended without a {key!r} line")


@pytest.fixture
async def server(net: Net, certs: Certs) -> AsyncIterator[NsServer]:
    proc = await asyncio.create_subprocess_exec(
        *in_netns(net.server, sys.executable, "-m", "tests.nspeer", "server"),
        "--cert", str(certs.names[0]), "--key", str(certs.names[1]),
        "--address-cert", str(certs.addresses[0]), "--address-key", str(certs.addresses[1]),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=proxy_free_env(),
    )  # fmt: skip
    served = NsServer(proc)
    try:
        assert await served.next("ready", timeout=20)
        yield served
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def run_in(namespace: str, *command: str) -> str:
    """``command`` inside ``namespace``; its stdout (fails with stderr on a timeout)."""
    proc = await asyncio.create_subprocess_exec(
        *in_netns(namespace, *command),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=proxy_free_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0 or out, f"{command} failed: {err.decode(errors='replace')}"
    return out.decode()


async def ws_client(net: Net, url: str, *args: str) -> dict[str, Any]:
    """A ``websockets`` client in the client namespace: what it echoed, or its error."""
    out = await run_in(net.client, sys.executable, "-m", "tests.nspeer", "ws", url, *args)
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


async def curl(net: Net, url: str, *args: str) -> tuple[int, str]:
    """``curl`` in the client namespace, no proxy: status and body."""
    out = await run_in(
        net.client, "curl", "-sS", "--noproxy", "*", "-m", "20", "-w", "\n%{http_code}", *args, url
    )
    body, _, status = out.rpartition("\n")
    return int(status), body


@pytest.fixture
async def transparent(
    start_proxy: StartProxy, net: Net, upstream_ca_file: Path
) -> AsyncIterator[Any]:
    """``await transparent(*extra_args, host=...)``: the proxy in the router namespace."""

    async def start(*args: str, host: str = "0.0.0.0", allow: bool = True) -> ProxyProcess:
        return await start_proxy(
            "--mode", "transparent", "--upstream-ca", str(upstream_ca_file),
            *(ALLOW if allow else ()), *args,
            host=host, netns=net.router,
        )  # fmt: skip

    yield start


ECHO = ["hello", "wörld"]


async def test_ws_and_wss_through_an_iptables_redirect(
    net: Net, server: NsServer, transparent: Any
) -> None:
    proxy = await transparent()
    net.redirect_iptables(proxy.port)
    ca = str(proxy.ca_cert)

    # ws:// to the address: routed by the original destination.
    assert await ws_client(net, f"ws://{net.server_ip}/ws") == {"echo": ECHO, "issuer": None}
    # ws:// under a name: still the original destination, the name is the Host upstream.
    got = await ws_client(net, f"ws://{NAME}/ws", "--connect", net.server_ip)
    assert got == {"echo": ECHO, "issuer": None}
    # wss:// under a name: the client sees the proxy's leaf; upstream, the proxy connects to
    # the address and verifies the name (the name's certificate has no IP address in it).
    got = await ws_client(net, f"wss://{NAME}/ws", "--connect", net.server_ip, "--ca", ca)
    assert got["echo"] == ECHO, got
    assert got["issuer"]["organizationName"] == "wsproxy"
    # wss:// to the address: no SNI, so the leaf is named from the original address.
    got = await ws_client(net, f"wss://{net.server_ip}/ws", "--ca", ca)
    assert got["echo"] == ECHO, got

    text = await proxy.wait_count("WebSocket closed", 4)
    where = f"original destination {net.server_ip}:80"
    assert f"{net.client_ip} redirected, {where}" in text
    assert f"redirected, original destination {net.server_ip}:443" in text
    assert f"WebSocket open {net.server_ip}/ws" in text
    assert f"WebSocket open {NAME}/ws" in text
    assert "Traceback" not in text


async def test_wss_through_an_nft_redirect(net: Net, server: NsServer, transparent: Any) -> None:
    proxy = await transparent()
    net.redirect_nft(proxy.port)
    got = await ws_client(
        net, f"wss://{NAME}/ws", "--connect", net.server_ip, "--ca", str(proxy.ca_cert)
    )
    assert got["echo"] == ECHO, got
    assert await ws_client(net, f"ws://{net.server_ip}/ws") == {"echo": ECHO, "issuer": None}
    text = await proxy.wait_count("WebSocket closed", 2)
    assert f"redirected, original destination {net.server_ip}:443" in text


async def test_ipv6_original_destination(net: Net, server: NsServer, transparent: Any) -> None:
    proxy = await transparent(host="::")
    net.redirect_iptables(proxy.port)  # ip6tables as well
    v6 = net.server_ip6
    assert await ws_client(net, f"ws://[{v6}]/ws") == {"echo": ECHO, "issuer": None}
    got = await ws_client(net, f"wss://{NAME}/ws", "--connect", v6, "--ca", str(proxy.ca_cert))
    assert got["echo"] == ECHO, got
    got = await ws_client(net, f"wss://[{v6}]/ws", "--ca", str(proxy.ca_cert))
    assert got["echo"] == ECHO, got
    text = await proxy.wait_count("WebSocket closed", 3)
    assert f"{net.client_ip6} redirected, original destination [{v6}]:80" in text
    assert f"original destination [{v6}]:443" in text
    assert f"WebSocket open [{v6}]/ws" in text


async def test_a_connection_to_the_proxy_itself_is_refused(
    net: Net, server: NsServer, transparent: Any
) -> None:
    """Not redirected: its original destination is the proxy's own listener. Serving it would
    connect back to the proxy, so it is refused, HTTP with 508, TLS by closing."""
    proxy = await transparent()
    net.redirect_iptables(proxy.port)
    own = f"{net.router_client_ip}:{proxy.port}"
    status, body = await curl(net, f"http://{own}/where")
    assert status == 508, body
    got = await ws_client(net, f"wss://{own}/ws", "--ca", str(proxy.ca_cert))
    assert "error" in got
    text = await proxy.wait_log(lambda t: "TLS refused" in t)
    reason = f"loop detected: the original destination {own} is this proxy's own listener"
    assert f"{net.client_ip} 508: {reason}" in text
    assert f"{net.client_ip} TLS refused: {reason}" in text
    assert "redirected, original destination" not in text  # nothing was served


async def test_a_connection_without_a_nat_record_is_refused(
    net: Net, server: NsServer, transparent: Any
) -> None:
    """No redirect rule at all in the router: netfilter keeps no NAT record of the connection
    and getsockopt fails; the client is told (400) and the log says why."""
    proxy = await transparent()
    status, body = await curl(net, f"http://{net.router_client_ip}:{proxy.port}/where")
    assert status == 400, body
    text = await proxy.wait_log(lambda t: "400: no original destination" in t)
    assert "no original destination (netfilter has no NAT record of it)" in text
    assert "not redirected here by a firewall rule" in text


async def test_host_must_not_name_another_address(
    net: Net, server: NsServer, transparent: Any
) -> None:
    proxy = await transparent()
    net.redirect_iptables(proxy.port)
    url = f"http://{net.server_ip}/where"
    status, body = await curl(net, url, "-H", "Host: 203.0.113.9")
    assert status == 400, body
    text = await proxy.wait_log(lambda t: "400: Host" in t)
    assert (
        f"400: Host 203.0.113.9 is another address than the original destination "
        f"{net.server_ip}:80" in text
    )
    # A name is taken as it is (never resolved), and goes to the original destination.
    status, body = await curl(net, url, "-H", "Host: anything.example")
    assert status == 200, body
    assert json.loads(body)["host"] == "anything.example"
    # The destination's own address, with or without a port, is fine.
    status, body = await curl(net, url)
    assert (status, json.loads(body)["host"]) == (200, net.server_ip)


async def test_ignore_hosts_matches_the_sni_or_the_original_address(
    net: Net, server: NsServer, transparent: Any, upstream_ca_file: Path
) -> None:
    by_name = "^" + re.escape(f"{IGNORED}:443") + "$"
    by_address = "^" + re.escape(f"{net.server_ip_b}:443") + "$"
    proxy = await transparent("--ignore-hosts", by_name, "--ignore-hosts", by_address)
    net.redirect_iptables(proxy.port)
    upstream_ca = str(upstream_ca_file)
    # Piped untouched: the client sees the server's own certificate (from the test CA).
    got = await ws_client(
        net, f"wss://{IGNORED}/ws", "--connect", net.server_ip, "--ca", upstream_ca
    )
    assert got["echo"] == ECHO, got
    assert got["issuer"]["organizationName"] != "wsproxy"
    got = await ws_client(net, f"wss://{net.server_ip_b}/ws", "--ca", upstream_ca)
    assert got["echo"] == ECHO, got
    # Not ignored: intercepted, so a client trusting only the test CA refuses the proxy's leaf.
    got = await ws_client(net, f"wss://{NAME}/ws", "--connect", net.server_ip, "--ca", upstream_ca)
    assert "CERTIFICATE_VERIFY_FAILED" in got.get("error", ""), got
    text = await proxy.wait_log(lambda t: t.count("tunnelled untouched (--ignore-hosts)") >= 2)
    assert f"{net.server_ip}:443 (SNI {IGNORED}): tunnelled untouched" in text
    assert f"{net.server_ip_b}:443: tunnelled untouched" in text


async def test_clients_on_test_net_need_allow_clients(
    net: Net, server: NsServer, transparent: Any
) -> None:
    proxy = await transparent(allow=False)
    net.redirect_iptables(proxy.port)
    status, _ = await curl(net, f"http://{net.server_ip}/where")
    assert status == 403
    text = await proxy.wait_log(lambda t: "403" in t)
    assert f"client {net.client_ip} is not on loopback or a private network" in text


async def test_chromium_without_a_proxy_setting(
    net: Net, server: NsServer, transparent: Any, tmp_path: Path
) -> None:
    """A real browser in the client namespace, with no proxy configured: it opens an https://
    page by name and a wss:// WebSocket from it (an https:// page may not open ws://; the
    Python clients above cover that); the router redirects both to the proxy, which intercepts
    under the SNI name (Chromium trusts only the proxy's CA) and verifies that name upstream."""
    chromium_bin, certutil = browser_tools()
    proxy = await transparent()
    net.redirect_iptables(proxy.port)
    home = tmp_path / "home"
    make_nssdb(certutil, home, proxy.ca_cert)
    wss = f"wss://{NAME}/ws"
    chromium = Chromium(
        chromium_bin,
        f"https://{NAME}/page?ws={wss}",
        None,
        home,
        tmp_path / "profile",
        netns=net.client,
        resolver_rules=f"MAP {NAME} {net.server_ip}, MAP * ~NOTFOUND",
    )
    try:
        report = await server.next("report", timeout=60)
    except TimeoutError:
        message = f"no report from the page\n{chromium.log()}\n{proxy.describe()}"
        raise AssertionError(message) from None
    finally:
        chromium.stop()
    assert report[wss] == f"hello from {wss}", report
    text = await proxy.wait_count("WebSocket closed", 1)
    assert f"{net.client_ip} redirected, original destination {net.server_ip}:443" in text
    assert f"GET https://{NAME}/page" in text
    assert f"WebSocket open {NAME}/ws" in text
