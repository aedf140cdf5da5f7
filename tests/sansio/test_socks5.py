"""socks5.py: the SOCKS5 negotiation (RFC 1928, RFC 1929) as playbooks: feed these bytes,
expect these commands. Every message is fed whole and one byte at a time (``feed``), and a
hypothesis property feeds arbitrary bytes in arbitrary pieces."""

from __future__ import annotations

import errno
import ipaddress
import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproxy.sansio.socks5 import (
    SOCKS4_REJECTED,
    TRANSITIONS,
    AddressType,
    Authenticate,
    Connect,
    Established,
    Fail,
    Negotiation,
    Output,
    Reply,
    Send,
    State,
    Step,
    reply,
    reply_for_errno,
)

Feed = Callable[[Negotiation, bytes], list[Output]]

NO_AUTH = b"\x05\x01\x00"  # version 5, one method: no authentication
PASSWORD_ONLY = b"\x05\x01\x02"
BOTH = b"\x05\x02\x00\x02"  # what curl --proxy-user and python-socks with credentials offer
CHOSE_NO_AUTH = Send(b"\x05\x00")
CHOSE_PASSWORD = Send(b"\x05\x02")
AUTH_OK = Send(b"\x01\x00")
AUTH_FAILED = Send(b"\x01\x01")
NO_ACCEPTABLE = Send(b"\x05\xff")
GENERAL_FAILURE = Send(b"\x05\x01\x00\x01\x00\x00\x00\x00\x00\x00")


def request(atyp: int, address: bytes, port: int, command: int = 1, reserved: int = 0) -> bytes:
    return bytes([5, command, reserved, atyp]) + address + port.to_bytes(2, "big")


def ipv4(host: str, port: int, command: int = 1) -> bytes:
    return request(1, ipaddress.IPv4Address(host).packed, port, command)


def ipv6(host: str, port: int) -> bytes:
    return request(4, ipaddress.IPv6Address(host).packed, port)


def domain(name: bytes, port: int, command: int = 1) -> bytes:
    return request(3, bytes([len(name)]) + name, port, command)


def credentials(user: bytes, password: bytes, version: int = 1) -> bytes:
    return bytes([version, len(user)]) + user + bytes([len(password)]) + password


def refused(code: Reply) -> Send:
    return Send(reply(code))


def whole(negotiation: Negotiation, data: bytes) -> list[Output]:
    return negotiation.receive_data(data)


def bytewise(negotiation: Negotiation, data: bytes) -> list[Output]:
    out: list[Output] = []
    for i in range(len(data)):
        out += negotiation.receive_data(data[i : i + 1])
    return out


@pytest.fixture(params=[whole, bytewise], ids=["whole", "bytewise"])
def feed(request: pytest.FixtureRequest) -> Feed:
    result: Feed = request.param
    return result


def open_(*, password: bool = False) -> Negotiation:
    """A negotiation past its greeting (and credentials, with ``password``)."""
    negotiation = Negotiation(require_password=password)
    if password:
        assert negotiation.receive_data(BOTH) == [CHOSE_PASSWORD]
        assert negotiation.receive_data(credentials(b"u", b"p")) == [Authenticate(b"u", b"p")]
        assert negotiation.authenticated(True) == [AUTH_OK]
    else:
        assert negotiation.receive_data(NO_AUTH) == [CHOSE_NO_AUTH]
    assert negotiation.state is State.REQUEST
    return negotiation


def authenticating() -> Negotiation:
    negotiation = Negotiation(require_password=True)
    negotiation.receive_data(PASSWORD_ONLY + credentials(b"u", b"p"))
    assert negotiation.state is State.AUTHENTICATING
    return negotiation


def connecting(data: bytes = b"", *, password: bool = False) -> Negotiation:
    negotiation = open_(password=password)
    outputs = negotiation.receive_data(ipv4("127.0.0.1", 80) + data)
    assert outputs == [Connect("127.0.0.1", 80, AddressType.IPV4)]
    return negotiation


# -- the way through ---------------------------------------------------------------------------


def test_no_authentication_then_connect_ipv4(feed: Feed) -> None:
    negotiation = Negotiation(require_password=False)
    assert feed(negotiation, NO_AUTH) == [CHOSE_NO_AUTH]
    assert negotiation.state is State.REQUEST
    assert feed(negotiation, ipv4("192.0.2.7", 8080)) == [
        Connect("192.0.2.7", 8080, AddressType.IPV4)
    ]
    assert negotiation.state is State.CONNECTING
    assert negotiation.connected("127.0.0.1", 50000) == [
        Send(b"\x05\x00\x00\x01\x7f\x00\x00\x01\xc3\x50"),
        Established(b""),
    ]
    assert negotiation.state is State.ESTABLISHED


