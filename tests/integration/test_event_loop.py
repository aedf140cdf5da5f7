"""``--loop``: the proxy relays the same on uvloop and on asyncio's loop, says which one runs,
and ``--loop uvloop`` without uvloop installed is one clear line and status 2.

uvloop is in the test extra, so under CI both loops are there; the rest of the suite runs its
proxies on ``--loop auto`` (uvloop) unless ``WSPROXY_TEST_LOOP=asyncio`` says otherwise.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trustme
from websockets.asyncio.client import connect

from tests.harness import (
    HOST,
    ROOT,
    ProxyProcess,
    StartProxy,
    StartWsEcho,
    WebProcess,
    proxy_free_env,
)
from wsproxy import __version__
from wsproxy.eventloop import choose_loop, run
from wsproxy.exceptions import ConfigError

pytestmark = pytest.mark.timeout(90)

TIMEOUT = 60  # seconds for one CLI run: the machine is shared
LOOP_LINE = "event loop: "
# Text, a binary message past 64 KiB (extended length, several reads) and 1 MiB of text.
PAYLOADS: list[str | bytes] = ["hello", os.urandom(70_000), "x" * (1 << 20)]


def loop_lines(log: str) -> list[str]:
    return [line.split(LOOP_LINE, 1)[1] for line in log.splitlines() if LOOP_LINE in line]


async def relay_both_ways(url: str, proxy: ProxyProcess, ctx: ssl.SSLContext | None) -> None:
    async with connect(
        url, proxy=proxy.url, ssl=ctx, max_size=None, ping_interval=None, open_timeout=20
    ) as ws:
        for payload in PAYLOADS:
            await ws.send(payload)
            assert await ws.recv() == payload


def wss_context(upstream_ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    upstream_ca.issue_cert("localhost", HOST).configure_cert(ctx)
    return ctx


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_each_loop_relays_ws_and_intercepted_wss(
    loop: str,
    start_proxy: StartProxy,
    start_ws_echo: StartWsEcho,
    upstream_ca: trustme.CA,
    upstream_ca_file: Path,
) -> None:
    proxy = await start_proxy("--loop", loop, "--upstream-ca", str(upstream_ca_file))
    plain = await start_ws_echo()
    secure = await start_ws_echo(ssl=wss_context(upstream_ca))
    await relay_both_ways(f"{plain.url}/plain", proxy, None)
    client_ctx = ssl.create_default_context(cafile=str(proxy.confdir / "mitmproxy-ca-cert.pem"))
    await relay_both_ways(f"{secure.url}/secure", proxy, client_ctx)

    log = await proxy.wait_count("WebSocket closed", 2)
    [running] = loop_lines(log)  # one line, at -v
    assert running.startswith(f"{loop} "), running
    assert f"GET ws://{HOST}:{plain.port}/plain" in log
    assert f"CONNECT {HOST}:{secure.port}" in log
    assert f"GET wss://{HOST}:{secure.port}/secure" in log
    assert plain.paths == ["/plain"] and secure.paths == ["/secure"]
    for direction in ("client -> server", "server -> client"):  # each connection: 2 + 1
        assert log.count(f"{direction} TEXT F") == 4, log
        assert log.count(f"{direction} BINARY F") == 2, log


async def test_auto_takes_uvloop_when_installed(start_proxy: StartProxy) -> None:
    proxy = await start_proxy("--loop", "auto")
    [running] = loop_lines(await proxy.wait_log(lambda text: LOOP_LINE in text))
    assert running.startswith("uvloop 0."), running


async def test_auto_falls_back_to_asyncio_without_uvloop(start_proxy: StartProxy) -> None:
    proxy = await start_proxy("--loop", "auto", hide_modules=("uvloop",))
    [running] = loop_lines(await proxy.wait_log(lambda text: LOOP_LINE in text))
    assert running.startswith("asyncio _UnixSelectorEventLoop (Python 3."), running


async def test_web_ui_runs_on_the_chosen_loop(
    start_web: Callable[..., Awaitable[WebProcess]],
) -> None:
    web = await start_web("--loop", "uvloop")
    [running] = loop_lines(await web.wait_log(lambda text: LOOP_LINE in text))
    assert running.startswith("uvloop "), running


def run_cli(code: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """``wsproxy.cli.main(argv)`` in a fresh interpreter after ``code`` ran (which may make
    ``import uvloop`` fail: None in sys.modules is what an import then refuses)."""
    program = f"import sys\n{code}\nfrom wsproxy.cli import main\nsys.exit(main({list(argv)!r}))"
    return subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env=proxy_free_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_loop_uvloop_without_uvloop_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli(
        "sys.modules['uvloop'] = None",
        "--loop", "uvloop", "-p", "0", "--confdir", str(tmp_path / "confdir"),
    )  # fmt: skip
    assert result.returncode == 2, result
    assert result.stderr == (
        "wsproxy: --loop uvloop: uvloop is not installed (install it with "
        "pip install 'wsproxy[fast]'), or run with --loop asyncio\n"
    )
    assert not (tmp_path / "confdir").exists()  # refused before anything started


def test_version_names_the_loops() -> None:
    with_uvloop = run_cli("", "--version")
    assert with_uvloop.returncode == 0, with_uvloop
    name, versions = with_uvloop.stdout.splitlines()
    assert name == f"wsproxy {__version__}"
    assert versions.startswith("Python 3.")
    assert "event loops: asyncio, uvloop 0." in versions
    assert versions.endswith("(--loop auto: uvloop)")

    without = run_cli("sys.modules['uvloop'] = None", "--version")
    assert without.stdout.splitlines()[1].endswith(
        "event loops: asyncio; uvloop not installed (pip install 'wsproxy[fast]')"
    ), without


# -- choosing, in this process -----------------------------------------------------------------


def test_choices_where_uvloop_imports() -> None:
    assert choose_loop("auto").name == "uvloop"
    assert choose_loop("uvloop").name == "uvloop"
    assert choose_loop("asyncio").name == "asyncio"
    assert choose_loop("asyncio").factory is None  # asyncio.Runner's own default loop


def test_choices_where_uvloop_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert choose_loop("auto").name == "asyncio"
    with pytest.raises(ConfigError, match=r"uvloop is not installed \(install it with pip"):
        choose_loop("uvloop")


def test_choices_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    assert choose_loop("auto").name == "asyncio"
    with pytest.raises(ConfigError, match="uvloop does not run on Windows"):
        choose_loop("uvloop")


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(ConfigError, match="choose one of auto, asyncio, uvloop"):
        choose_loop("trio")


def test_run_closes_the_coroutine_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """No "coroutine was never awaited" warning (an error under this suite's filterwarnings)."""
    monkeypatch.setitem(sys.modules, "uvloop", None)

    async def main() -> None:
        raise AssertionError("must not run")

    coroutine = main()
    with pytest.raises(ConfigError):
        run(coroutine, "uvloop")
    assert coroutine.cr_frame is None  # closed


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_run_returns_what_the_coroutine_returns(loop: str) -> None:
    async def main() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run(main(), loop).startswith("uvloop" if loop == "uvloop" else "asyncio")
