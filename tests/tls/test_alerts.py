"""Sorting failed client handshakes (wsproxy.tls.alerts): each kind of error, and the log lines.

Real errors come from an in-memory handshake (two ``ssl.MemoryBIO`` pairs, no sockets) between
a client context and a server context like the proxy's; the rest are built by hand with the
``reason`` OpenSSL would set.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest
import trustme

from wsproxy.tls.alerts import ALERTS, HandshakeFailureLog, Kind, alert_of, classify

HOST = "127.0.0.1"


def ssl_error(
    reason: str | None, message: str = "", cls: type[ssl.SSLError] = ssl.SSLError
) -> ssl.SSLError:
    """An error like the ssl module raises: ``reason`` is set only when given."""
    error = cls(1, message or f"[SSL: {reason}] {str(reason).lower()} (_ssl.c:1006)")
    if reason is not None:
        error.reason = reason
        error.library = "SSL"
    return error


def server_error(client: ssl.SSLContext, server: ssl.SSLContext) -> ssl.SSLError:
    """Run a handshake in memory; the error the server side ended with."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=HOST)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for obj, out, other_in in ((c, c_out, s_in), (s, s_out, c_in)):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as error:
                if obj is s:
                    return error
            if out.pending:
                other_in.write(out.read())
    raise AssertionError("the handshake did not fail on the server side")


def proxy_side(upstream_ca: trustme.CA, name: str = HOST) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # as wsproxy.tls.contexts.server_context
    upstream_ca.issue_cert(name).configure_cert(ctx)
    return ctx


# -- real handshakes ---------------------------------------------------------------------------


def test_a_client_without_our_ca_sends_unknown_ca(upstream_ca: trustme.CA) -> None:
    error = server_error(ssl.create_default_context(), proxy_side(upstream_ca))
    verdict = classify(error)
    assert (verdict.kind, verdict.alert) == (Kind.DISTRUST, "unknown_ca")


def test_a_name_mismatch_is_bad_certificate(upstream_ca: trustme.CA) -> None:
    client = ssl.create_default_context()
    upstream_ca.configure_trust(client)
    verdict = classify(server_error(client, proxy_side(upstream_ca, "other.test")))
    assert (verdict.kind, verdict.alert) == (Kind.DISTRUST, "bad_certificate")


def test_a_tls_1_1_client_is_incompatible_not_distrust(upstream_ca: trustme.CA) -> None:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cadata=upstream_ca.cert_pem.bytes().decode())
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    server = proxy_side(upstream_ca)
    server.minimum_version = ssl.TLSVersion.TLSv1_3
    verdict = classify(server_error(client, server))
    assert verdict.kind is Kind.INCOMPATIBLE
    assert "no TLS version in common" in verdict.detail
    assert verdict.alert is None  # detected by the proxy itself


def test_no_shared_cipher_is_incompatible(upstream_ca: trustme.CA) -> None:
    client = ssl.create_default_context()
    upstream_ca.configure_trust(client)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers("ECDHE-ECDSA-AES128-SHA")  # and the server only ECDHE-RSA-...
    server = proxy_side(upstream_ca)
    server.maximum_version = ssl.TLSVersion.TLSv1_2
    server.set_ciphers("ECDHE-RSA-AES256-GCM-SHA384")
    verdict = classify(server_error(client, server))
    assert verdict.kind is Kind.INCOMPATIBLE
    assert "NO_SHARED_CIPHER" in verdict.detail


# -- errors by hand ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "alert"),
    [
        ("TLSV1_ALERT_UNKNOWN_CA", "unknown_ca"),
        ("SSLV3_ALERT_BAD_CERTIFICATE", "bad_certificate"),
        ("SSLV3_ALERT_CERTIFICATE_UNKNOWN", "certificate_unknown"),
    ],
)
def test_distrust_alerts(reason: str, alert: str) -> None:
    verdict = classify(ssl_error(reason))
    assert verdict.kind is Kind.DISTRUST
    assert verdict.alert == alert
    assert alert in verdict.detail


@pytest.mark.parametrize(
    ("reason", "alert"),
    [
        ("TLSV1_ALERT_PROTOCOL_VERSION", "protocol_version"),
        ("SSLV3_ALERT_HANDSHAKE_FAILURE", "handshake_failure"),
        ("TLSV1_ALERT_INSUFFICIENT_SECURITY", "insufficient_security"),
        ("SSLV3_ALERT_CERTIFICATE_EXPIRED", "certificate_expired"),
        ("TLSV1_ALERT_NO_APPLICATION_PROTOCOL", "no_application_protocol"),
        ("TLSV1_UNRECOGNIZED_NAME", "unrecognized_name"),
    ],
)
def test_incompatibility_alerts(reason: str, alert: str) -> None:
    verdict = classify(ssl_error(reason))
    assert (verdict.kind, verdict.alert) == (Kind.INCOMPATIBLE, alert)


