"""A real headless Chromium through wsproxy: an https page, ws:// and wss:// echoes.

Chromium trusts only wsproxy's CA (in a private ``$HOME/.pki/nssdb``), never the test CA of the
local servers, so the https page and the wss:// echo can only work if the proxy intercepted
TLS and re-signed. ``--proxy-bypass-list=<-loopback>`` sends 127.0.0.1 through the proxy, and
the proxy's frame log proves the messages went through it.

Needs ``chromium`` and ``certutil`` (``apt-get install chromium libnss3-tools``): skipped when
they are missing, except with ``CI=true``, where it fails instead.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import (
    HOST,
    TEST_HOSTS,
    Chromium,
    browser_tools,
    make_nssdb,
)
from tests.browser.pages import (
    BIG,
    REPORT_TIMEOUT,
    Servers,
    conn_id_of,
    frame_lines,
    requested,
)
from tests.harness import launch

pytestmark = pytest.mark.timeout(120)


@dataclass
class Run:
    result: dict[str, Any]
    token: str
    log: str  # the proxy's, at -v
    code: int  # the proxy's exit code
    elapsed: float


async def run_page(
    servers: Servers,
    upstream_ca_file: Path,
    tmp_path: Path,
    *,
    socks5: bool = False,
    verbose: bool = True,
) -> Run:
    """Chromium, trusting only wsproxy's CA, opens the test page through a fresh proxy
    (``socks5``: a ``--mode socks5`` one, as ``--proxy-server=socks5://``; ``verbose``: at
    -v, frames recorded, else quiet, the way a user runs it by default)."""
    chromium_bin, certutil = browser_tools()
    mode = ["--mode", "socks5"] if socks5 else []
    args = [*mode, "--upstream-ca", str(upstream_ca_file)]
    proxy = await launch(args, tmp_path / "confdir", tmp_path, verbose=verbose)
    proxy_url = f"socks5://{HOST}:{proxy.port}" if socks5 else proxy.url
    chromium: Chromium | None = None
    try:
        assert proxy.ca_cert.is_file(), f"no CA at {proxy.ca_cert}\n{proxy.stderr()}"
        home = tmp_path / "home"
        make_nssdb(certutil, home, proxy.ca_cert)  # only after the proxy wrote its CA

        token = os.urandom(4).hex()
        started = time.monotonic()
        chromium = Chromium(
            chromium_bin, servers.page_url(token), proxy_url, home, tmp_path / "profile"
        )
        try:
            result = await asyncio.wait_for(servers.reports.get(), REPORT_TIMEOUT)
        except TimeoutError:
            raise AssertionError(
                f"the page never reported back\n--- proxy ---\n{proxy.stderr()}"
                f"\n--- chromium ---\n{chromium.log()[-3000:]}"
            ) from None
        elapsed = time.monotonic() - started
    finally:
        if chromium is not None:
            chromium.stop()
        code = await proxy.stop()
    return Run(result, token, proxy.stderr(), code, elapsed)


async def test_chromium_sends_nothing_but_the_test_page(
    servers: Servers, upstream_ca_file: Path, tmp_path: Path
) -> None:
    """The proxy sees all of Chromium's traffic: with the harness's flags, none of it is
    Chromium's own (no updates, sign-in, time sync, safe browsing, metrics...), and no name
    but the test's is looked up, by Chromium or by the proxy."""
    run = await run_page(servers, upstream_ca_file, tmp_path)
    ours = {servers.page_port, servers.ws_port, servers.wss_port}
    seen = requested(run.log)
    assert ("CONNECT", HOST, servers.page_port) in seen, run.log
    foreign = [r for r in seen if r[1] not in TEST_HOSTS or r[2] not in ours]
    assert foreign == [], run.log
    assert "cannot connect to" not in run.log, run.log  # no failed lookup or connection
    assert run.code == 0, run.log