def test_the_client_may_offer_several_methods(feed: Feed) -> None:
    negotiation = Negotiation(require_password=False)
    assert feed(negotiation, b"\x05\x03\x01\x02\x00") == [CHOSE_NO_AUTH]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (ipv6("::1", 443), Connect("::1", 443, AddressType.IPV6)),
        (ipv6("2001:db8::5", 1), Connect("2001:db8::5", 1, AddressType.IPV6)),
        (domain(b"localhost", 9000), Connect("localhost", 9000, AddressType.DOMAIN)),
        (domain(b"Echo.Example.", 443), Connect("Echo.Example.", 443, AddressType.DOMAIN)),
        (domain(b"_srv.a-b.example", 65535), Connect("_srv.a-b.example", 65535, 3)),
        # An address written out as a name is an address (curl --socks5-hostname 127.0.0.1).
        (domain(b"127.0.0.1", 80), Connect("127.0.0.1", 80, AddressType.DOMAIN)),
        (domain(b"::1", 80), Connect("::1", 80, AddressType.DOMAIN)),
        (domain(b"a" * 255, 80), Connect("a" * 255, 80, AddressType.DOMAIN)),
    ],
)
def test_connect_to_every_address_type(feed: Feed, message: bytes, expected: Connect) -> None:
    assert feed(open_(), message) == [expected]


def test_the_success_reply_names_an_ipv6_bound_address() -> None:
    negotiation = connecting()
    out = negotiation.connected("fe80::1%eth0", 443)  # the scope id is no part of the address
    assert out[0] == Send(
        b"\x05\x00\x00\x04" + ipaddress.IPv6Address("fe80::1").packed + b"\x01\xbb"
    )


def test_username_password_then_connect(feed: Feed) -> None:
    negotiation = Negotiation(require_password=True)
    assert feed(negotiation, BOTH) == [CHOSE_PASSWORD]
    assert negotiation.state is State.AUTH
    assert feed(negotiation, credentials(b"alice", b"s3cret")) == [
        Authenticate(b"alice", b"s3cret")
    ]
    assert negotiation.state is State.AUTHENTICATING
    assert negotiation.authenticated(True) == [AUTH_OK]
    assert feed(negotiation, domain(b"localhost", 80)) == [
        Connect("localhost", 80, AddressType.DOMAIN)
    ]


def test_empty_username_and_password_are_compared_too(feed: Feed) -> None:
    negotiation = Negotiation(require_password=True)
    assert feed(negotiation, PASSWORD_ONLY + credentials(b"", b"")) == [
        CHOSE_PASSWORD,
        Authenticate(b"", b""),
    ]


def test_a_client_that_does_not_wait_for_answers_is_served_in_order() -> None:
    """Greeting, credentials, request and the tunnel's first bytes in one read."""
    negotiation = Negotiation(require_password=True)
    data = BOTH + credentials(b"u", b"p") + ipv4("127.0.0.1", 80) + b"GET / HTTP/1.1\r\n"
    assert negotiation.receive_data(data) == [CHOSE_PASSWORD, Authenticate(b"u", b"p")]
    assert negotiation.authenticated(True) == [AUTH_OK, Connect("127.0.0.1", 80, 1)]
    out = negotiation.connected("127.0.0.1", 1)
    assert out[1] == Established(b"GET / HTTP/1.1\r\n")


def test_bytes_that_come_while_connecting_are_the_tunnels_first() -> None:
    negotiation = connecting(b"\x16\x03")
    assert negotiation.receive_data(b"\x01") == []
    assert negotiation.connected("127.0.0.1", 1)[1] == Established(b"\x16\x03\x01")


def test_the_password_is_never_in_a_repr() -> None:
    command = Authenticate(b"alice", b"hunter2")
    assert "hunter2" not in repr(command)
    assert "alice" in repr(command)


# -- authentication refused --------------------------------------------------------------------


def test_wrong_credentials_get_status_1_and_the_end(feed: Feed) -> None:
    negotiation = Negotiation(require_password=True)
    feed(negotiation, BOTH + credentials(b"alice", b"wrong-pass"))
    out = negotiation.authenticated(False)
    assert out == [AUTH_FAILED, Fail(None, "username/password: wrong username or password")]
    assert negotiation.state is State.CLOSED
    assert "wrong-pass" not in repr(out) and "alice" not in repr(out)
    assert negotiation.receive_data(ipv4("127.0.0.1", 80)) == []