@pytest.mark.parametrize(
    "reason", ["UNSUPPORTED_PROTOCOL", "NO_SHARED_CIPHER", "VERSION_TOO_LOW", "NO_SHARED_GROUPS"]
)
def test_incompatibility_found_by_the_proxy(reason: str) -> None:
    verdict = classify(ssl_error(reason))
    assert (verdict.kind, verdict.alert) == (Kind.INCOMPATIBLE, None)
    assert reason in verdict.detail


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError("connection closed during the TLS handshake"),
        ConnectionResetError(104, "Connection reset by peer"),
        BrokenPipeError(32, "Broken pipe"),
        TimeoutError(),
        ssl_error("UNEXPECTED_EOF_WHILE_READING", cls=ssl.SSLEOFError),
        ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed (EOF)"),
        ssl_error("TLSV1_ALERT_USER_CANCELLED"),
        ssl_error(None, "[SSL] ssl/tls alert close notify: SSL alert number 0"),
    ],
    ids=["eof", "reset", "pipe", "timeout", "ssl-eof", "zero-return", "user-canceled", "notify"],
)
def test_hangups(error: BaseException) -> None:
    verdict = classify(error)
    assert verdict.kind is Kind.HANGUP, verdict


@pytest.mark.parametrize(
    "error",
    [
        ssl_error("TLSV1_ALERT_DECODE_ERROR"),
        ssl_error("TLSV1_ALERT_INTERNAL_ERROR"),
        ssl_error("WRONG_VERSION_NUMBER"),
        ssl_error(None, "something odd"),
        ssl_error(None, "[SSL] sslv3 alert: SSL alert number 199"),
        ValueError("not a TLS error at all"),
    ],
    ids=["decode-error", "internal-error", "wrong-version", "no-reason", "alert-199", "other"],
)
def test_everything_else_is_malformed(error: BaseException) -> None:
    assert classify(error).kind is Kind.MALFORMED


def test_alert_numbers_when_the_reason_is_unset() -> None:
    assert alert_of(ssl_error(None, "sslv3 alert: SSL alert number 48")) == "unknown_ca"
    assert alert_of(ssl_error(None, "SSL alert number 199")) == "alert 199"
    assert classify(ssl_error(None, "SSL alert number 46")).kind is Kind.DISTRUST
    assert alert_of(ssl_error("NO_SHARED_CIPHER")) is None
    assert alert_of(ConnectionResetError()) is None
    assert len(set(ALERTS.values())) == len(ALERTS)


# -- the log lines -------------------------------------------------------------------------------


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    out = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "wsproxy"]
    caplog.clear()
    return out


def test_a_hangup_does_not_use_up_the_distrust_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "wsproxy")
    failures = HandshakeFailureLog("wsproxy.invalid")
    ca_cert = Path("/conf/mitmproxy-ca-cert.pem")
    for n in range(3):
        failures.report(f"c{n}", "a.test", ConnectionResetError("closed"), ca_cert)
    assert [level for level, _ in lines(caplog)] == [logging.DEBUG] * 3

    failures.report("c4", "a.test", ssl_error("TLSV1_ALERT_UNKNOWN_CA"), ca_cert)
    [(level, text)] = lines(caplog)
    assert level == logging.WARNING
    assert text.startswith("[c4] client TLS handshake for a.test failed: ")
    assert "unknown_ca" in text and str(ca_cert) in text and "http://wsproxy.invalid/" in text

    failures.report("c5", "a.test", ssl_error("SSLV3_ALERT_CERTIFICATE_UNKNOWN"), ca_cert)
    [(level, text)] = lines(caplog)
    assert level == logging.DEBUG and "warned once already" in text

    failures.report("c6", "b.test", ssl_error("SSLV3_ALERT_BAD_CERTIFICATE"), ca_cert)
    assert [level for level, _ in lines(caplog)] == [logging.WARNING]  # another host


def test_incompatibility_warns_once_per_host_and_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "wsproxy")
    failures = HandshakeFailureLog("wsproxy.invalid")
    ca_cert = Path("/ca.pem")
    for reason in ("UNSUPPORTED_PROTOCOL", "UNSUPPORTED_PROTOCOL", "NO_SHARED_CIPHER"):
        failures.report("c1", "a.test", ssl_error(reason), ca_cert)
    got = lines(caplog)
    assert [level for level, _ in got] == [logging.WARNING, logging.DEBUG, logging.WARNING]
    assert all(str(ca_cert) not in text for _, text in got)  # installing the CA would not help
    failures.report("c2", "a.test", ssl_error("TLSV1_ALERT_UNKNOWN_CA"), ca_cert)
    assert [level for level, _ in lines(caplog)] == [logging.WARNING]  # distrust: its own


def test_malformed_is_one_info_line_each_time(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "wsproxy")
    failures = HandshakeFailureLog("wsproxy.invalid")
    for n in range(2):
        failures.report(f"c{n}", "a.test", ssl_error("WRONG_VERSION_NUMBER"), Path("/ca.pem"))
    got = lines(caplog)
    assert [level for level, _ in got] == [logging.INFO, logging.INFO]
    assert "WRONG_VERSION_NUMBER" in got[0][1]
