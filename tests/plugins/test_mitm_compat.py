"""mitmproxy addon scripts (tests/plugins/mitm_scripts/) run unchanged through ``wsproxy -s``.

Each script runs in a real proxy process between a real ``websockets`` client and server,
twice: with mitmproxy importable (if this venv has it) and with ``import mitmproxy`` failing, so
the scripts get wsproxy's stand-in modules. The in-process tests check the adapters' details.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.harness import HOST, proxy_process, wait_until, ws_upstream
from wsproxy.mitmcompat import MAX_MESSAGES, HTTPFlow, MitmAddon, is_mitm_style
from wsproxy.mitmcompat.addon import option_type
from wsproxy.model import CloseInfo, Flow, HandshakeRequest, HandshakeResponse, Message
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


@modes
async def test_state_dump_gets_mitmproxy_shaped_state(tmp_path: Path, hidden: bool) -> None:
    """``get_state()``/``set_state()`` as mitmproxy's contrib jsondump.py uses them: JSON lines
    at ``response`` and ``websocket_end``, with every message though the addon has no
    ``websocket_message`` hook; ``set_state`` in ``request`` changes what the upstream gets."""
    dump = tmp_path / "state.jsonl"
    async with ws_upstream() as up:
        args = ["--mode", f"reverse:{up.url}", "-s", str(SCRIPTS / "state_dump.py")]
        args += ["--set", f"state_dump_file={dump}"]
        async with proxy_process(
            args, tmp_path / "confdir", tmp_path, verbose=False, hide_mitmproxy=hidden
        ) as proxy:
            async with connect(f"ws://{HOST}:{proxy.port}/old/room") as ws:
                await ws.send("one")
                assert await ws.recv() == "one"
                await ws.send(b"\x00\xff")
                assert await ws.recv() == b"\x00\xff"
            await up.next_close()
            await wait_until(lambda: dump.exists() and dump.read_text().count("\n") == 2)
        assert up.paths == ["/new/room"]
        assert up.headers[0]["x-state"] == "set"
    _check_modules_line(proxy.stderr(), hidden)
    at_response, at_end = (json.loads(line) for line in dump.read_text().splitlines())
    assert at_response["event"] == "response" and at_end["event"] == "websocket_end"
    for state in (at_response, at_end):
        assert (state["version"], state["type"]) == (21, "http")
        assert state["metadata"] == {"moved": True}
        request = state["request"]
        assert (request["method"], request["scheme"], request["path"]) == (
            "GET",
            "http",
            "/new/room",
        )
        assert (request["host"], request["port"]) == (HOST, up.port)
        assert request["headers"]["X-State"] == "set"
        assert state["response"]["status_code"] == 101
        assert state["response"]["reason"] == "Switching Protocols"
        assert state["client_conn"]["peername"][0] == HOST
        assert state["server_conn"]["address"] == [HOST, up.port]
    assert at_response["websocket"]["messages"] == []
    assert at_response["client_conn"]["timestamp_end"] is None
    ws_state = at_end["websocket"]
    got = [
        (m["type"], m["from_client"], base64.b64decode(m["content"])) for m in ws_state["messages"]
    ]
    assert got == [
        (1, True, b"one"),
        (1, False, b"one"),
        (2, True, b"\x00\xff"),
        (2, False, b"\x00\xff"),
    ]
    assert not any(m["dropped"] or m["injected"] for m in ws_state["messages"])
    assert (ws_state["close_code"], ws_state["closed_by_client"]) == (1000, True)
    assert ws_state["timestamp_end"] >= at_end["client_conn"]["timestamp_start"]


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


# -- get_state / set_state in-process -------------------------------------------------------------


def _open_flow() -> tuple[Flow, HTTPFlow]:
    """A flow past its handshake with two messages, the second dropped, and then closed."""
    flow = _flow()
    flow.response = HandshakeResponse(
        101, "Switching Protocols", Headers([("Upgrade", "websocket")])
    )
    flow.metadata["note"] = {"a": [1, 2]}
    adapter = HTTPFlow.of(flow)
    adapter._set_response()
    ws = adapter._websocket()
    ws._push(Message(True, 1, b"hi", timestamp=5.0))
    dropped = Message(False, 2, b"\x00", timestamp=6.0, injected=True)
    ws._push(dropped)
    dropped.drop()
    flow.closed_by = "server"
    flow.server_close = CloseInfo(4000, "bye", received_close=True)
    flow.ended = 9.0
    adapter._end()
    return flow, adapter


def _shape(value: Any) -> Any:
    """The keys and value types of a state, for comparing with mitmproxy's."""
    if isinstance(value, dict):
        return {key: _shape(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value).__name__
    return type(value).__name__ if value is not None else None


def test_get_state_is_plain_data_in_mitmproxys_shape() -> None:
    flow, adapter = _open_flow()
    state = adapter.get_state()
    assert state["id"] == "c1" and state["websocket"]["messages"] == [
        (1, True, b"hi", 5.0, False, False),
        (2, False, b"\x00", 6.0, True, True),
    ]
    ws = state["websocket"]
    assert (ws["closed_by_client"], ws["close_code"], ws["close_reason"]) == (False, 4000, "bye")
    assert ws["timestamp_end"] == 9.0 == state["client_conn"]["timestamp_end"]
    assert state["request"]["headers"] == (
        (b"Host", b"example.com"),
        (b"X-Twice", b"a"),
        (b"x-twice", b"b"),
    )
    assert (state["request"]["scheme"], state["request"]["path"]) == (b"https", b"/p")
    assert state["server_conn"]["tls"] and state["server_conn"]["sni"] == "example.com"
    assert state["response"]["status_code"] == 101
    state["metadata"]["note"]["a"].append(3)  # a copy: the flow's metadata stays
    assert flow.metadata == {"note": {"a": [1, 2]}}
    assert adapter.timestamp_start == state["request"]["timestamp_start"]
    during_handshake = HTTPFlow(_flow()).get_state()
    assert during_handshake["response"] is None and during_handshake["websocket"] is None
    assert json.loads(json.dumps(state, default=lambda b: b.decode("latin-1")))["type"] == "http"


@pytest.mark.skipif(not HAVE_MITMPROXY, reason="mitmproxy is not installed")
def test_get_state_rebuilds_a_real_mitmproxy_flow() -> None:
    from mitmproxy import http
    from mitmproxy.test import tflow

    _, adapter = _open_flow()
    state = adapter.get_state()
    # The same keys, nesting and value types as mitmproxy's own WebSocket flow.
    theirs = tflow.twebsocketflow().get_state()
    ours_shape, their_shape = _shape(state), _shape(theirs)
    for part in ("client_conn", "server_conn", "request", "response", "websocket"):
        assert set(ours_shape[part]) == set(their_shape[part]), part
    assert list(ours_shape) == list(their_shape)
    rebuilt = http.HTTPFlow.from_state(adapter.get_state())
    assert rebuilt.get_state() == state
    assert rebuilt.websocket is not None and rebuilt.websocket.messages[1].injected
    assert rebuilt.request.url == "https://example.com/p"


def test_set_state_applies_what_a_flow_can_change() -> None:
    flow = _flow()
    adapter = HTTPFlow.of(flow)
    state = adapter.get_state()
    state["request"].update(host="other.test", port=8443, path=b"/q", scheme=b"http")
    state["request"]["headers"] = ((b"Host", b"example.com"), (b"X-New", b"1"))
    state.update(marked=":star:", comment="seen", metadata={"k": 1}, id="ignored")
    adapter.set_state(state)
    request = flow.request
    assert (request.scheme, request.host, request.port, request.path) == (
        "ws",
        "other.test",
        8443,
        "/q",
    )
    assert request.headers.items() == [("Host", "other.test:8443"), ("X-New", "1")]
    assert (adapter.marked, adapter.comment, adapter.id) == (":star:", "seen", "c1")
    assert flow.metadata == {"k": 1} == adapter.metadata
    flow.response = HandshakeResponse(101, "Switching Protocols", Headers([("A", "1")]))
    adapter._set_response()
    state = adapter.get_state()
    state["response"]["headers"] = ((b"B", b"2"),)
    adapter.set_state(state)
    assert flow.response.headers.items() == [("B", "2")]
    with pytest.raises(ValueError, match="not the state of an HTTP flow"):
        adapter.set_state({"type": "tcp"})
