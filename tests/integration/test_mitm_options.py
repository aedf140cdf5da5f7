"""mitmproxy's core options through a real proxy process: each ``--set`` spelling shown by its
effect on real traffic, ``--allow-hosts``, ``--no-websocket`` and ``--certs``.

How each name is translated, and the refusals, are tested in tests/test_mitmoptions.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from pathlib import Path

import aiohttp
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.asyncio.client import connect

from tests.harness import (
    HOST,
    ProxyProcess,
    RawClient,
    RawServerFactory,
    StartProxy,
    StartWsEcho,
    WsUpstream,
    free_port,
    wait_accepting,
)
from tests.integration import wsraw
from tests.integration.test_tls import (
    load_cert,
    peer_cert,
    proxy_ca,
    server_context,
    trusting,
    ws_client,
)
from tests.test_cli_errors import check, run

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def wss_echo(upstream_ca: trustme.CA, start_ws_echo: StartWsEcho) -> WsUpstream:
    """A TLS echo server for localhost and 127.0.0.1, its certificate from ``upstream_ca``."""
    return await start_ws_echo(ssl=server_context(upstream_ca, "localhost", HOST))


async def echo_once(url: str, proxy: ProxyProcess, text: str = "hello") -> None:
    async with connect(url, proxy=proxy.url, open_timeout=10, close_timeout=10) as ws:
        await ws.send(text)
        assert await ws.recv() == text


# -- where to listen -------------------------------------------------------------------------


async def test_set_listen_port_listens_there(start_proxy: StartProxy, ws_echo: WsUpstream) -> None:
    port = free_port()
    proxy = await start_proxy("--set", f"listen_port={port}", ready=False)
    await wait_accepting(port, proxy.proc, 15)
    await proxy.wait_log(lambda text: f"listening on {HOST}:{port} (regular mode)" in text)
    async with connect(f"{ws_echo.url}/p", proxy=f"http://{HOST}:{port}") as ws:
        await ws.send("via the --set port")
        assert await ws.recv() == "via the --set port"


async def test_set_listen_host_binds_that_address(start_proxy: StartProxy) -> None:
    proxy = await start_proxy("--set", "listen_host=127.0.0.2", ready=False)
    await wait_accepting(proxy.port, proxy.proc, 15, host="127.0.0.2")
    await proxy.wait_log(lambda text: f"listening on 127.0.0.2:{proxy.port}" in text)


async def test_set_mode_adds_a_listener(start_proxy: StartProxy, ws_echo: WsUpstream) -> None:
    socks_port, reverse_port = free_port(), free_port()
    proxy = await start_proxy(
        "--mode",
        "regular",
        "--set",
        f"mode=socks5@{socks_port}",
        "-m",
        f"reverse:ws://{HOST}:{ws_echo.port}@{reverse_port}",
    )
    await proxy.wait_log(lambda text: f"listening on {HOST}:{socks_port} (socks5 mode)" in text)
    await proxy.wait_log(lambda text: f"listening on {HOST}:{proxy.port} (regular mode)" in text)
    await wait_accepting(reverse_port, proxy.proc, 15)
    async with connect(f"ws://{HOST}:{reverse_port}/reverse") as ws:
        await ws.send("through -m")
        assert await ws.recv() == "through -m"


async def test_set_confdir_holds_the_ca(start_proxy: StartProxy, tmp_path: Path) -> None:
    confdir = tmp_path / "mitm-style-confdir"
    await start_proxy("--set", f"confdir={confdir}")
    assert (confdir / "mitmproxy-ca-cert.pem").is_file()


# -- which connections are intercepted ---------------------------------------------------------


async def test_set_ignore_hosts_pipes_tls_untouched(
    start_proxy: StartProxy, upstream_ca_file: Path, wss_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--set", rf"ignore_hosts=^127\.0\.0\.1:{wss_echo.port}$")
    async with ws_client(f"{wss_echo.url}/ignored", proxy, trusting(upstream_ca_file)) as ws:
        cert = peer_cert(ws)  # the upstream's own: nothing was re-signed
        await ws.send("untouched")
        assert await ws.recv() == "untouched"
    cert.verify_directly_issued_by(load_cert(upstream_ca_file))
    await proxy.wait_log(lambda t: f"{HOST}:{wss_echo.port}: tunnelled untouched" in t)


@pytest.mark.parametrize("spelling", ["--set", "flag"])
async def test_allow_hosts_intercepts_only_matches(
    start_proxy: StartProxy, upstream_ca_file: Path, wss_echo: WsUpstream, spelling: str
) -> None:
    """mitmproxy's semantics: a match is intercepted, everything else tunnelled untouched."""
    allow = rf"^localhost:{wss_echo.port}$"
    args = ["--set", f"allow_hosts={allow}"] if spelling == "--set" else ["--allow-hosts", allow]
    proxy = await start_proxy(*args, "--upstream-ca", str(upstream_ca_file))
    # 127.0.0.1 does not match: the client sees the upstream's certificate.
    async with ws_client(f"{wss_echo.url}/other", proxy, trusting(upstream_ca_file)) as ws:
        peer_cert(ws).verify_directly_issued_by(load_cert(upstream_ca_file))
        await ws.send("tunnelled")
        assert await ws.recv() == "tunnelled"
    # localhost matches: intercepted, the leaf is wsproxy's.
    url = f"wss://localhost:{wss_echo.port}/allowed"
    async with ws_client(url, proxy, trusting(proxy_ca(proxy))) as ws:
        peer_cert(ws).verify_directly_issued_by(load_cert(proxy_ca(proxy)))
        await ws.send("intercepted")
        assert await ws.recv() == "intercepted"
    log = await proxy.wait_log(lambda t: "WebSocket open localhost" in t)
    assert f"{HOST}:{wss_echo.port}: tunnelled untouched" in log
    assert f"localhost:{wss_echo.port}: tunnelled untouched" not in log


