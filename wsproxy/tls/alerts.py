"""Why a client's TLS handshake with the proxy failed, and which failures deserve a warning.

When wsproxy intercepts a CONNECT it is the TLS server, with a leaf signed by its own CA. A
handshake can fail for four kinds of reason, and only one of them means "install the CA":

* **distrust**: the client sent an alert about our certificate (``unknown_ca``,
  ``bad_certificate``, ``certificate_unknown``, RFC 8446 section 6.2). This is what a client
  that does not trust wsproxy's CA says, so the warning carries the hint.
* **incompatible**: the two sides could not agree (no TLS version or cipher in common, the
  client refused our certificate for another reason such as its expiry). A specific warning,
  with no CA hint: installing the CA would not help.
* **hangup**: the client went away without saying why (EOF right after its ClientHello, a
  reset, a close_notify or user_canceled, a timeout). Browsers do this all the time:
  Chromium opens preconnect sockets and drops the ones it does not need. Debug only.
* **malformed**: anything else (a record OpenSSL cannot parse, an ``internal_error`` or
  ``decode_error`` alert from the client). One info line, as for any broken connection.

``classify`` is pure: it reads the exception's class, ``reason`` and message, never a socket.
``HandshakeFailureLog`` turns verdicts into log lines and keeps the once-per-host sets; only a
real warning fills them, so a hang-up can never use up the warning a later distrust deserves.
"""

from __future__ import annotations

import enum
import logging
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("wsproxy")

# TLS alert descriptions, RFC 8446 section 6 (and RFC 5246 section 7.2 for the older ones).
ALERTS = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}
_ALERT_NAMES = frozenset(ALERTS.values())

# OpenSSL names a received alert SSLV3_ALERT_*, TLSV1_ALERT_*, TLSV13_ALERT_* or TLSV1_*
# (ssl/ssl_err.c); it spells user_canceled with two Ls.
_ALERT_PREFIXES = ("SSLV3_ALERT_", "TLSV13_ALERT_", "TLSV1_ALERT_", "TLSV1_")
_SPELLING = {"user_cancelled": "user_canceled"}
_ALERT_NUMBER = re.compile(r"alert number (\d+)")

DISTRUST_ALERTS = frozenset({"unknown_ca", "bad_certificate", "certificate_unknown"})
HANGUP_ALERTS = frozenset({"close_notify", "user_canceled"})
# Alerts that say the two sides cannot agree, with what each one means to the user.
INCOMPATIBLE_ALERTS = {
    "protocol_version": "no TLS version in common with the client",
    "handshake_failure": "no cipher suite or parameters in common with the client",
    "insufficient_security": "the client wants stronger ciphers than wsproxy offered",
    "inappropriate_fallback": "the client refused a TLS version downgrade",
    "no_application_protocol": "no ALPN protocol in common (wsproxy offers only http/1.1)",
    "unsupported_certificate": "the client does not support wsproxy's certificate type",
    "certificate_expired": "the client says wsproxy's certificate expired (check the clocks)",
    "certificate_revoked": "the client says wsproxy's certificate was revoked",
    "unrecognized_name": "the client refused the server name",
    "access_denied": "the client denied access",
}
# Failures OpenSSL detected itself, as the server, that mean the same.
INCOMPATIBLE_REASONS = {
    "UNSUPPORTED_PROTOCOL": "no TLS version in common with the client (wsproxy needs TLS 1.2+)",
    "VERSION_TOO_LOW": "no TLS version in common with the client (wsproxy needs TLS 1.2+)",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version in common with the client",
    "NO_SHARED_CIPHER": "no cipher suite in common with the client",
    "NO_SHARED_GROUPS": "no key exchange group in common with the client",
    "NO_SUITABLE_KEY_SHARE": "no key exchange group in common with the client",
    "NO_SUITABLE_SIGNATURE_ALGORITHM": "no signature algorithm in common with the client",
    "NO_APPLICATION_PROTOCOL": "no ALPN protocol in common (wsproxy offers only http/1.1)",
    "UNSAFE_LEGACY_RENEGOTIATION_DISABLED": "the client lacks secure renegotiation (RFC 5746)",
}


