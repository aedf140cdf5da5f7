"""Injected messages go through every mitmproxy addon's ``websocket_message``, as in mitmdump.

Real ``python -m wsproxy`` processes between a real ``websockets`` client and server, with our
own addon scripts (tests/plugins/mitm_scripts/) that make the calls of mitmproxy's
websocket-inject-message.py and websocket-simple.py examples, loaded together.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from websockets.asyncio.client import connect

from tests.harness import HOST, proxy_process, ws_upstream
from tests.plugins.test_mitm_compat import SCRIPTS, _check_modules_line, modes


@modes
async def test_injected_messages_pass_every_addon(tmp_path: Path, hidden: bool) -> None:
    async with ws_upstream() as up:
        args = ["--mode", f"reverse:{up.url}"]
        args += ["-s", str(SCRIPTS / "injector.py"), "-s", str(SCRIPTS / "watcher.py")]
        async with proxy_process(
            args, tmp_path / "confdir", tmp_path, verbose=False, hide_mitmproxy=hidden
        ) as proxy:
            got: list[str | bytes] = []
            async with connect(f"ws://{HOST}:{proxy.port}/") as ws:
                await ws.send("Hello world")
                await ws.send("a secret")
                while not ({"ssssssh", "HAPPY world", "tick 5"} <= set(got)):
                    got.append(await asyncio.wait_for(ws.recv(), 10))
            text = await proxy.wait_log(lambda t: "injector: ticks stopped, live=False" in t)
        assert up.received == ["HAPPY world"]  # the secret was dropped, Hello changed
    _check_modules_line(text, hidden)
    # The greeting the injector sent was changed by the watcher after it; injected ticks it
    # dropped (every third one) never arrived; the reply to the secret went through it too.
    # The greeting comes before the ticks (one task sends them in order); where the reply to
    # the secret falls among them depends on when that task first runs (the event loop's).
    assert "HAPPY from the proxy" in got
    assert got.index("HAPPY from the proxy") < got.index("tick 1")
    ticks = [m for m in got if isinstance(m, str) and m.startswith("tick")]
    assert ticks[:4] == ["tick 1", "tick 2", "tick 4", "tick 5"]
    assert not any("FOOBAR" in str(m) for m in got)
    assert "watcher: server b'Hello from the proxy' injected=True dropped=False" in text
    assert "watcher: server b'ssssssh' injected=True dropped=False" in text
    assert "watcher: server b'tick 3 FOOBAR' injected=True dropped=False" in text
    assert "injected message dropped by watcher" in text
    # As in mitmproxy, an addon after the one that dropped a message still sees it.
    assert "watcher: client b'a secret' injected=False dropped=True" in text
    assert "watcher: client b'Hello world' injected=False dropped=False" in text
    assert "not sent" not in text  # the ticks stopped with the flow


async def test_an_endless_injection_loop_neither_stalls_the_proxy_nor_grows(
    tmp_path: Path,
) -> None:
    async with ws_upstream() as up:
        args = ["--mode", f"reverse:{up.url}", "-s", str(SCRIPTS / "echo_loop.py")]
        async with proxy_process(args, tmp_path / "confdir", tmp_path, verbose=False) as proxy:
            url = f"ws://{HOST}:{proxy.port}/"
            async with connect(url, max_queue=4) as looping:
                await looping.send("loop")
                assert str(await asyncio.wait_for(looping.recv(), 10)).startswith("loop 1 x")
                # The loop runs; other connections, and this one, still get answers.
                async with connect(url) as other:
                    await other.send("still there?")
                    assert await asyncio.wait_for(other.recv(), 10) == "still there?"
                await looping.send("and here?")
                seen: list[str | bytes] = []
                while "and here?" not in seen:
                    seen.append(await asyncio.wait_for(looping.recv(), 10))
                numbers = [int(str(m).split()[1]) for m in seen if str(m).startswith("loop")]
                assert numbers == list(range(2, 2 + len(numbers)))
                # The client stops reading: once its buffers are full the loop is refused
                # instead of queueing without end.
                text = await proxy.wait_log(lambda t: "does not read fast enough" in t)
            assert "injected message not sent: the client does not read fast enough" in text
        assert up.received == ["still there?", "and here?"]