def test_allow_hosts_and_ignore_hosts_exclude_each_other(tmp_path: Path) -> None:
    status, stderr = run("--ignore-hosts", "a", "--set", "allow_hosts=b", cwd=tmp_path)
    check(status, stderr, 2, "--ignore-hosts and --allow-hosts exclude each other")


def test_a_bad_allow_hosts_regex(tmp_path: Path) -> None:
    status, stderr = run("--allow-hosts", "(", cwd=tmp_path)
    check(status, stderr, 2, "--allow-hosts '(': missing ), unterminated subpattern")


# -- the upstream leg ------------------------------------------------------------------------


async def test_set_ssl_insecure_skips_upstream_verification(
    start_proxy: StartProxy, wss_echo: WsUpstream
) -> None:
    """The upstream's CA is not trusted: only ssl_insecure lets the handshake through."""
    proxy = await start_proxy("--set", "ssl_insecure=true")
    async with ws_client(f"{wss_echo.url}/insecure", proxy, trusting(proxy_ca(proxy))) as ws:
        await ws.send("unverified")
        assert await ws.recv() == "unverified"


async def test_set_ssl_verify_upstream_trusted_ca(
    start_proxy: StartProxy, upstream_ca_file: Path, wss_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--set", f"ssl_verify_upstream_trusted_ca={upstream_ca_file}")
    async with ws_client(f"{wss_echo.url}/verified", proxy, trusting(proxy_ca(proxy))) as ws:
        await ws.send("verified")
        assert await ws.recv() == "verified"


async def test_set_proxyauth_requires_credentials(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--set", "proxyauth=alice:secret")
    plain_url = f"http://{HOST}:{ws_echo.port}/x"
    async with aiohttp.ClientSession() as session, session.get(plain_url, proxy=proxy.url) as r:
        assert r.status == 407
    user_proxy = proxy.url.replace("http://", "http://alice:secret@")
    async with connect(f"{ws_echo.url}/auth", proxy=user_proxy) as ws:
        await ws.send("authenticated")
        assert await ws.recv() == "authenticated"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("any", "--proxyauth any (accept any credentials) is not supported: give user:pass"),
        ("@htpasswd", "--proxyauth @FILE (an htpasswd file) is not supported"),
        ("ldap:host:cn:pw:dc", "--proxyauth with LDAP is not supported"),
    ],
)
def test_mitmproxys_other_proxyauth_forms(tmp_path: Path, value: str, message: str) -> None:
    status, stderr = run(
        "--set", f"proxyauth={value}", "-p", "0", "--confdir", str(tmp_path), cwd=tmp_path
    )
    check(status, stderr, 2, message)


