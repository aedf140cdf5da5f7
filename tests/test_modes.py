"""``--mode`` spellings (wsproxy.modes): every mode, MODE@PORT and MODE@HOST:PORT, and the
errors a mitmproxy user's spellings get."""

from __future__ import annotations

import pytest

from wsproxy.modes import (
    Listen,
    ModeError,
    Regular,
    Reverse,
    Socks5,
    Transparent,
    UpstreamProxy,
    parse_listen,
    resolve_listens,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("regular", Listen(Regular())),
        ("transparent", Listen(Transparent())),
        ("socks5", Listen(Socks5())),
        ("reverse:ws://example.test:9000", Listen(Reverse("ws", "example.test", 9000))),
        ("reverse:wss://example.test", Listen(Reverse("wss", "example.test", 443))),
        ("reverse:http://example.test", Listen(Reverse("ws", "example.test", 80))),
        ("reverse:https://example.test:8443/", Listen(Reverse("wss", "example.test", 8443))),
        ("reverse:ws://[::1]:9000", Listen(Reverse("ws", "::1", 9000))),
        ("upstream:http://10.0.0.1:3128", Listen(UpstreamProxy("http", "10.0.0.1", 3128))),
        ("upstream:https://proxy.test", Listen(UpstreamProxy("https", "proxy.test", 443))),
        ("regular@8081", Listen(Regular(), None, 8081)),
        ("socks5@0.0.0.0:1081", Listen(Socks5(), "0.0.0.0", 1081)),
        ("transparent@[::1]:8082", Listen(Transparent(), "::1", 8082)),
        ("reverse:http://a.test:81@9001", Listen(Reverse("ws", "a.test", 81), None, 9001)),
        ("regular@0", Listen(Regular(), None, 0)),
    ],
)
def test_spellings(text: str, expected: Listen) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("garbage", "unknown mode 'garbage'"),
        ("reverse", "unknown mode 'reverse'"),
        ("regular:x", "unknown mode 'regular:x'"),
        (
            "reverse:ftp://a.test",
            "reverse mode takes ws://, wss://, http://, https:// (not ftp://)",
        ),
        ("reverse:ws://", "write reverse:SCHEME://HOST[:PORT]"),
        ("reverse:a.test:80", "write reverse:SCHEME://HOST[:PORT]"),
        ("reverse:ws://a.test:http", "'http' is not a port"),
        ("reverse:ws://a.test:0", "'0' is not a port"),
        ("reverse:ws://a.test:70000", "'70000' is not a port"),
        ("upstream:ws://a.test:80", "upstream mode takes http://, https:// (not ws://)"),
        ("regular@http", "'http' after '@' is not a port"),
        ("regular@70000", "'70000' after '@' is not a port"),
        ("regular@:8080", "write the address as @HOST:PORT"),
        ("regular@::1:8080", "@[IPv6]:PORT"),
        ("wireguard", "WireGuard mode is not supported"),
        ("local", "not supported; use transparent mode"),
        ("dns", "DNS mode is not supported"),
        ("socks4", "use socks5"),
        ("upstream_socks5:a:1", "use upstream:http://"),
    ],
)
def test_bad_spellings_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ModeError) as caught:
        parse_listen(text)
    assert message in str(caught.value)


def test_ports_come_from_mode_then_flag_then_default() -> None:
    listens = (parse_listen("regular"), parse_listen("socks5"), parse_listen("transparent@9"))
    assert resolve_listens(listens, "127.0.0.1", None) == (
        Listen(Regular(), "127.0.0.1", 8080),
        Listen(Socks5(), "127.0.0.1", 1080),
        Listen(Transparent(), "127.0.0.1", 9),
    )
    with_flag = resolve_listens(listens[:1] + listens[2:], "::1", 7000)
    assert with_flag == (Listen(Regular(), "::1", 7000), Listen(Transparent(), "::1", 9))


def test_no_mode_is_one_regular_listener() -> None:
    assert resolve_listens((), "127.0.0.1", None) == (Listen(Regular(), "127.0.0.1", 8080),)


def test_two_listeners_on_one_address_are_refused_naming_both() -> None:
    listens = (parse_listen("regular"), parse_listen("transparent"))
    with pytest.raises(ModeError) as caught:
        resolve_listens(listens, "127.0.0.1", None)
    assert str(caught.value) == (
        "--mode regular and --mode transparent would both listen on 127.0.0.1:8080: "
        "give one its own port with MODE@PORT"
    )


def test_two_listeners_on_port_zero_each_get_their_own() -> None:
    listens = (parse_listen("regular@0"), parse_listen("socks5@0"))
    assert [listen.port for listen in resolve_listens(listens, "127.0.0.1", None)] == [0, 0]


def test_same_port_on_different_hosts_is_fine() -> None:
    listens = (parse_listen("regular@127.0.0.1:8080"), parse_listen("regular@127.0.0.2:8080"))
    assert len(resolve_listens(listens, "127.0.0.1", None)) == 2


@pytest.mark.parametrize(
    ("text", "spelled"),
    [
        ("regular", "regular"),
        ("regular@8081", "regular@8081"),
        ("socks5@[::1]:1081", "socks5@[::1]:1081"),
        ("reverse:https://a.test", "reverse:wss://a.test:443"),
        ("upstream:http://[::1]:3128@9", "upstream:http://[::1]:3128@9"),
        ("transparent", "transparent"),
    ],
)
def test_spelled_back(text: str, spelled: str) -> None:
    assert parse_listen(text).spelled() == spelled
