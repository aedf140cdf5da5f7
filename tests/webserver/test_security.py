"""wsproxy-web's guards through a real process: tokens, password, Host, Origin, headers."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pytest

from tests.harness import HOST, free_port
from tests.integration.wsraw import new_key, read_response


async def raw_get(port: int, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    """A request with exactly these headers (aiohttp would set Host itself)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        head = f"GET {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write((head + "Connection: close\r\n\r\n").encode())
        response = await read_response(reader)
        return response.status, {k.lower(): v for k, v in response.headers}
    finally:
        writer.close()


async def test_every_request_needs_the_token(start_web: Any) -> None:
    proc = await start_web()
    assert re.search(
        r"^wsproxy web UI: http://127\.0\.0\.1:\d+/\?token=\S{20,}$", proc.stdout(), re.M
    )
    # unsafe=True: keep cookies of an IP address, as a browser does (aiohttp would not).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        for path in ("/api/connections", "/api/pauses", "/", "/static/index.html", "/api/export"):
            async with session.get(proc.ui + path) as r:
                assert r.status == 401, path
                assert "token required" in (await r.json())["error"]
            async with session.get(proc.ui + path, headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 401, path
        async with session.get(f"{proc.ui}/api/connections?token=wrong") as r:
            assert r.status == 401
        async with session.get(proc.ui + "/", headers={"Accept": "text/html"}) as r:
            assert r.status == 401 and "<form" in await r.text()  # a person can type it
        bearer = {"Authorization": f"Bearer {proc.token}"}
        async with session.get(proc.ui + "/api/connections", headers=bearer) as r:
            assert r.status == 200
            assert r.headers["Cache-Control"] == "no-store"
            assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
            assert r.headers["X-Frame-Options"] == "DENY"
        async with session.get(f"{proc.ui}/?token={proc.token}") as r:
            assert r.status == 200 and r.content_type == "text/html"
            assert r.headers["X-Frame-Options"] == "DENY"
            cookie = r.cookies["wsproxy_web"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
        # The cookie serves the page's own files, never the API.
        async with session.get(proc.ui + "/static/index.html") as r:
            assert r.status == 200
        async with session.get(proc.ui + "/api/connections") as r:
            assert r.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(proc.ui + "/api/updates")
        assert refused.value.status == 401
        async with session.get(proc.ui + "/static/../cli.py", headers=bearer) as r:
            assert r.status in (403, 404)
    assert proc.token not in proc.stderr()


async def test_host_and_origin_checks_and_no_cors(start_web: Any) -> None:
    proc = await start_web()
    auth = {"Authorization": f"Bearer {proc.token}"}
    own = f"127.0.0.1:{proc.web_port}"
    status, headers = await raw_get(proc.web_port, "/api/connections", {"Host": own, **auth})
    assert status == 200
    assert not [h for h in headers if h.startswith("access-control-")]
    status, headers = await raw_get(
        proc.web_port,
        "/api/connections",
        {"Host": own, "Origin": "http://evil.example", **auth},
    )
    assert status == 200 and not [h for h in headers if h.startswith("access-control-")]
    for bad in (f"evil.example:{proc.web_port}", "evil.example", f"127.0.0.1:{proc.web_port + 1}"):
        status, headers = await raw_get(proc.web_port, "/api/connections", {"Host": bad, **auth})
        assert status == 403, bad
        assert headers["content-type"].startswith("application/json")
    status, _ = await raw_get(proc.web_port, "/api/connections", auth)  # no Host at all
    assert status in (400, 403)
    ws_headers = {
        "Host": own,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": new_key(),
        "Sec-WebSocket-Version": "13",
    }
    target = f"/api/updates?token={proc.token}"
    status, _ = await raw_get(
        proc.web_port, target, {**ws_headers, "Origin": "http://evil.example"}
    )
    assert status == 403
    status, _ = await raw_get(proc.web_port, target, {**ws_headers, "Origin": f"http://{own}"})
    assert status == 101


async def test_password_mode_prints_no_secret(start_web: Any) -> None:
    proc = await start_web("--web-password", "s3cret-pass", "-v")
    assert "s3cret-pass" not in proc.stdout() + proc.stderr()
    assert "enter the --web-password" in proc.stdout()
    async with aiohttp.ClientSession() as session:
        async with session.get(proc.ui + "/api/connections") as r:
            assert r.status == 401
        headers = {"Authorization": "Bearer s3cret-pass"}
        async with session.get(proc.ui + "/api/connections", headers=headers) as r:
            assert r.status == 200
        ws = await session.ws_connect(proc.ui + "/api/updates?token=s3cret-pass")
        assert (await ws.receive_json())["type"] == "hello"
        await ws.close()
    assert "s3cret-pass" not in proc.stderr()


async def test_a_taken_ui_port_is_one_line(start_proxy: Any, tmp_path: Any) -> None:
    import subprocess
    import sys

    blocker = await asyncio.start_server(lambda r, w: None, HOST, 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        result = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "wsproxy.web",
                "-p",
                str(free_port()),
                "--web-port",
                str(port),
                "--confdir",
                str(tmp_path / "conf"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        blocker.close()
        await blocker.wait_closed()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[
        -1
    ] == f"wsproxy-web: cannot listen on 127.0.0.1:{port} for the web UI: address in use" or (
        "cannot listen on" in lines[-1] and "web UI" in lines[-1]
    ), result.stderr
    assert "Traceback" not in result.stderr


async def test_a_non_loopback_ui_warns(start_web: Any) -> None:
    proc = await start_web("--web-host", "0.0.0.0")
    assert "reachable from other machines" in proc.stderr()
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {proc.token}"}
        async with session.get(proc.ui + "/api/connections", headers=headers) as r:
            assert r.status == 200
