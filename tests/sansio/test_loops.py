"""loops.py: Via entries (RFC 9110 7.6.3) and connections that land on our own listener."""

from __future__ import annotations

from typing import Any

import pytest

from wsproxy.sansio.loops import (
    VIA_PROTOCOL,
    _ip,
    append_via,
    carries_via,
    reaches_own_listener,
    via_entry,
)

ME = "wsproxy-3f2a9c"


def test_via_entry_is_protocol_then_pseudonym() -> None:
    assert VIA_PROTOCOL == "1.1"
    assert via_entry(ME) == "1.1 wsproxy-3f2a9c"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], "1.1 wsproxy-3f2a9c"),
        (["1.0 fred"], "1.0 fred, 1.1 wsproxy-3f2a9c"),
        # RFC 9110 7.6.3's example chain, then us; several lines become one list.
        (
            ["1.0 fred, 1.1 p.example.net", "HTTP/1.1 x"],
            "1.0 fred, 1.1 p.example.net, HTTP/1.1 x, 1.1 wsproxy-3f2a9c",
        ),
    ],
)
def test_append_via_puts_this_proxy_last(values: list[str], expected: str) -> None:
    assert append_via(values, ME) == expected


@pytest.mark.parametrize(
    "values",
    [
        ["1.1 wsproxy-3f2a9c"],
        ["1.0 fred, 1.1 wsproxy-3f2a9c"],
        ["1.0 fred", "  1.1   wsproxy-3f2a9c   (wsproxy)"],  # with a comment, odd spacing
        ["HTTP/1.1 wsproxy-3f2a9c"],  # a protocol name before the version
        [append_via(["1.0 fred"], ME)],
    ],
)
def test_carries_via_finds_our_entry(values: list[str]) -> None:
    assert carries_via(values, ME)


@pytest.mark.parametrize(
    "values",
    [
        [],
        [""],
        ["1.1 fred"],
        ["1.1 wsproxy-3f2a9c0"],  # another pseudonym that merely starts like ours
        ["wsproxy-3f2a9c"],  # a received-by needs its received-protocol before it
        ["1.1, wsproxy-3f2a9c"],
        ["1.1 fred (via wsproxy-3f2a9c)"],  # named in a comment, not as the received-by
    ],
)
def test_carries_via_ignores_other_entries(values: list[str]) -> None:
    assert not carries_via(values, ME)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:127.0.0.1", "127.0.0.1"),  # IPv4-mapped IPv6 is the IPv4 address
        ("fe80::1%eth0", "fe80::1"),  # scope id dropped
        ("0:0:0:0:0:0:0:1", "::1"),  # one spelling
        ("localhost", "localhost"),  # not an address: as it is
    ],
)
def test_ip_spelling(address: str, expected: str) -> None:
    assert _ip(address) == expected


LOCAL = ("127.0.0.1", 50000)


@pytest.mark.parametrize(
    ("remote", "local", "listening"),
    [
        (("127.0.0.1", 8080), LOCAL, [("127.0.0.1", 8080)]),
        (("::ffff:10.0.0.5", 8080), ("10.0.0.5", 4000), [("10.0.0.5", 8080)]),
        (("10.0.0.5", 8080), ("10.0.0.5", 4000), [("::ffff:10.0.0.5", 8080)]),
        # A wildcard listener accepts on every local address: loopback, or the connection's
        # own source address (the kernel picked it because the target is this machine).
        (("127.0.0.2", 8080), LOCAL, [("0.0.0.0", 8080)]),
        (("::1", 8080), ("::1", 4000), [("::", 8080)]),
        (("192.168.1.7", 8080), ("192.168.1.7", 4000), [("0.0.0.0", 8080)]),
        (("fe80::1%eth0", 8080), ("fe80::1%eth0", 4000), [("::", 8080)]),
        # The second of several listeners.
        (("127.0.0.1", 9090), LOCAL, [("127.0.0.1", 8080), ("0.0.0.0", 9090)]),
        (("server.local", 8080), LOCAL, [("server.local", 8080)]),  # a name, spelt the same
        # IPv6 socket addresses as getsockname gives them: flowinfo and scope id too.
        (("2001:db8::1", 8080, 0, 0), ("2001:db8::1", 4000, 0, 0), [("::", 8080, 0, 0)]),
        (("2001:db8::1", 8080), LOCAL, [("0.0.0.0", 8080), ("2001:db8::1", 8080, 0, 0)]),
    ],
)
def test_reaches_own_listener(
    remote: tuple[Any, ...], local: tuple[Any, ...], listening: list[tuple[Any, ...]]
) -> None:
    assert reaches_own_listener(remote, local, listening)


@pytest.mark.parametrize(
    ("remote", "local", "listening"),
    [
        (("127.0.0.1", 8081), LOCAL, [("127.0.0.1", 8080)]),  # another port
        (("127.0.0.1", 8080), LOCAL, []),  # no listener at all
        (("10.0.0.9", 8080), ("10.0.0.5", 4000), [("0.0.0.0", 8080)]),  # another machine
        (("127.0.0.1", 8080), LOCAL, [("10.0.0.5", 8080)]),  # a specific other address
        (("127.0.0.1", 8080), LOCAL, [("localhost", 8080)]),  # a name is not a wildcard
        (("server.local", 8080), LOCAL, [("0.0.0.0", 8080)]),  # nor is a remote name local
    ],
)
def test_does_not_reach_own_listener(
    remote: tuple[str, int], local: tuple[str, int], listening: list[tuple[str, int]]
) -> None:
    assert not reaches_own_listener(remote, local, listening)