class Kind(enum.Enum):
    DISTRUST = "distrust"
    INCOMPATIBLE = "incompatible"
    HANGUP = "hangup"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class Verdict:
    """What a failed client handshake means: ``kind`` picks the log level, ``detail`` is the
    line's explanation, ``alert`` the alert the client sent (None if it sent none)."""

    kind: Kind
    detail: str
    alert: str | None = None


def alert_of(error: BaseException) -> str | None:
    """The alert the peer sent, as its RFC name, or None when the error is not one.

    ``reason`` is the OpenSSL reason code; builds that leave it unset still say
    "SSL alert number N" in the message.
    """
    if not isinstance(error, ssl.SSLError):
        return None
    reason = getattr(error, "reason", None) or ""  # unset on errors not raised by ssl
    for prefix in _ALERT_PREFIXES:
        if reason.startswith(prefix):
            name = reason[len(prefix) :].lower()
            name = _SPELLING.get(name, name)
            if name in _ALERT_NAMES:
                return name
    match = _ALERT_NUMBER.search(str(error))
    if match:
        number = int(match.group(1))
        return ALERTS.get(number, f"alert {number}")
    return None


def classify(error: BaseException) -> Verdict:
    """Sort the exception a client-side (proxy as TLS server) handshake ended with."""
    alert = alert_of(error)
    if alert in DISTRUST_ALERTS:
        return Verdict(Kind.DISTRUST, f"the client rejected wsproxy's certificate ({alert})", alert)
    if alert in HANGUP_ALERTS:
        return Verdict(Kind.HANGUP, f"the client hung up ({alert})", alert)
    if alert in INCOMPATIBLE_ALERTS:
        return Verdict(Kind.INCOMPATIBLE, f"{INCOMPATIBLE_ALERTS[alert]} ({alert})", alert)
    if alert is not None:
        return Verdict(Kind.MALFORMED, f"the client sent alert {alert}", alert)
    if isinstance(error, ssl.SSLZeroReturnError | ssl.SSLEOFError):
        return Verdict(Kind.HANGUP, "the client hung up (EOF)")
    if isinstance(error, ssl.SSLError):
        reason = getattr(error, "reason", None) or ""  # unset on errors not raised by ssl
        if reason in INCOMPATIBLE_REASONS:
            return Verdict(Kind.INCOMPATIBLE, f"{INCOMPATIBLE_REASONS[reason]} ({reason})")
        return Verdict(Kind.MALFORMED, f"TLS error: {reason or error}")
    if isinstance(error, TimeoutError):
        return Verdict(Kind.HANGUP, "the client sent no complete handshake in time")
    if isinstance(error, OSError):  # EOF (ConnectionResetError from the peer) or a reset
        return Verdict(Kind.HANGUP, f"the client hung up ({error.strerror or error})")
    return Verdict(Kind.MALFORMED, f"{type(error).__name__}: {error}")


class HandshakeFailureLog:
    """Logs failed client handshakes: a distrust warning once per host, an incompatibility
    warning once per host and reason, hang-ups at debug, the rest at info.

    A repeat of a warning goes to debug, so ``-vv`` still shows every failure.
    """

    def __init__(self, magic_host: str) -> None:
        self.magic_host = magic_host
        self.warned: set[tuple[str, str]] = set()  # (host, detail); filled by warnings only

    def report(self, conn_id: str, host: str, error: BaseException, ca_cert: Path) -> Verdict:
        verdict = classify(error)
        where = f"[{conn_id}] client TLS handshake for {host} failed"
        if verdict.kind is Kind.HANGUP:
            log.debug("[%s] TLS handshake for %s ended early: %s", conn_id, host, verdict.detail)
            return verdict
        if verdict.kind is Kind.MALFORMED:
            log.info("%s: %s", where, verdict.detail)
            return verdict
        key = (host, "distrust" if verdict.kind is Kind.DISTRUST else verdict.detail)
        if key in self.warned:
            log.debug("%s: %s (warned once already)", where, verdict.detail)
            return verdict
        self.warned.add(key)
        if verdict.kind is Kind.DISTRUST:
            log.warning(
                "%s: %s: it does not trust wsproxy's CA. Install %s in the client "
                "(see certs/README.md, or browse http://%s/ through the proxy)",
                where,
                verdict.detail,
                ca_cert,
                self.magic_host,
            )
        else:
            log.warning("%s: %s", where, verdict.detail)
        return verdict