# -- logging, captures, scripts, compression ----------------------------------------------------


async def test_set_termlog_verbosity_debug_logs_frames(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--set", "termlog_verbosity=debug", verbose=False)
    await echo_once(f"{ws_echo.url}/loud", proxy, "loud")
    await proxy.wait_log(lambda t: "client -> server" in t)


@pytest.mark.parametrize(("detail", "frames"), [("3", True), ("1", False)])
async def test_set_flow_detail(
    start_proxy: StartProxy, ws_echo: WsUpstream, detail: str, frames: bool
) -> None:
    proxy = await start_proxy("--set", f"flow_detail={detail}", verbose=False)
    await echo_once(f"{ws_echo.url}/detail", proxy)
    log = await proxy.wait_log(lambda t: "WebSocket closed" in t)
    assert ("client -> server" in log) is frames


async def test_set_termlog_verbosity_warn_is_quiet(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--set", "termlog_verbosity=warn", verbose=False)
    await echo_once(f"{ws_echo.url}/quiet", proxy)
    await ws_echo.next_close()
    await proxy.stop()
    log = proxy.stderr()
    assert "listening on" in log and "WebSocket open" not in log


async def test_set_save_stream_file_captures(
    start_proxy: StartProxy, ws_echo: WsUpstream, tmp_path: Path
) -> None:
    capture = tmp_path / "flows.jsonl"
    proxy = await start_proxy("--set", f"save_stream_file={capture}")
    await echo_once(f"{ws_echo.url}/saved", proxy, "kept")
    await ws_echo.next_close()
    await proxy.stop()
    records = [json.loads(line) for line in capture.read_text().splitlines()]
    assert any(r.get("type") == "frame" and r.get("text") == "kept" for r in records)


async def test_set_scripts_loads_a_plugin(start_proxy: StartProxy, ws_echo: WsUpstream) -> None:
    proxy = await start_proxy("--set", "scripts=log", "--set", "log_json=true", verbose=False)
    await echo_once(f"{ws_echo.url}/scripted", proxy, "logged-by-plugin")
    await proxy.wait_log(lambda t: "logged-by-plugin" in t)


async def test_set_anticomp_strips_permessage_deflate(
    start_proxy: StartProxy, ws_echo: WsUpstream
) -> None:
    proxy = await start_proxy("--set", "anticomp=true")
    await echo_once(f"{ws_echo.url}/plain", proxy)
    assert ws_echo.extensions == [[]]
    assert "permessage-deflate" not in (ws_echo.headers[0].get("sec-websocket-extensions") or "")


# -- websocket=false: upgrades passed through untouched --------------------------------------------

CALLS_PLUGIN = """
from pathlib import Path

CALLS = Path(__file__).with_name("calls.txt")


def _record(name):
    with CALLS.open("a") as f:
        f.write(name + "\\n")


def handshake_request(flow):
    _record("handshake_request")


def opened(flow):
    _record("opened")


def message(flow, message):
    _record("message")
"""


@pytest.mark.parametrize("spelling", [["--set", "websocket=false"], ["--no-websocket"]])
async def test_websocket_false_passes_bytes_through_unchanged(
    start_proxy: StartProxy,
    raw_server: RawServerFactory,
    raw_client: RawClient,
    tmp_path: Path,
    spelling: list[str],
) -> None:
    """Bytes that are no WebSocket frames at all cross in both directions as they are: the
    proxy parses nothing after the 101, calls no plugin and captures nothing."""
    from_client = b"not a frame \x00\xff" + os.urandom(64)
    from_server = b"\x88\x7fneither is this" + os.urandom(64)
    got_from_client: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def upstream(conn: wsraw.RawConnection) -> None:
        head = await wsraw.accept_upgrade(conn)
        assert head.get("Sec-WebSocket-Extensions") == "x-unknown-extension"  # offer kept
        got_from_client.set_result(await conn.reader.readexactly(len(from_client)))
        conn.writer.write(from_server)
        await conn.writer.drain()
        await conn.reader.read()  # until the client closes

    server = await raw_server(upstream)
    plugin = tmp_path / "calls.py"
    plugin.write_text(CALLS_PLUGIN)
    capture = tmp_path / "capture.jsonl"
    proxy = await start_proxy(*spelling, "-s", str(plugin), "-w", str(capture))
    client = await raw_client(proxy.port)
    client.writer.write(
        wsraw.upgrade_request(
            f"http://{HOST}:{server.port}/raw",
            f"{HOST}:{server.port}",
            extra=[("Sec-WebSocket-Extensions", "x-unknown-extension")],
        )
    )
    head = await asyncio.wait_for(wsraw.read_head(client.reader), 10)
    assert head.status == 101
    client.writer.write(from_client)
    assert await asyncio.wait_for(got_from_client, 10) == from_client
    assert await asyncio.wait_for(client.reader.readexactly(len(from_server)), 10) == from_server
    await proxy.wait_log(lambda t: "passed through untouched (--no-websocket)" in t)
    await client.close()
    await proxy.wait_log(lambda t: "WebSocket pass-through ended" in t)
    await proxy.stop()
    assert not (tmp_path / "calls.txt").exists(), (tmp_path / "calls.txt").read_text()
    records = [json.loads(line) for line in capture.read_text().splitlines()]
    assert not [r for r in records if r.get("type") in ("handshake", "frame")]
    assert "client -> server" not in proxy.stderr()


async def test_websocket_false_relays_a_refusal(
    start_proxy: StartProxy, raw_server: RawServerFactory, raw_client: RawClient
) -> None:
    async def refuse(conn: wsraw.RawConnection) -> None:
        await wsraw.read_head(conn.reader)
        conn.writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope")
        await conn.writer.drain()

    server = await raw_server(refuse)
    proxy = await start_proxy("--set", "websocket=false")
    client = await raw_client(proxy.port)
    client.writer.write(
        wsraw.upgrade_request(f"http://{HOST}:{server.port}/no", f"{HOST}:{server.port}")
    )
    response = await asyncio.wait_for(wsraw.read_response(client.reader), 10)
    assert (response.status, response.body) == (403, b"nope")


# -- --certs: your own certificate for some names ------------------------------------------------


def write_served(ca: trustme.CA, path: Path, *names: str) -> Path:
    ca.issue_cert(*names).private_key_and_cert_chain_pem.write_to_path(str(path))
    return path


async def served_cert(
    proxy: ProxyProcess, connect_to: str, sni: str, trust: ssl.SSLContext
) -> x509.Certificate:
    """CONNECT ``connect_to`` through the proxy, then a TLS handshake for ``sni``: the
    certificate the proxy served (verified by ``trust``)."""
    reader, writer = await asyncio.open_connection(HOST, proxy.port)
    try:
        writer.write(f"CONNECT {connect_to} HTTP/1.1\r\nHost: {connect_to}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        await asyncio.wait_for(writer.start_tls(trust, server_hostname=sni), 10)
        sslobj = writer.get_extra_info("ssl_object")
        return x509.load_der_x509_certificate(sslobj.getpeercert(binary_form=True))
    finally:
        writer.close()
        with contextlib.suppress(OSError):  # ssl.SSLError and ConnectionError are OSErrors
            await writer.wait_closed()


async def test_certs_served_for_its_domain_and_generated_leaves_for_others(
    start_proxy: StartProxy, tmp_path: Path
) -> None:
    mine = trustme.CA()
    wildcard = write_served(mine, tmp_path / "wild.pem", "*.served.test")
    own_names = write_served(mine, tmp_path / "own.pem", "intranet.test")
    proxy = await start_proxy("--set", f"certs=*.served.test={wildcard}", "--certs", str(own_names))
    trust_mine = ssl.create_default_context()
    trust_mine.load_verify_locations(cadata=mine.cert_pem.bytes().decode())
    cert = await served_cert(proxy, "www.served.test:443", "www.served.test", trust_mine)
    assert cert == load_cert(wildcard)
    # mitmproxy's DOMAIN wildcard covers every depth below it (the certificate's own
    # *.served.test does not, so the client checks the chain only).
    chain_only = ssl.create_default_context()
    chain_only.load_verify_locations(cadata=mine.cert_pem.bytes().decode())
    chain_only.check_hostname = False
    cert = await served_cert(proxy, "a.b.served.test:443", "a.b.served.test", chain_only)
    assert cert == load_cert(wildcard)
    cert = await served_cert(proxy, "intranet.test:443", "intranet.test", trust_mine)
    assert cert == load_cert(own_names)  # without DOMAIN: the certificate's own names
    # Other names get a leaf signed by wsproxy's CA, as without --certs.
    cert = await served_cert(proxy, "other.test:443", "other.test", trusting(proxy_ca(proxy)))
    cert.verify_directly_issued_by(load_cert(proxy_ca(proxy)))
    assert "served.test" not in str(cert.subject)
    log = await proxy.wait_log(lambda t: "served for" in t)
    assert f"--certs {own_names}: served for intranet.test" in log


async def test_certs_in_a_real_wss_session(
    start_proxy: StartProxy, tmp_path: Path, upstream_ca_file: Path, wss_echo: WsUpstream
) -> None:
    mine = trustme.CA()
    served = write_served(mine, tmp_path / "localhost.pem", "localhost")
    proxy = await start_proxy(
        "--certs", f"localhost={served}", "--upstream-ca", str(upstream_ca_file)
    )
    trust_mine = ssl.create_default_context()
    trust_mine.load_verify_locations(cadata=mine.cert_pem.bytes().decode())
    url = f"wss://localhost:{wss_echo.port}/mine"
    async with ws_client(url, proxy, trust_mine) as ws:
        assert peer_cert(ws) == load_cert(served)
        await ws.send("my own certificate")
        assert await ws.recv() == "my own certificate"


def _pem(key: ec.EllipticCurvePrivateKey, *, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _bad_files(tmp_path: Path) -> list[tuple[str, str]]:
    ca = trustme.CA()
    leaf = ca.issue_cert("bad.test")
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    key = leaf.private_key_pem.bytes()
    other = _pem(ec.generate_private_key(ec.SECP256R1()))
    files = {
        "no-key.pem": chain,
        "no-cert.pem": key,
        "mismatch.pem": other + chain,
        "encrypted.pem": _pem(
            serialization.load_pem_private_key(key, None),  # type: ignore[arg-type]
            password=b"secret",
        )
        + chain,
        "ca-first.pem": key + ca.cert_pem.bytes() + leaf.cert_chain_pems[0].bytes(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return [
        ("missing.pem", "--certs missing.pem: cannot read the file: No such file or directory"),
        ("no-key.pem", "--certs no-key.pem: no private key in the file"),
        ("no-cert.pem", "--certs no-cert.pem: no PEM certificate in the file"),
        ("mismatch.pem", "--certs mismatch.pem: the private key does not match the certificate"),
        ("encrypted.pem", "--certs encrypted.pem: the private key is encrypted; decrypt it"),
        ("ca-first.pem", "the private key belongs to certificate 2 in the file; put the leaf"),
        ("=x.pem", "--certs '=x.pem': no domain before '='"),
        ("a.*.test=x.pem", "a wildcard domain is '*' or starts with '*.'"),
    ]


BAD_CERTS = [
    "missing.pem",
    "no-key.pem",
    "no-cert.pem",
    "mismatch.pem",
    "encrypted.pem",
    "ca-first.pem",
    "=x.pem",
    "a.*.test=x.pem",
]


@pytest.mark.parametrize("spec", BAD_CERTS)
def test_bad_certs_files_are_refused(tmp_path: Path, spec: str) -> None:
    message = dict(_bad_files(tmp_path))[spec]
    status, stderr = run("--certs", spec, "-p", "0", "--confdir", str(tmp_path / "c"), cwd=tmp_path)
    check(status, stderr, 2, message)
