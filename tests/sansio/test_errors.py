"""errors.py: the core's exceptions, their fields, and one tree with wsproxy.exceptions."""

from __future__ import annotations

import pickle

import pytest

import wsproxy
from wsproxy import exceptions
from wsproxy.sansio import errors
from wsproxy.sansio.errors import HandshakeError, HttpError, ProtocolError, WsproxyError


@pytest.mark.parametrize("name", ["WsproxyError", "ProtocolError", "HttpError", "HandshakeError"])
def test_public_names_are_the_core_classes(name: str) -> None:
    # The same object, not a copy: ``except wsproxy.exceptions.X`` catches what the core raises.
    assert getattr(exceptions, name) is getattr(errors, name)
    assert getattr(wsproxy, name) is getattr(errors, name)


@pytest.mark.parametrize(
    "name", ["UpstreamError", "TLSError", "ConfigError", "PluginError", "StartupError"]
)
def test_shell_errors_share_the_root(name: str) -> None:
    cls = getattr(exceptions, name)
    assert issubclass(cls, WsproxyError)
    assert not hasattr(errors, name)


def test_every_public_exception_is_exported() -> None:
    assert sorted(exceptions.__all__) == sorted(
        name
        for name, value in vars(exceptions).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    )


def test_protocol_error_carries_reason_and_close_code() -> None:
    error = ProtocolError("bad opcode")
    assert (error.reason, error.code, str(error)) == ("bad opcode", 1002, "bad opcode")
    assert ProtocolError("too big", 1009).code == 1009
    assert isinstance(error, WsproxyError)
    assert not isinstance(error, HttpError)


def test_http_error_carries_status_reason_and_headers() -> None:
    error = HttpError(404, "no such path")
    assert (error.status, error.reason, error.headers) == (404, "no such path", [])
    assert str(error) == "404: no such path"
    with_headers = HttpError(407, "credentials", [("Proxy-Authenticate", "Basic")])
    assert with_headers.headers == [("Proxy-Authenticate", "Basic")]


def test_handshake_error_is_an_http_error() -> None:
    error = HandshakeError(400, "missing Sec-WebSocket-Key")
    assert isinstance(error, HttpError)
    assert isinstance(error, WsproxyError)
    with pytest.raises(exceptions.HttpError) as caught:
        raise error
    assert caught.value.status == 400


def test_errors_pickle_by_their_defining_module() -> None:
    # Errors may cross a process boundary (a capture reader, a worker): they must round-trip.
    # Exception pickles its ``args``; ``reason`` is args[0] for ProtocolError.
    again = pickle.loads(pickle.dumps(ProtocolError("bad opcode")))
    assert type(again) is ProtocolError
    assert again.reason == "bad opcode"
