"""The web UI's pure checks (wsproxy.web.security): tokens, Host, Origin."""

from __future__ import annotations

import pytest

from wsproxy.web.security import UiAddress, bearer, is_loopback, token_matches


def test_token_matches_only_the_exact_token() -> None:
    assert token_matches("abc", "abc")
    assert not token_matches("abd", "abc")
    assert not token_matches("ab", "abc")
    assert not token_matches("", "abc")
    assert not token_matches(None, "abc")
    assert token_matches("pässwörd", "pässwörd")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("  Bearer   abc  ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        (None, None),
        ("abc", None),
    ],
)
def test_bearer(header: str | None, token: str | None) -> None:
    assert bearer(header) == token


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("192.0.2.1", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_loopback_ui_accepts_its_own_names_only() -> None:
    ui = UiAddress("127.0.0.1", 8081)
    for host in ("127.0.0.1:8081", "localhost:8081", "LOCALHOST:8081", "[::1]:8081"):
        assert ui.host_allowed(host), host
    for host in (
        "evil.example:8081",  # DNS rebinding: the name is not ours
        "127.0.0.1:8082",  # another port
        "127.0.0.1",  # port 80 implied
        "192.0.2.1:8081",  # not a wildcard listener: other addresses are not ours
        "127.0.0.1:8081/x",
        "user@127.0.0.1:8081",
        "::1:8081",  # IPv6 without brackets
        "[::1:8081",
        "127.0.0.1:80a",
        "",
        None,
    ):
        assert not ui.host_allowed(host), host
    assert ui.url == "http://127.0.0.1:8081"


def test_a_named_or_wildcard_ui() -> None:
    named = UiAddress("192.0.2.7", 9000)
    assert named.host_allowed("192.0.2.7:9000")
    assert not named.host_allowed("localhost:9000")  # it does not listen on loopback
    wild = UiAddress("0.0.0.0", 9000)
    assert wild.host_allowed("192.0.2.7:9000") and wild.host_allowed("[2001:db8::1]:9000")
    assert wild.host_allowed("localhost:9000")
    assert not wild.host_allowed("rebound.example:9000")
    assert wild.url == "http://127.0.0.1:9000"
    assert UiAddress("::1", 80).host_allowed("[::1]")


def test_websocket_origin_must_be_the_page_itself() -> None:
    ui = UiAddress("127.0.0.1", 8081)
    host = "127.0.0.1:8081"
    assert ui.origin_allowed("http://127.0.0.1:8081", host)
    assert ui.origin_allowed(None, host)  # not a browser: the token still decides
    for origin in (
        "http://evil.example",
        "http://evil.example:8081",
        "https://127.0.0.1:8081",
        "http://localhost:8081",  # a different origin than the page's Host
        "http://127.0.0.1:8082",
        "null",
        "http://127.0.0.1:8081/path",
        "",
    ):
        assert not ui.origin_allowed(origin, host), origin
    assert ui.origin_allowed("http://localhost:8081", "localhost:8081")
