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

from pathlib import Path

import pytest

from tests.browser.harness import (
    TEST_HOSTS,
    Firefox,
    firefox_pac,
    firefox_tools,
    make_firefox_profile,
)
from tests.browser.pages import (
    Run,
    Servers,
    assert_echoed,
    assert_frames_logged,
    assert_only_test_requests,
    assert_proxy_clean,
    assert_socks5_tunnels,
    conn_id_of,
    run_through_proxy,
)
from tests.harness import HOST, ProxyProcess

pytestmark = pytest.mark.timeout(120)


async def run_firefox(
    servers: Servers,
    upstream_ca_file: Path,
    tmp_path: Path,
    *,
    socks5: bool = False,
    verbose: bool = True,
) -> Run:
    """Firefox opens the test page through a fresh proxy (``run_through_proxy``; ``socks5``:
    ``SOCKS5`` in the auto-config)."""
    firefox_bin, certutil = firefox_tools()

    def start(proxy: ProxyProcess, url: str) -> Firefox:
        kind = "SOCKS5" if socks5 else "PROXY"
        profile = tmp_path / "profile"
        pac = firefox_pac(f"{kind} {HOST}:{proxy.port}", TEST_HOSTS)
        make_firefox_profile(certutil, profile, proxy.ca_cert, pac)
        return Firefox(firefox_bin, url, tmp_path / "home", profile)

    return await run_through_proxy(
        servers, upstream_ca_file, tmp_path, start, socks5=socks5, verbose=verbose
    )


async def test_firefox_echoes_over_ws_and_wss_through_wsproxy(
    servers: Servers, upstream_ca_file: Path, tmp_path: Path
) -> None:
    run = await run_firefox(servers, upstream_ca_file, tmp_path)
    log = run.log
    assert_echoed(run.result, run.token, log, servers)
    assert f"CONNECT {HOST}:{servers.page_port}" in log
    assert f"GET https://{HOST}:{servers.page_port}/?" in log
    assert f"POST https://{HOST}:{servers.page_port}/report" in log
    for url in (servers.ws_url, servers.wss_url):
        conn_id = conn_id_of(log, f"GET {url}")
        opened = [line for line in log.splitlines() if f"[{conn_id}] WebSocket open" in line]
        assert opened and "permessage-deflate" in opened[0], log  # Firefox's offer, accepted
    assert_frames_logged(log, servers, run.result["sent"])
    assert_proxy_clean(log, run.code)


async def test_firefox_sends_nothing_but_the_test_page(
    servers: Servers, upstream_ca_file: Path, tmp_path: Path
) -> None:
    """With the profile's prefs and auto-config, every request the proxy sees is the test's,
    and no name is looked up by the proxy."""
    run = await run_firefox(servers, upstream_ca_file, tmp_path)
    assert_only_test_requests(run.log, servers)
    assert run.code == 0, run.log


async def test_firefox_echoes_through_a_quiet_proxy(
    servers: Servers, upstream_ca_file: Path, tmp_path: Path
) -> None:
    """The way a user runs it by default: no frame lines, the quiet relay's shortcuts, every
    compressed message back as it was sent."""
    run = await run_firefox(servers, upstream_ca_file, tmp_path, verbose=False)
    assert_echoed(run.result, run.token, run.log, servers)
    assert "client -> server" not in run.log
    assert_proxy_clean(run.log, run.code)


async def test_firefox_through_socks5_mode(
    servers: Servers, upstream_ca_file: Path, tmp_path: Path
) -> None:
    """``SOCKS5`` in the auto-config: the page and both WebSockets go through SOCKS5 tunnels
    (Firefox sends the address, no name), TLS intercepted inside."""
    run = await run_firefox(servers, upstream_ca_file, tmp_path, socks5=True)
    assert_echoed(run.result, run.token, run.log, servers)
    assert_socks5_tunnels(run.log, servers)
    assert_frames_logged(run.log, servers, run.result["sent"])
    assert_proxy_clean(run.log, run.code)
