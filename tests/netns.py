"""Network namespaces for the tests that need a router: a client, a router where the proxy
runs, and servers, joined by veth pairs, with TEST-NET (RFC 5737) and documentation
(RFC 3849) addresses. Nothing of the machine's own network is touched: every link is created
inside the test's namespaces (``ip -n NS link add ... peer ... netns NS2``), and deleting the
namespaces removes them with all their links and firewall rules.

::

    client 192.0.2.2 / 2001:db8:1::2 --- 192.0.2.1 / 2001:db8:1::1  router  (the proxy)
                                         198.51.100.1 / 2001:db8:2::1  |
    server 198.51.100.2 / 2001:db8:2::2 --------------------------------+
           203.0.113.2 (a second address, on its loopback)

The client has no proxy setting at all: its default routes lead through the router, where
``redirect_iptables`` or ``redirect_nft`` send its TCP traffic to the proxy.

Needs root and ``ip`` (iproute2), and ``iptables``/``nft`` for the rules: skipped without
them, except with ``CI=true``, where the test fails instead.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

# The probe that tells whether a proxy in a namespace accepts yet (run inside it by
# ``accepting_probe``): it exits 0 once a connection succeeds, 3 if the proxy process ended.
_PROBE = """
import socket, sys, time
host, port, pid, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] in "ZX":
                sys.exit(3)
    except FileNotFoundError:
        sys.exit(3)
    try:
        socket.create_connection((host, port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.02)
sys.exit(2)
"""

_counter = itertools.count(1)


def require(*tools: str) -> None:
    """Skip (fail under ``CI=true``) unless this runs as root with ``tools`` installed."""
    missing = [tool for tool in ("ip", *tools) if shutil.which(tool) is None]
    why = ""
    if os.geteuid() != 0:
        why = "network namespaces need root"
    elif missing:
        why = f"{', '.join(missing)} not found (apt-get install iproute2 iptables nftables)"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the namespace tests cannot run: {why}")
        pytest.skip(why)


def in_netns(namespace: str, *command: str) -> list[str]:
    """``command`` run inside ``namespace``."""
    return ["ip", "netns", "exec", namespace, *command]


def run(*command: str) -> str:
    """Run a setup command; its stderr in the error when it fails."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def accepting_probe(namespace: str, host: str, port: int, pid: int, timeout: float) -> list[str]:
    """A command that waits, inside ``namespace``, until ``host:port`` accepts (see _PROBE)."""
    import sys

    return in_netns(
        namespace, sys.executable, "-c", _PROBE, host, str(port), str(pid), str(timeout)
    )


@dataclass(frozen=True)
class Net:
    """The three namespaces and their addresses."""

    client: str
    router: str
    server: str
    client_ip: str = "192.0.2.2"
    router_client_ip: str = "192.0.2.1"
    router_server_ip: str = "198.51.100.1"
    server_ip: str = "198.51.100.2"
    server_ip_b: str = "203.0.113.2"  # a second server address, routed via server_ip
    client_ip6: str = "2001:db8:1::2"
    router_client_ip6: str = "2001:db8:1::1"
    router_server_ip6: str = "2001:db8:2::1"
    server_ip6: str = "2001:db8:2::2"
    client_link: str = "wsp-c"  # the router's end of the link to the client

    def redirect_iptables(self, port: int, dports: tuple[int, ...] = (80, 443)) -> None:
        """iptables and ip6tables: the client's TCP to ``dports`` goes to the proxy's port."""
        for tool in ("iptables", "ip6tables"):
            for dport in dports:
                run(*in_netns(self.router, tool, "-t", "nat", "-A", "PREROUTING",
                              "-i", self.client_link, "-p", "tcp", "--dport", str(dport),
                              "-j", "REDIRECT", "--to-ports", str(port)))  # fmt: skip

    def redirect_nft(self, port: int, dports: tuple[int, ...] = (80, 443)) -> None:
        """The same with nftables: one ``inet`` table for IPv4 and IPv6."""
        ports = ", ".join(str(p) for p in dports)
        ruleset = (
            "table inet wsproxy_test {\n"
            "  chain prerouting {\n"
            "    type nat hook prerouting priority dstnat; policy accept;\n"
            f'    iifname "{self.client_link}" tcp dport {{ {ports} }} redirect to :{port}\n'
            "  }\n"
            "}\n"
        )
        done = subprocess.run(
            in_netns(self.router, "nft", "-f", "-"),
            input=ruleset,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, f"nft -f failed: {done.stderr}\n{ruleset}"


@contextlib.contextmanager
def topology() -> Iterator[Net]:
    """Client, router and server namespaces (unique names), deleted on exit even when the
    setup or the test failed."""
    tag = f"wsp{os.getpid()}-{next(_counter)}"
    net = Net(client=f"{tag}-client", router=f"{tag}-router", server=f"{tag}-server")
    created: list[str] = []
    try:
        for namespace in (net.client, net.router, net.server):
            run("ip", "netns", "add", namespace)
            created.append(namespace)
            run("ip", "-n", namespace, "link", "set", "lo", "up")
        # Both ends of each veth pair are created inside the namespaces, never on the host.
        run("ip", "-n", net.router, "link", "add", net.client_link, "type", "veth",
            "peer", "name", "eth0", "netns", net.client)  # fmt: skip
        run("ip", "-n", net.router, "link", "add", "wsp-s", "type", "veth",
            "peer", "name", "eth0", "netns", net.server)  # fmt: skip
        links = [
            (net.client, "eth0", net.client_ip, net.client_ip6),
            (net.router, net.client_link, net.router_client_ip, net.router_client_ip6),
            (net.router, "wsp-s", net.router_server_ip, net.router_server_ip6),
            (net.server, "eth0", net.server_ip, net.server_ip6),
        ]
        for namespace, link, ip4, ip6 in links:
            run("ip", "-n", namespace, "addr", "add", f"{ip4}/24", "dev", link)
            # nodad: usable at once (duplicate address detection would hold it ~1 s).
            run("ip", "-n", namespace, "addr", "add", f"{ip6}/64", "dev", link, "nodad")
            run("ip", "-n", namespace, "link", "set", link, "up")
        for namespace, gateway, gateway6 in (
            (net.client, net.router_client_ip, net.router_client_ip6),
            (net.server, net.router_server_ip, net.router_server_ip6),
        ):
            run("ip", "-n", namespace, "route", "add", "default", "via", gateway)
            run("ip", "-n", namespace, "-6", "route", "add", "default", "via", gateway6)
        run("ip", "-n", net.server, "addr", "add", f"{net.server_ip_b}/32", "dev", "lo")
        run("ip", "-n", net.router, "route", "add", f"{net.server_ip_b}/32", "via", net.server_ip)
        run(*in_netns(net.router, "sysctl", "-qw", "net.ipv4.ip_forward=1"))
        run(*in_netns(net.router, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"))
        yield net
    finally:
        for namespace in created:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
