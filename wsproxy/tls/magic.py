"""The magic page: ``http://wsproxy.invalid/`` through the proxy hands out the CA certificate.

``.invalid`` is reserved (RFC 6761 section 6.4) and never resolves, so a request for it can only
reach us because the browser uses the proxy; that also proves the proxy setting works before
the user trusts the CA. Only the certificate is served here, never the private key.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from wsproxy.options import Options

if TYPE_CHECKING:
    from wsproxy.tls.ca import CertAuthority

MAGIC_HOST = "wsproxy.invalid"

HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>wsproxy CA certificate</title></head>
<body>
<h1>wsproxy CA certificate</h1>
<p>Your traffic goes through wsproxy. To let it open <code>wss://</code> connections, trust
its certificate authority once on this device.</p>
<ul>
<li><a href="/cert/pem">PEM</a> (<code>.pem</code>): Linux, Firefox, Python, Node, macOS</li>
<li><a href="/cert/cer">DER</a> (<code>.cer</code>): Windows, Android</li>
<li><a href="/cert/p12">PKCS#12</a> (<code>.p12</code>): Windows and macOS import dialogs</li>
</ul>
<p>SHA-256 fingerprint, to compare with what your system shows:<br><code>{fingerprint}</code></p>
<p>Step-by-step instructions for each system: <code>certs/README.md</code> in the wsproxy
sources. Only trust this certificate on devices you control: whoever holds its key can read
your TLS traffic.</p>
</body>
</html>
"""


def render(path: str, ca: CertAuthority) -> tuple[int, str, bytes]:
    """Answer a GET for ``path`` on the magic host: (status, content type, body)."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    if path in ("/", "/index.html"):
        import html  # html.entities is a large table: imported only when the page is asked for

        page = _PAGE.format(fingerprint=html.escape(ca.fingerprint))
        return 200, HTML, page.encode()
    if path == "/cert/pem":
        return 200, "application/x-pem-file", ca.cert_pem()
    if path == "/cert/cer":
        # DER: what Windows' certificate import wizard opens on a double click.
        return 200, "application/pkix-cert", ca.cert_der()
    if path == "/cert/p12":
        return 200, "application/x-pkcs12", ca.cert_p12()
    return 404, TEXT, b"Not found. The CA certificate is at /cert/pem, /cert/cer and /cert/p12.\n"


def trust_notice(ca: CertAuthority, *, regular: bool) -> str:
    """The log line of the start that created the CA: where it is, and how clients get it."""
    command = "wsproxy ca"
    if ca.confdir != Options().confdir.expanduser():
        command += f" --confdir {shlex.quote(str(ca.confdir))}"
    page = f"browse http://{MAGIC_HOST}/ through this proxy to download it, or " if regular else ""
    return (
        f"created a new CA in {ca.confdir}: to let wsproxy read wss:// and https:// traffic, "
        f"clients must trust its certificate {ca.cert_pem_path} ({page}run `{command}` for "
        "its path and fingerprint; certs/README.md has the steps for each client)"
    )
