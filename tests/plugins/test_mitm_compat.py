"""mitmproxy addon scripts (tests/plugins/mitm_scripts/) run unchanged through ``wsproxy -s``.

Each script runs in a real proxy process between a real ``websockets`` client and server,
twice: with mitmproxy importable (if this venv has it) and with ``import mitmproxy`` failing, so
the scripts get wsproxy's stand-in modules. The in-process tests check the adapters' details.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.harness import HOST, proxy_process, ws_upstream
from wsproxy.mitmcompat import MAX_MESSAGES, HTTPFlow, MitmAddon, is_mitm_style
from wsproxy.mitmcompat.addon import option_type
from wsproxy.model import Flow, HandshakeRequest, Message
from wsproxy.sansio.http11 import Headers

SCRIPTS = Path(__file__).parent / "mitm_scripts"
HAVE_MITMPROXY = importlib.util.find_spec("mitmproxy") is not None

modes = pytest.mark.parametrize(
    "hidden",
    [
        pytest.param(
            False,
            id="mitmproxy-installed",
            marks=pytest.mark.skipif(not HAVE_MITMPROXY, reason="mitmproxy is not installed"),
        ),
        pytest.param(True, id="mitmproxy-hidden"),
    ],
)


def _check_modules_line(text: str, hidden: bool) -> None:
    if hidden:
        assert "stand-in mitmproxy modules (mitmproxy is not installed)" in text, text
    else:
        assert "the installed mitmproxy's modules" in text, text


@modes
async def test_count_messages_logs_every_message(tmp_path: Path, hidden: bool) -> None:
    async with ws_upstream() as up:
        args = ["--mode", f"reverse:{up.url}", "-s", str(SCRIPTS / "count_messages.py")]
        args += ["--set", "count_label=tally"]
        async with proxy_process(
            args, tmp_path / "confdir", tmp_path, verbose=False, hide_mitmproxy=hidden
        ) as proxy:
            async with connect(f"ws://{HOST}:{proxy.port}/chat") as ws:
                await ws.send("one")
                assert await ws.recv() == "one"
                await ws.send(b"\x00\x01")
                assert await ws.recv() == b"\x00\x01"
            text = await proxy.wait_log(lambda t: "tally end" in t)
        text = proxy.stderr()
    _check_modules_line(text, hidden)
    assert "count_messages configured: label=tally" in text
    assert "count_messages running" in text
    assert f"tally start http://{HOST}:{up.port}/chat" in text
    assert "tally client #1 TEXT b'one' total=1" in text
    assert "tally server #1 TEXT b'one' total=2" in text
    assert "tally client #2 BINARY b'\\x00\\x01' total=3" in text
    assert "tally server #2 BINARY b'\\x00\\x01' total=4" in text
    assert "tally end code=1000 by_client=True client=2 server=2" in text
    assert "count_messages done" in text  # at shutdown


@modes
async def test_rewrite_content_changes_messages_both_ways(tmp_path: Path, hidden: bool) -> None:
    async with ws_upstream() as up:
        args = ["--mode", f"reverse:{up.url}", "-s", str(SCRIPTS / "rewrite_content.py")]
        async with (
            proxy_process(
                args, tmp_path / "confdir", tmp_path, verbose=False, hide_mitmproxy=hidden
            ) as proxy,
            connect(f"ws://{HOST}:{proxy.port}/") as ws,
        ):
            await ws.send("hello world")
            assert await ws.recv() == "HELLO world [seen]"
            await ws.send(b"abc")
            assert await ws.recv() == b"cba"
        assert up.received == ["HELLO world", b"cba"]
    _check_modules_line(proxy.stderr(), hidden)


@modes
async def test_blocker_drops_injects_and_edits_the_handshake(tmp_path: Path, hidden: bool) -> None:
    async with ws_upstream() as up:
        args = ["--mode", f"reverse:{up.url}", "-s", str(SCRIPTS / "blocker.py")]
        args += ["--set", "blocker_word=password"]
        async with proxy_process(
            args, tmp_path / "confdir", tmp_path, verbose=False, hide_mitmproxy=hidden
        ) as proxy:
            url = f"ws://{HOST}:{proxy.port}/room"
            async with connect(url, additional_headers={"X-Remove-Me": "1"}) as ws:
                assert ws.response is not None
                assert ws.response.headers["X-Blocker"] == "on"
                await ws.send("my password is 123")
                assert await ws.recv() == "blocked #1"
                await ws.send("fine")
                assert await ws.recv() == "fine"
                await ws.send("password again")
                assert await ws.recv() == "blocked #2"
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"ws://{HOST}:{proxy.port}/forbidden/x"):
                    pass
            assert refused.value.response.status_code == 403
            text = await proxy.wait_log(lambda t: t.count("blocker: dropped") == 2)
        assert up.received == ["fine"]  # the blocked ones never reached the server
        assert len(up.headers) == 1  # /forbidden never reached it either
        assert up.headers[0]["x-inspected-by"] == "blocker"
        assert "x-remove-me" not in up.headers[0]
    assert "blocker: dropped b'my password is 123' (101)" in text
    _check_modules_line(text, hidden)


@modes
async def test_mitm_and_native_scripts_share_one_chain(tmp_path: Path, hidden: bool) -> None:
    native = tmp_path / "shout.py"
    native.write_text(
        "def message(flow, message):\n"
        "    if message.from_client and message.is_text:\n"
        "        message.text = message.text + '!'\n"
    )
    async with ws_upstream() as up:
        args = ["--mode", f"reverse:{up.url}", "-s", str(SCRIPTS / "rewrite_content.py")]
        args += ["-s", str(native), "-s", str(SCRIPTS / "count_messages.py")]
        async with proxy_process(
            args, tmp_path / "confdir", tmp_path, verbose=False, hide_mitmproxy=hidden
        ) as proxy:
            async with connect(f"ws://{HOST}:{proxy.port}/") as ws:
                await ws.send("hello")
                assert await ws.recv() == "HELLO! [seen]"
            text = await proxy.wait_log(lambda t: "count end" in t)
        assert up.received == ["HELLO!"]
    # count_messages runs last: it sees the message as the plugins before it left it.
    assert "count client #1 TEXT b'HELLO!' total=1" in text


# -- the adapters in-process -------------------------------------------------------------------


def _flow() -> Flow:
    headers = Headers([("Host", "example.com"), ("X-Twice", "a"), ("x-twice", "b")])
    request = HandshakeRequest("wss", "example.com", 443, "/p", headers)
    return Flow("c1", ("127.0.0.1", 5000), request)


def test_request_adapter_reads_and_writes_the_upgrade_request() -> None:
    flow = _flow()
    adapter = HTTPFlow.of(flow)
    assert HTTPFlow.of(flow) is adapter
    req = adapter.request
    assert (req.scheme, req.host, req.port, req.path) == ("https", "example.com", 443, "/p")
    assert req.url == "https://example.com/p" == req.pretty_url
    assert req.headers["x-twice"] == "a, b"
    assert list(req.headers) == ["Host", "X-Twice"] and len(req.headers) == 2
    req.port = 8443
    assert flow.request.headers.get("Host") == "example.com:8443"
    req.scheme = "http"
    assert flow.request.scheme == "ws"
    req.headers["X-New"] = "1"
    del req.headers["X-TWICE"]
    assert flow.request.headers.get_all("x-twice") == []
    assert flow.request.headers.get("x-new") == "1"
    with pytest.raises(KeyError):
        del req.headers["absent"]
    assert adapter.client_conn.peername == ("127.0.0.1", 5000)
    assert adapter.server_conn.address == ("example.com", 8443)
    assert adapter.websocket is None and adapter.response is None
    adapter.kill()
    assert flow.refused == (403, "killed by a script")


def test_messages_are_live_then_snapshots_and_bounded() -> None:
    flow = _flow()
    adapter = HTTPFlow.of(flow)
    ws = adapter._websocket()
    first = Message(True, 1, b"hi")
    current = ws._push(first)
    assert ws._push(first) is current  # a second addon sees the same message
    current.text = "changed"
    assert first.content == b"changed" and first.modified
    assert repr(current) == "'changed'"
    for n in range(MAX_MESSAGES + 10):
        ws._push(Message(False, 2, bytes([n % 256])))
    assert len(ws.messages) == MAX_MESSAGES
    last = ws.messages[-1]
    assert last.type.name == "BINARY" and not last.from_client
    with pytest.raises(AttributeError):
        _ = last.text
    last.drop()
    assert last.dropped
    older = ws.messages[0]
    older.content = b"late"  # a snapshot: changing it reaches nothing
    assert older.content == b"late"


def test_classification_and_option_types() -> None:
    class Mitm:
        def websocket_message(self, flow: object) -> None: ...

        def error(self, flow: object) -> None: ...

    class Native:
        def message(self, flow: object, message: object) -> None: ...

    assert is_mitm_style(Mitm()) and not is_mitm_style(Native())
    wrapped = MitmAddon(Mitm(), "m")
    assert callable(wrapped.message) and callable(wrapped.error)
    assert not hasattr(wrapped, "opened")  # only the hooks the addon has
    from typing import Optional, Sequence  # noqa: UP035

    assert option_type(Optional[int]) is int  # noqa: UP045
    assert option_type(Sequence[str]) is list
    assert option_type(bool) is bool
    assert option_type(dict) is str


async def test_inject_command_reaches_the_flow() -> None:
    from wsproxy.mitmcompat import install
    from wsproxy.mitmcompat.shim import MASTER, CommandError

    install()
    flow = _flow()
    sent: list[tuple[bytes | str, bool]] = []
    flow._injector = lambda content, to_client: sent.append((content, to_client)) or True
    adapter = HTTPFlow.of(flow)
    MASTER.commands.call("inject.websocket", adapter, True, b"text", True)
    MASTER.commands.call("inject.websocket", adapter, False, b"\xff", False)
    assert sent == [("text", True), (b"\xff", False)]
    with pytest.raises(CommandError):
        MASTER.commands.call("replay.client", [adapter])
    adapter.kill()  # open now: closes instead of refusing
    assert flow.refused is None
    await asyncio.sleep(0)