@pytest.mark.parametrize(
    ("require_password", "greeting", "offered", "wanted"),
    [
        (True, NO_AUTH, "no authentication", "username/password (--proxyauth is set)"),
        (False, PASSWORD_ONLY, "username/password", "no authentication (no --proxyauth"),
        (False, b"\x05\x00", "none", "no authentication"),
        (False, b"\x05\x02\x80\x01", "GSSAPI, method 0x80", "no authentication"),
    ],
)
def test_no_acceptable_method_gets_ff(
    feed: Feed, require_password: bool, greeting: bytes, offered: str, wanted: str
) -> None:
    negotiation = Negotiation(require_password=require_password)
    out = feed(negotiation, greeting)
    assert out[0] == NO_ACCEPTABLE
    assert isinstance(out[1], Fail) and out[1].reply is None and not out[1].client_gone
    assert f"offers {offered};" in out[1].reason
    assert f"this proxy takes {wanted}" in out[1].reason
    assert negotiation.state is State.CLOSED


def test_a_wrong_subnegotiation_version_gets_status_1(feed: Feed) -> None:
    negotiation = Negotiation(require_password=True)
    out = feed(negotiation, BOTH + credentials(b"u", b"p", version=5))
    assert out == [
        CHOSE_PASSWORD,
        AUTH_FAILED,
        Fail(None, "username/password: version 0x05, not 1 (RFC 1929)"),
    ]


# -- greetings that are not SOCKS5 -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "answer", "reason"),
    [
        # SOCKS4 CONNECT 127.0.0.1:80, user "u": it is told "request rejected" in SOCKS4.
        (b"\x04\x01\x00\x50\x7f\x00\x00\x01u\x00", SOCKS4_REJECTED, "SOCKS4 is not supported"),
        (b"GET / HTTP/1.1\r\n\r\n", b"", "an HTTP request, not SOCKS5"),
        (b"CONNECT a:443 HTTP/1.1\r\n", b"", "an HTTP request, not SOCKS5"),
        (b"\x16\x03\x01\x00\x05", b"", "a TLS ClientHello, not SOCKS5"),
        (b"\x00\x00", b"", "version 0x00, not 5"),
        (b"\xff", b"", "version 0xff, not 5"),
    ],
)
def test_a_greeting_that_is_not_socks5_is_refused_at_its_first_byte(
    feed: Feed, data: bytes, answer: bytes, reason: str
) -> None:
    negotiation = Negotiation(require_password=False)
    out = negotiation.receive_data(data[:1])  # one byte is enough to tell
    expected: list[Output] = [Send(answer)] if answer else []
    assert out[:-1] == expected
    assert isinstance(out[-1], Fail) and reason in out[-1].reason
    assert out[-1].reason.startswith("greeting: ")
    assert negotiation.receive_data(data[1:]) == []
    assert feed(Negotiation(require_password=False), data) == out


# -- requests refused --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "code", "reason"),
    [
        (ipv4("192.0.2.1", 80, command=2), 7, "BIND 192.0.2.1:80 is not supported, only CONNECT"),
        (ipv4("192.0.2.1", 53, command=3), 7, "UDP ASSOCIATE 192.0.2.1:53 is not supported"),
        (domain(b"a.example", 1, command=9), 7, "command 0x09 a.example:1 is not supported"),
        (request(4, ipaddress.IPv6Address("::1").packed, 5, command=2), 7, "BIND [::1]:5 is"),
        (request(8, b"\x00" * 4, 80), 8, "unknown address type 0x08"),
        (request(2, b"\x00" * 4, 80), 8, "unknown address type 0x02"),
        (request(1, b"\x7f\x00\x00\x01", 80, reserved=1), 1, "reserved byte 0x01, not 0"),
        (b"\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50", 1, "request: version 0x04, not 5"),
        (ipv4("127.0.0.1", 0), 1, "CONNECT 127.0.0.1:0: port 0"),
        (domain(b"", 80), 1, "an empty domain name"),
        (domain(b"two words", 80), 4, "'two words' is not a host name"),
        (domain(b"-lead.example", 80), 4, "is not a host name"),
        (domain(b"a..b", 80), 4, "is not a host name"),
        (domain(b"caf\xc3\xa9.example", 80), 4, "is not a host name"),
        (domain(b"a.example/x", 80), 4, "is not a host name"),
    ],
)
def test_a_bad_request_gets_its_reply_code(
    feed: Feed, message: bytes, code: int, reason: str
) -> None:
    negotiation = open_()
    out = feed(negotiation, message)
    answer, fail = out
    assert answer == refused(Reply(code))
    assert isinstance(fail, Fail) and fail.reply is Reply(code) and not fail.client_gone
    assert fail.reason.startswith("request: ") and reason in fail.reason
    assert negotiation.state is State.CLOSED