async def test_chromium_echoes_over_ws_and_wss_through_wsproxy(
    servers: Servers, upstream_ca_file: Path, tmp_path: Path
) -> None:
    run = await run_page(servers, upstream_ca_file, tmp_path)
    result, token, log, code = run.result, run.token, run.log, run.code

    sent = result["sent"]
    assert sent[0] == f"{token} hello"
    assert sent[1] == f"{token} ünïcödé ✓"
    assert len(sent[2]) == BIG
    # Every message came back, in order, over both transports.
    assert result[servers.ws_url] == sent, log[-3000:]
    assert result[servers.wss_url] == sent, log[-3000:]
    assert servers.ws_paths == ["/echo", "/echo"]

    # Everything went through the proxy: the page, the report, both WebSockets.
    assert f"CONNECT {HOST}:{servers.page_port}" in log
    assert f"GET https://{HOST}:{servers.page_port}/?" in log
    assert f"POST https://{HOST}:{servers.page_port}/report" in log
    for url in (servers.ws_url, servers.wss_url):
        conn_id = conn_id_of(log, f"GET {url}")
        for text in sent:
            for arrow in ("client -> server", "server -> client"):
                assert frame_lines(log, conn_id, arrow, text), (
                    f"{url}: no {arrow} frame for {text[:40]!r}\n{log}"
                )
    for text in sent:
        assert sum(text[:40] in line for line in log.splitlines()) >= 4, text[:40]

    assert "Traceback" not in log, log
    assert code == 0, f"the proxy exited with {code}\n{log}"
    print(f"page, ws and wss round trips took {run.elapsed:.2f} s")


async def test_chromium_echoes_through_a_quiet_proxy(
    servers: Servers, upstream_ca_file: Path, tmp_path: Path
) -> None:
    """Without -v nothing records frames: Chromium's messages (permessage-deflate, over ws
    and wss) take the quiet relay's shortcuts, and every one comes back as it was sent."""
    run = await run_page(servers, upstream_ca_file, tmp_path, verbose=False)
    sent = run.result["sent"]
    assert len(sent) == 3 and len(sent[2]) == BIG
    assert run.result[servers.ws_url] == sent, run.log[-3000:]
    assert run.result[servers.wss_url] == sent, run.log[-3000:]
    assert servers.ws_paths == ["/echo", "/echo"]
    assert "client -> server" not in run.log  # quiet indeed: no frame lines
    assert "Traceback" not in run.log, run.log
    assert run.code == 0, f"the proxy exited with {run.code}\n{run.log}"


async def test_chromium_through_socks5_mode(
    servers: Servers, upstream_ca_file: Path, tmp_path: Path
) -> None:
    """``--proxy-server=socks5://``: Chromium sends every name to the proxy (the test's are
    IP addresses, and the resolver rules keep anything else from being looked up); the page
    over https and both WebSockets go through SOCKS5 tunnels, TLS intercepted inside."""
    run = await run_page(servers, upstream_ca_file, tmp_path, socks5=True)
    result, log = run.result, run.log
    sent = result["sent"]
    assert result[servers.ws_url] == sent, log[-3000:]
    assert result[servers.wss_url] == sent, log[-3000:]
    assert servers.ws_paths == ["/echo", "/echo"]
    tunnels = re.findall(r"SOCKS5 CONNECT (\S+)", log)
    ours = {f"{HOST}:{port}" for port in (servers.page_port, servers.ws_port, servers.wss_port)}
    assert set(tunnels) == ours, log  # every tunnel is the test's: nothing of Chromium's own
    assert f"GET https://{HOST}:{servers.page_port}/?" in log
    for url in (servers.ws_url, servers.wss_url):
        conn_id = conn_id_of(log, f"GET {url}")
        for text in sent:
            assert frame_lines(log, conn_id, "client -> server", text), f"{url}\n{log}"
            assert frame_lines(log, conn_id, "server -> client", text), f"{url}\n{log}"
    assert "Traceback" not in log, log
    assert run.code == 0, log
