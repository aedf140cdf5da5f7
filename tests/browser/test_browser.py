"""A real headless Chromium through wsproxy: an https page, ws:// and wss:// echoes.

Chromium trusts only wsproxy's CA (in a private ``$HOME/.pki/nssdb``), never the test CA of the
local servers, so the https page and the wss:// echo can only work if the proxy intercepted
TLS and re-signed. ``--proxy-bypass-list=<-loopback>`` sends 127.0.0.1 through the proxy, and
the proxy's frame log proves the messages went through it.

Needs ``chromium`` and ``certutil`` (``apt-get install chromium libnss3-tools``): skipped when
they are missing, except with ``CI=true``, where it fails instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.harness import (
    HOST,
    Chromium,
    browser_tools,
    make_nssdb,
)
from tests.browser.pages import (
    Run,
    Servers,
    assert_echoed,
    assert_frames_logged,
    assert_only_test_requests,
    assert_proxy_clean,
    assert_socks5_tunnels,
    run_through_proxy,
)
from tests.harness import ProxyProcess

pytestmark = pytest.mark.timeout(120)


async def run_page(
    servers: Servers,
    upstream_ca_file: Path,
    tmp_path: Path,
    *,
    socks5: bool = False,
    verbose: bool = True,
) -> Run:
    """Chromium, trusting only wsproxy's CA, opens the test page through a fresh proxy
    (``run_through_proxy``; ``socks5``: as ``--proxy-server=socks5://``)."""
    chromium_bin, certutil = browser_tools()
    home = tmp_path / "home"

    def start(proxy: ProxyProcess, url: str) -> Chromium:
        make_nssdb(certutil, home, proxy.ca_cert)
        proxy_url = f"socks5://{HOST}:{proxy.port}" if socks5 else proxy.url
        return Chromium(chromium_bin, url, proxy_url, home, tmp_path / "profile")

    return await run_through_proxy(
        servers, upstream_ca_file, tmp_path, start, socks5=socks5, verbose=verbose
    )


async def test_chromium_sends_nothing_but_the_test_page(
    servers: Servers, upstream_ca_file: Path, tmp_path: Path
) -> None:
    """The proxy sees all of Chromium's traffic: with the harness's flags, none of it is
    Chromium's own (no updates, sign-in, time sync, safe browsing, metrics...), and no name
    but the test's is looked up, by Chromium or by the proxy."""
    run = await run_page(servers, upstream_ca_file, tmp_path)
    assert_only_test_requests(run.log, servers)
    assert run.code == 0, run.log


async def test_chromium_echoes_over_ws_and_wss_through_wsproxy(
    servers: Servers, upstream_ca_file: Path, tmp_path: Path
) -> None:
    run = await run_page(servers, upstream_ca_file, tmp_path)
    log, sent = run.log, run.result["sent"]
    assert_echoed(run.result, run.token, log, servers)
    # Everything went through the proxy: the page, the report, both WebSockets.
    assert f"CONNECT {HOST}:{servers.page_port}" in log
    assert f"GET https://{HOST}:{servers.page_port}/?" in log
    assert f"POST https://{HOST}:{servers.page_port}/report" in log
    assert_frames_logged(log, servers, sent)
    for text in sent:
        assert sum(text[:40] in line for line in log.splitlines()) >= 4, text[:40]
    assert_proxy_clean(log, run.code)
    print(f"page, ws and wss round trips took {run.elapsed:.2f} s")


async def test_chromium_echoes_through_a_quiet_proxy(
    servers: Servers, upstream_ca_file: Path, tmp_path: Path
) -> None:
    """Without -v nothing records frames: Chromium's messages (permessage-deflate, over ws
    and wss) take the quiet relay's shortcuts, and every one comes back as it was sent."""
    run = await run_page(servers, upstream_ca_file, tmp_path, verbose=False)
    assert_echoed(run.result, run.token, run.log, servers)
    assert "client -> server" not in run.log  # quiet indeed: no frame lines
    assert_proxy_clean(run.log, run.code)


async def test_chromium_through_socks5_mode(
    servers: Servers, upstream_ca_file: Path, tmp_path: Path
) -> None:
    """``--proxy-server=socks5://``: Chromium sends every name to the proxy (the test's are
    IP addresses, and the resolver rules keep anything else from being looked up); the page
    over https and both WebSockets go through SOCKS5 tunnels, TLS intercepted inside."""
    run = await run_page(servers, upstream_ca_file, tmp_path, socks5=True)
    assert_echoed(run.result, run.token, run.log, servers)
    assert_socks5_tunnels(run.log, servers)  # every tunnel is the test's: none of Chromium's
    assert f"GET https://{HOST}:{servers.page_port}/?" in run.log
    assert_frames_logged(run.log, servers, run.result["sent"])
    assert_proxy_clean(run.log, run.code)
