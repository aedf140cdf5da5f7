"""A real headless Firefox (Debian's firefox-esr) through wsproxy: the https page, ws:// and
wss:// echoes of ``tests.browser.pages``, as the Chromium tests run them.

Firefox gets a throw-away profile (``make_firefox_profile``): its own NSS database trusting only
wsproxy's CA, so the https page and the wss:// echo work only if the proxy intercepted TLS and
re-signed; a proxy auto-config that sends 127.0.0.1 to the proxy (an HTTP proxy, or SOCKS5)
and every other host nowhere; and prefs that stop its own traffic. Firefox offers
permessage-deflate without parameters (Chromium adds client_max_window_bits), so its messages
cross the proxy compressed. No WebDriver: the page reports with a POST, then Firefox is killed.

Needs ``firefox-esr`` and ``certutil`` (``apt-get install firefox-esr libnss3-tools``): skipped
when they are missing, except with ``CI=true``, where it fails instead.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import (
    TEST_HOSTS,
    Firefox,
    firefox_pac,
    firefox_tools,
    make_firefox_profile,
)
from tests.browser.pages import (
    BIG,
    REPORT_TIMEOUT,
    Servers,
    conn_id_of,
    frame_lines,
    requested,
)
from tests.harness import HOST, launch

pytestmark = pytest.mark.timeout(120)


@dataclass
class FirefoxRun:
    result: dict[str, Any]
    token: str
    log: str  # the proxy's
    code: int  # the proxy's exit code


async def run_firefox(
    servers: Servers,
    upstream_ca_file: Path,
    tmp_path: Path,
    *,
    socks5: bool = False,
    verbose: bool = True,
) -> FirefoxRun:
    """Firefox opens the test page through a fresh proxy (``socks5``: a ``--mode socks5`` one;
    ``verbose``: at -v, frames recorded, else quiet) and the page reports back."""
    firefox_bin, certutil = firefox_tools()
    mode = ["--mode", "socks5"] if socks5 else []
    args = [*mode, "--upstream-ca", str(upstream_ca_file)]
    proxy = await launch(args, tmp_path / "confdir", tmp_path, verbose=verbose)
    firefox: Firefox | None = None
    try:
        assert proxy.ca_cert.is_file(), f"no CA at {proxy.ca_cert}\n{proxy.stderr()}"
        kind = "SOCKS5" if socks5 else "PROXY"
        profile = tmp_path / "profile"
        pac = firefox_pac(f"{kind} {HOST}:{proxy.port}", TEST_HOSTS)
        make_firefox_profile(certutil, profile, proxy.ca_cert, pac)
        token = os.urandom(4).hex()
        firefox = Firefox(firefox_bin, servers.page_url(token), tmp_path / "home", profile)
        try:
            result = await asyncio.wait_for(servers.reports.get(), REPORT_TIMEOUT)
        except TimeoutError:
            raise AssertionError(
                f"the page never reported back\n--- proxy ---\n{proxy.stderr()}"
                f"\n--- firefox ---\n{firefox.log()[-3000:]}"
            ) from None
    finally:
        if firefox is not None:
            firefox.stop()
        code = await proxy.stop()
    return FirefoxRun(result, token, proxy.stderr(), code)


def assert_echoed(run: FirefoxRun, servers: Servers) -> None:
    """Every message came back, in order, over ws:// and wss://, both through the proxy."""
    sent = run.result["sent"]
    assert sent[0] == f"{run.token} hello"
    assert sent[1] == f"{run.token} ünïcödé ✓"
    assert len(sent[2]) == BIG
    assert run.result[servers.ws_url] == sent, run.log[-3000:]
    assert run.result[servers.wss_url] == sent, run.log[-3000:]
    assert servers.ws_paths == ["/echo", "/echo"]
    assert "Traceback" not in run.log, run.log
    assert run.code == 0, f"the proxy exited with {run.code}\n{run.log}"


async def test_firefox_echoes_over_ws_and_wss_through_wsproxy(
    servers: Servers, upstream_ca_file: Path, tmp_path: Path
) -> None:
    run = await run_firefox(servers, upstream_ca_file, tmp_path)
    assert_echoed(run, servers)
    log = run.log
    assert f"CONNECT {HOST}:{servers.page_port}" in log
    assert f"GET https://{HOST}:{servers.page_port}/?" in log
    assert f"POST https://{HOST}:{servers.page_port}/report" in log
    for url in (servers.ws_url, servers.wss_url):
        conn_id = conn_id_of(log, f"GET {url}")
        opened = [line for line in log.splitlines() if f"[{conn_id}] WebSocket open" in line]
        assert opened and "permessage-deflate" in opened[0], log  # Firefox's offer, accepted
        for text in run.result["sent"]:
            for arrow in ("client -> server", "server -> client"):
                assert frame_lines(log, conn_id, arrow, text), (
                    f"{url}: no {arrow} frame for {text[:40]!r}\n{log}"
                )


async def test_firefox_sends_nothing_but_the_test_page(
    servers: Servers, upstream_ca_file: Path, tmp_path: Path
) -> None:
    """With the profile's prefs and auto-config, every request the proxy sees is the test's,
    and no name is looked up by the proxy."""
    run = await run_firefox(servers, upstream_ca_file, tmp_path)
    ours = {servers.page_port, servers.ws_port, servers.wss_port}
    seen = requested(run.log)
    assert ("CONNECT", HOST, servers.page_port) in seen, run.log
    foreign = [r for r in seen if r[1] not in TEST_HOSTS or r[2] not in ours]
    assert foreign == [], run.log
    assert "cannot connect to" not in run.log, run.log
    assert run.code == 0, run.log


async def test_firefox_echoes_through_a_quiet_proxy(
    servers: Servers, upstream_ca_file: Path, tmp_path: Path
) -> None:
    """The way a user runs it by default: no frame lines, the quiet relay's shortcuts, every
    compressed message back as it was sent."""
    run = await run_firefox(servers, upstream_ca_file, tmp_path, verbose=False)
    assert_echoed(run, servers)
    assert "client -> server" not in run.log


async def test_firefox_through_socks5_mode(
    servers: Servers, upstream_ca_file: Path, tmp_path: Path
) -> None:
    """``SOCKS5`` in the auto-config: the page and both WebSockets go through SOCKS5 tunnels
    (Firefox sends the address, no name), TLS intercepted inside."""
    run = await run_firefox(servers, upstream_ca_file, tmp_path, socks5=True)
    assert_echoed(run, servers)
    tunnels = set(re.findall(r"SOCKS5 CONNECT (\S+)", run.log))
    ours = {f"{HOST}:{port}" for port in (servers.page_port, servers.ws_port, servers.wss_port)}
    assert tunnels == ours, run.log
    for url in (servers.ws_url, servers.wss_url):
        conn_id = conn_id_of(run.log, f"GET {url}")
        for text in run.result["sent"]:
            assert frame_lines(run.log, conn_id, "client -> server", text), f"{url}\n{run.log}"
