"""The first start with a confdir says where it created the CA and how to trust it; later
starts with that CA say nothing about it."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.harness import HOST, ROOT, StartProxy, proxy_free_env

NOTICE = "created a new CA in "


def notice_line(log: str) -> str:
    lines = [line for line in log.splitlines() if NOTICE in line]
    assert len(lines) == 1, log
    return lines[0]


async def test_first_start_names_the_certificate_and_how_to_get_it(
    start_proxy: StartProxy, tmp_path: Path
) -> None:
    confdir = tmp_path / "new" / "confdir"  # not there yet: the proxy makes it, and the CA
    proxy = await start_proxy(confdir=confdir, verbose=False)
    log = await proxy.wait_log(lambda text: "wsproxy listening" in text)
    line = notice_line(log)
    named = re.search(r"trust its certificate (\S+) ", line)
    assert named is not None, line
    assert Path(named.group(1)) == confdir / "mitmproxy-ca-cert.pem"
    assert "browse http://wsproxy.invalid/ through this proxy" in line
    command = re.search(r"run `([^`]+)`", line)
    assert command is not None, line
    # Each way the line gives leads to that certificate: the page through the proxy...
    async with (
        aiohttp.ClientSession() as session,
        session.get("http://wsproxy.invalid/cert/pem", proxy=proxy.url) as resp,
    ):
        assert resp.status == 200
        assert await resp.read() == Path(named.group(1)).read_bytes()
    # ... and the command, run as written.
    argv = shlex.split(command.group(1))
    assert argv[:2] == ["wsproxy", "ca"], line
    shown = subprocess.run(
        [sys.executable, "-m", "wsproxy", *argv[1:], "--path"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=proxy_free_env(),
        check=True,
    )
    assert shown.stdout.strip() == named.group(1)


async def test_a_start_with_an_existing_ca_does_not_repeat_it(
    start_proxy: StartProxy, tmp_path: Path
) -> None:
    confdir = tmp_path / "confdir"
    first = await start_proxy(confdir=confdir, verbose=False)
    notice_line(await first.wait_log(lambda text: "wsproxy listening" in text))
    await first.stop()
    second = await start_proxy(confdir=confdir, verbose=False)
    log = await second.wait_log(lambda text: "wsproxy listening" in text)
    assert NOTICE not in log


async def test_a_reverse_only_run_makes_no_ca(start_proxy: StartProxy, tmp_path: Path) -> None:
    """A reverse listener never intercepts TLS, so a run of reverse listeners only leaves the
    confdir alone and says nothing about a CA."""
    confdir = tmp_path / "reverse-confdir"
    proxy = await start_proxy("--mode", f"reverse:ws://{HOST}:9", confdir=confdir, verbose=False)
    log = await proxy.wait_log(lambda text: "wsproxy listening" in text)
    assert NOTICE not in log
    assert not confdir.exists()


async def test_a_regular_listener_beside_a_reverse_one_gets_the_ca(
    start_proxy: StartProxy, tmp_path: Path
) -> None:
    confdir = tmp_path / "mixed-confdir"
    proxy = await start_proxy(
        "--mode", f"reverse:ws://{HOST}:9", "--mode", "regular@0", confdir=confdir, verbose=False
    )
    line = notice_line(await proxy.wait_log(lambda text: text.count("wsproxy listening") == 2))
    assert str(proxy.ca_cert) in line and "browse http://wsproxy.invalid/" in line
    assert proxy.ca_cert.is_file()