def test_an_unknown_address_type_is_refused_without_waiting_for_an_address() -> None:
    negotiation = open_()
    out = negotiation.receive_data(b"\x05\x01\x00\x08")
    assert out[0] == refused(Reply.ADDRESS_TYPE_NOT_SUPPORTED)


def test_a_request_is_refused_after_authentication_too() -> None:
    negotiation = open_(password=True)
    out = negotiation.receive_data(ipv4("127.0.0.1", 80, command=2))
    assert out[0] == refused(Reply.COMMAND_NOT_SUPPORTED)


# -- the client leaves, time runs out ----------------------------------------------------------


def test_eof_before_anything_is_the_client_leaving_quietly() -> None:
    negotiation = Negotiation(require_password=False)
    assert negotiation.receive_eof() == [
        Fail(None, "closed the connection before its greeting", client_gone=True)
    ]
    assert negotiation.receive_eof() == []


@pytest.mark.parametrize(
    ("setup", "answer", "code", "reason"),
    [
        (lambda n: n.receive_data(b"\x05"), None, None, "mid-greeting (1 byte of it)"),
        (lambda n: n.receive_data(b"\x05\x02\x00"), None, None, "mid-greeting (3 bytes of it)"),
        (
            lambda n: n.receive_data(BOTH + b"\x01\x05ab"),
            AUTH_FAILED,
            None,
            "mid-username/password (4 bytes of it)",
        ),
        (
            lambda n: n.receive_data(BOTH + b"\x01\x01u\x03ab"),
            AUTH_FAILED,
            None,
            "mid-username/password (6 bytes of it)",
        ),
        (
            lambda n: (
                n.receive_data(BOTH + credentials(b"u", b"p"))
                + n.authenticated(True)
                + n.receive_data(b"\x05\x01\x00\x03\x09loc")
            ),
            GENERAL_FAILURE,
            Reply.GENERAL_FAILURE,
            "mid-request (8 bytes of it)",
        ),
    ],
)
def test_eof_mid_message_answers_where_the_client_waits(
    setup: Callable[[Negotiation], list[Output]],
    answer: Send | None,
    code: Reply | None,
    reason: str,
) -> None:
    negotiation = Negotiation(require_password=True)
    setup(negotiation)
    out = negotiation.receive_eof()
    expected: list[Output] = [answer] if answer else []
    assert out == [*expected, Fail(code, f"closed the connection {reason}", client_gone=True)]
    assert negotiation.state is State.CLOSED


@pytest.mark.parametrize(
    ("negotiation", "state"),
    [
        (lambda: connecting(), "connecting"),
        (lambda: authenticating(), "authenticating"),
    ],
)
def test_eof_while_the_shell_works_is_the_client_gone(
    negotiation: Callable[[], Negotiation], state: str
) -> None:
    n = negotiation()
    assert n.receive_eof() == [Fail(None, f"closed the connection while {state}", True)]


@pytest.mark.parametrize(
    ("data", "answer", "code", "reason"),
    [
        (b"", None, None, "no complete greeting in time (0 bytes of it)"),
        (b"\x05\x01", None, None, "no complete greeting in time (2 bytes of it)"),
        (BOTH, AUTH_FAILED, None, "no complete username/password in time (0 bytes of it)"),
    ],
)
def test_timed_out_mid_greeting_or_credentials(
    data: bytes, answer: Send | None, code: Reply | None, reason: str
) -> None:
    negotiation = Negotiation(require_password=True)
    negotiation.receive_data(data)
    expected: list[Output] = [answer] if answer else []
    assert negotiation.timed_out() == [*expected, Fail(code, reason)]


def test_timed_out_mid_request_gets_a_general_failure() -> None:
    negotiation = open_()
    negotiation.receive_data(b"\x05\x01")
    assert negotiation.timed_out() == [
        GENERAL_FAILURE,
        Fail(Reply.GENERAL_FAILURE, "no complete request in time (2 bytes of it)"),
    ]


# -- connecting --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [c for c in Reply if c is not Reply.SUCCEEDED])
def test_a_failed_connect_is_replied_with_its_code(code: Reply) -> None:
    negotiation = connecting()
    out = negotiation.connect_failed(code, "cannot connect")
    assert out == [Send(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])), Fail(code, "cannot connect")]
    assert negotiation.state is State.CLOSED


@pytest.mark.parametrize(
    ("number", "code"),
    [
        (errno.ECONNREFUSED, Reply.CONNECTION_REFUSED),
        (errno.ENETUNREACH, Reply.NETWORK_UNREACHABLE),
        (errno.EHOSTUNREACH, Reply.HOST_UNREACHABLE),
        (errno.ETIMEDOUT, Reply.TTL_EXPIRED),
        (errno.EACCES, Reply.NOT_ALLOWED),
        (errno.ENOMEM, Reply.GENERAL_FAILURE),
        (None, Reply.GENERAL_FAILURE),
    ],
)
def test_reply_for_errno(number: int | None, code: Reply) -> None:
    assert reply_for_errno(number) is code


# -- what the shell must not do ----------------------------------------------------------------


def test_calls_out_of_their_state_are_bugs_in_the_shell() -> None:
    negotiation = Negotiation(require_password=False)
    with pytest.raises(RuntimeError, match="authenticated\\(\\) in state GREETING"):
        negotiation.authenticated(True)
    with pytest.raises(RuntimeError, match="connected\\(\\) in state GREETING"):
        negotiation.connected("127.0.0.1", 1)
    with pytest.raises(RuntimeError, match="connect_failed\\(\\) in state GREETING"):
        negotiation.connect_failed(Reply.GENERAL_FAILURE, "x")
    negotiation = connecting()
    with pytest.raises(RuntimeError, match="nothing was being read"):
        negotiation.timed_out()
    with pytest.raises(ValueError, match="needs a failure code"):
        negotiation.connect_failed(Reply.SUCCEEDED, "x")
    negotiation.connected("127.0.0.1", 1)
    with pytest.raises(RuntimeError, match="belongs to the tunnel"):
        negotiation.receive_data(b"x")
    with pytest.raises(RuntimeError, match="belongs to the tunnel"):
        negotiation.receive_eof()


def test_the_table_ends_every_state_but_the_last_two_by_refusal() -> None:
    refusable = {state for (state, step) in TRANSITIONS if step is Step.REFUSED}
    assert refusable == set(State) - {State.ESTABLISHED, State.CLOSED}
    assert not any(state in (State.ESTABLISHED, State.CLOSED) for state, _ in TRANSITIONS)


# -- properties --------------------------------------------------------------------------------


@given(
    password=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=8),
)
def test_any_chunking_of_a_whole_exchange_gives_the_same_commands(
    password: bool, cuts: list[int]
) -> None:
    greeting = BOTH + (credentials(b"user", b"pass") if password else b"")
    data = greeting + domain(b"echo.example", 443) + b"\x16\x03\x01"

    def run(pieces: list[bytes]) -> list[Output]:
        negotiation = Negotiation(require_password=password)
        out: list[Output] = []
        for piece in pieces:
            out += negotiation.receive_data(piece)
            if negotiation.state is State.AUTHENTICATING:
                out += negotiation.authenticated(True)
        return out + negotiation.connected("127.0.0.1", 9)

    points = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(points)]
    assert run(pieces) == run([data])
    assert run(pieces)[-1] == Established(b"\x16\x03\x01")


@given(password=st.booleans(), data=st.binary(max_size=600), eof=st.booleans())
def test_arbitrary_bytes_never_raise_and_end_at_most_once(
    password: bool, data: bytes, eof: bool
) -> None:
    negotiation = Negotiation(require_password=password)
    out: list[Output] = []
    for i in range(0, len(data), 7):
        out += negotiation.receive_data(data[i : i + 7])
        if negotiation.state is State.AUTHENTICATING:
            out += negotiation.authenticated(False)
        if negotiation.state is State.CONNECTING:
            break
    if eof and negotiation.state is not State.CONNECTING:
        out += negotiation.receive_eof()
    fails = [o for o in out if isinstance(o, Fail)]
    assert len(fails) <= 1
    if fails:
        assert out[-1] is fails[0] and negotiation.state is State.CLOSED
    assert all(isinstance(o, Send | Authenticate | Connect | Fail) for o in out)
