"""The web UI page in a real headless Chromium, against a real ``wsproxy-web``: real
``websockets`` clients through its proxy port, a real echo server upstream.

Each test drives the page as a person would (by role and label) and checks the effect on
the real peers: what the upstream received, what the client got, how each saw the close.
The main views are saved as docs/screenshots/*.png for the README.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from playwright.async_api import Locator, Page, expect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.harness import HOST, AioServer, WebProcess, WsUpstream
from tests.web.conftest import page_url, screenshot

pytestmark = pytest.mark.timeout(90)

NewPage = Callable[..., Awaitable[Page]]
StartWeb = Callable[..., Awaitable[WebProcess]]


async def open_ui(new_page: NewPage, ui: WebProcess, **options: object) -> Page:
    page = await new_page(**options)
    await page.goto(page_url(ui))
    await expect(page.locator("#link-status")).to_have_text("live")
    return page


async def client_of(ui: WebProcess, path: str = "/chat") -> ClientConnection:
    return await connect(f"ws://{HOST}:{ui.port}{path}", max_size=None, ping_interval=None)


def literal(text: str) -> re.Pattern[str]:
    """A pattern matching ``text`` as it is (Playwright wants a slash escaped, too)."""
    return re.compile(re.escape(text).replace("/", r"\/"))


def connection_option(page: Page, path: str) -> Locator:
    return page.get_by_role("listbox", name="Connections").get_by_role("option", name=literal(path))


def message_options(page: Page, text: str) -> Locator:
    return page.get_by_role("listbox", name="Messages").get_by_role("option", name=literal(text))


async def test_a_message_through_the_proxy_appears_with_its_details(
    start_web: StartWeb, ws_echo: WsUpstream, new_page: NewPage
) -> None:
    ui = await start_web("--mode", f"reverse:{ws_echo.url}")
    page = await open_ui(new_page, ui)
    assert "token" not in page.url  # taken out of the address bar once read
    async with await client_of(ui) as client:
        await client.send("hello through the proxy")
        assert await client.recv() == "hello through the proxy"
        await client.send(json.dumps({"type": "chat", "text": "hi"}))
        await client.recv()
        await client.send(b"\x00\x01hi")
        await client.recv()

        row = connection_option(page, "/chat")
        await expect(row).to_have_count(1)
        await expect(row).to_contain_text("open")
        await expect(row).to_contain_text(re.compile(r"→ 3 msg"))
        await row.click()
        await expect(message_options(page, "hello through the proxy")).to_have_count(2)
        first = message_options(page, "hello through the proxy").first
        await expect(first).to_contain_text("→")
        await expect(first).to_contain_text("forwarded")
        await screenshot(page, "connections")

        # the viewer: pretty JSON, hex of a binary message
        await message_options(page, '"chat"').first.click()
        await page.get_by_role("radio", name="JSON").check()
        viewer = page.get_by_role("region", name="Message")
        await expect(viewer.get_by_label("Message content")).to_have_text(
            json.dumps({"type": "chat", "text": "hi"}, indent=2)
        )
        await (
            page.get_by_role("listbox", name="Messages")
            .get_by_role("option", name=re.compile(r"client to server binary"))
            .click()
        )
        await page.get_by_role("radio", name="Hex").check()
        await expect(viewer.get_by_label("Message content")).to_contain_text("00 01 68 69")
        await page.get_by_role("button", name="Copy as wsproxy replay").click()
        await expect(page.get_by_label("Replay command")).to_have_value(
            re.compile(r"wsproxy replay \S+ --conn ")
        )
        await screenshot(page, "timeline")

        # the handshake, as the client sent it and the server answered
        await page.get_by_role("tab", name="Handshake").click()
        request = page.get_by_role("table", name="Request headers")
        await expect(request).to_contain_text(re.compile("sec-websocket-key", re.I))
        await expect(page.get_by_role("table", name="Response headers")).to_contain_text(
            re.compile("sec-websocket-accept", re.I)
        )

        # export this connection as JSONL: a real download through the token
        async with page.expect_download() as download_info:
            await page.get_by_role("link", name="Export this connection as JSONL").click()
        download = await download_info.value
        exported = (await download.path()).read_text()
        assert "hello through the proxy" in exported


async def test_a_paused_message_is_edited_in_the_page_and_forwarded(
    start_web: StartWeb, ws_echo: WsUpstream, new_page: NewPage
) -> None:
    ui = await start_web("--mode", f"reverse:{ws_echo.url}")
    page = await open_ui(new_page, ui)
    await page.get_by_role("tab", name=re.compile("Breakpoints")).click()
    await page.get_by_role("button", name="Add rule").click()
    await page.get_by_label("Rule 1 filter").fill("~b secret")
    await page.get_by_label("Rule 1 direction").select_option("client")
    await page.get_by_role("button", name="Save rules").click()
    await expect(page.locator("#rules-status")).to_have_text(re.compile("Saved: 1 rule"))

    async with await client_of(ui) as client:
        await client.send("the secret plan")
        paused = page.get_by_role("option", name=re.compile("Paused client to server"))
        await expect(paused).to_have_count(1)
        await expect(page.locator("#paused-count")).to_have_text("1")
        editor = page.get_by_label("Message (text)")
        await expect(editor).to_have_value("the secret plan")
        await screenshot(page, "paused-message")
        # other connections keep flowing while one message waits
        async with await client_of(ui, "/other") as other:
            await other.send("not matching")
            assert await asyncio.wait_for(other.recv(), 10) == "not matching"

        await editor.fill("the edited plan")
        await page.get_by_role("button", name="Forward edited").click()
        assert await asyncio.wait_for(client.recv(), 10) == "the edited plan"
        assert ws_echo.received == ["not matching", "the edited plan"]
        await expect(page.locator("#paused-count")).to_have_text("0")

        # the keyboard: d drops the next paused message, so the upstream never sees it
        await client.send("another secret")
        await expect(page.get_by_label("Message (text)")).to_have_value("another secret")
        await page.locator("#paused-title").click()  # out of any field
        await page.keyboard.press("d")
        await expect(page.locator("#paused-count")).to_have_text("0")
        await client.send("after the drop")
        assert await asyncio.wait_for(client.recv(), 10) == "after the drop"
        assert ws_echo.received == ["not matching", "the edited plan", "after the drop"]

        # Answer: the sender gets the reply, the server never sees the question
        await client.send("a secret question")
        await expect(page.get_by_label("Message (text)")).to_have_value("a secret question")
        await page.get_by_label("Answer text").fill("the page answers")
        await page.get_by_role("button", name="Answer", exact=True).click()
        assert await asyncio.wait_for(client.recv(), 10) == "the page answers"
        assert "a secret question" not in ws_echo.received

        # the timeline shows what happened: modified (with the original beside) and dropped
        await page.get_by_role("tab", name="Traffic").click()
        await connection_option(page, "/chat").click()
        modified = message_options(page, "the edited plan").first
        await expect(modified).to_contain_text("modified")
        await expect(modified).to_contain_text("was: the secret plan")
        await expect(message_options(page, "another secret").first).to_contain_text("dropped")


async def test_compose_and_close_from_the_page_reach_the_real_peers(
    start_web: StartWeb, ws_echo: WsUpstream, new_page: NewPage
) -> None:
    ui = await start_web("--mode", f"reverse:{ws_echo.url}")
    page = await open_ui(new_page, ui)
    async with await client_of(ui) as client:
        await connection_option(page, "/chat").click()
        await page.get_by_role("tab", name="Compose").click()

        await page.get_by_label("Send to").select_option("client")
        await page.get_by_label("Message to send").fill("from the page")
        await page.get_by_role("button", name="Send", exact=True).click()
        assert await asyncio.wait_for(client.recv(), 10) == "from the page"

        await page.get_by_label("Send to").select_option("server")
        await page.get_by_label("Message type").select_option("binary")
        await page.get_by_label("Message to send").fill("de ad be ef")
        await page.get_by_role("button", name="Send", exact=True).click()
        assert await asyncio.wait_for(client.recv(), 10) == b"\xde\xad\xbe\xef"  # the echo
        assert ws_echo.received == [b"\xde\xad\xbe\xef"]

        # bad hex never leaves the page
        await page.get_by_label("Message to send").fill("zz")
        await page.get_by_role("button", name="Send", exact=True).click()
        await expect(page.locator("#compose-status")).to_contain_text('not hex: "z"')

        await page.get_by_label("Close code").fill("4000")
        await page.get_by_label("Close reason").fill("bye")
        await page.get_by_label("Close which side").select_option("both")
        await page.get_by_role("button", name="Close connection").click()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(client.recv(), 10)
        assert (client.close_code, client.close_reason) == (4000, "bye")
        closed = await ws_echo.next_close()
        assert (closed.code, closed.reason) == (4000, "bye")
    await expect(connection_option(page, "/chat")).to_contain_text("closed")
    await expect(connection_option(page, "/chat")).to_contain_text('4000 "bye"')
    await page.get_by_role("tab", name="Timeline").click()
    await expect(message_options(page, "injected").first).to_be_visible()


async def test_without_the_token_the_page_shows_the_token_screen(
    start_web: StartWeb, ws_echo: WsUpstream, new_page: NewPage
) -> None:
    ui = await start_web("--mode", f"reverse:{ws_echo.url}")
    page = await new_page()
    await page.goto(page_url(ui, token=""))
    await expect(page.get_by_role("heading", name="Token required")).to_be_visible()
    await expect(page.get_by_role("listbox", name="Connections")).to_be_hidden()
    # the API answers the page 401 without the header, and nothing else can be read
    status = await page.evaluate("fetch('/api/connections').then(r => r.status)")
    assert status == 401

    # a wrong token: the server's own token form, and the right one typed into it opens the UI
    await page.goto(page_url(ui, token="wrong"))
    await expect(page.get_by_role("heading", name="Token required")).to_be_visible()
    await page.locator("input[name=token]").fill(ui.token)
    await page.get_by_role("button", name="Open").click()
    await expect(page.locator("#link-status")).to_have_text("live")
    await expect(page.get_by_role("listbox", name="Connections")).to_be_visible()

    # a new tab has the page (its cookie serves the page's files) but no token for the API:
    # the page's own token screen asks for it
    second = await page.context.new_page()
    await second.goto(page_url(ui, token=""))
    await expect(second.get_by_role("heading", name="Token required")).to_be_visible()
    await expect(second.get_by_role("listbox", name="Connections")).to_be_hidden()
    status = await second.evaluate("fetch('/api/connections').then(r => r.status)")
    assert status == 401  # the cookie opens the page's files, never the API
    await second.get_by_label("Token", exact=True).fill("not the token")
    await second.get_by_role("button", name="Open").click()
    await expect(second.locator("#token-reason")).to_contain_text("not accepted")
    await second.get_by_label("Token", exact=True).fill(ui.token)
    await second.get_by_role("button", name="Open").click()
    await expect(second.locator("#link-status")).to_have_text("live")


async def test_dark_theme_follows_the_system_and_the_toggle(
    start_web: StartWeb, ws_echo: WsUpstream, new_page: NewPage
) -> None:
    ui = await start_web("--mode", f"reverse:{ws_echo.url}")
    page = await open_ui(new_page, ui, color_scheme="dark")
    async with await client_of(ui) as client:
        for n in range(3):
            await client.send(f"message {n}")
            await client.recv()
        await connection_option(page, "/chat").click()
        await expect(message_options(page, "message 2")).to_have_count(2)
        background = "getComputedStyle(document.body).backgroundColor"
        assert await page.evaluate(background) == "rgb(20, 23, 28)"
        await screenshot(page, "dark")
        toggle = page.get_by_role("button", name=re.compile("^Theme"))
        await toggle.click()
        await expect(toggle).to_have_accessible_name("Theme: light")
        assert await page.evaluate(background) == "rgb(247, 248, 250)"
        await toggle.click()
        await expect(toggle).to_have_accessible_name("Theme: dark")
        assert await page.evaluate(background) == "rgb(20, 23, 28)"


async def test_filter_box_keys_and_the_filter_error(
    start_web: StartWeb, ws_echo: WsUpstream, new_page: NewPage
) -> None:
    ui = await start_web("--mode", f"reverse:{ws_echo.url}")
    page = await open_ui(new_page, ui)
    clients = [await client_of(ui, path) for path in ("/alpha", "/beta")]
    try:
        await expect(
            page.get_by_role("listbox", name="Connections").get_by_role("option")
        ).to_have_count(2)
        await page.locator("body").press("/")
        await expect(page.get_by_label("Filter")).to_be_focused()
        await page.keyboard.type("~u beta")
        await page.keyboard.press("Enter")
        await expect(
            page.get_by_role("listbox", name="Connections").get_by_role("option")
        ).to_have_count(1)
        await expect(connection_option(page, "/beta")).to_be_visible()

        await page.get_by_label("Filter").fill("~u (beta")
        await page.keyboard.press("Enter")
        error = page.locator("#filter-error")
        await expect(error).to_contain_text("column")
        await expect(page.get_by_label("Filter")).to_have_attribute("aria-invalid", "true")

        await page.get_by_label("Filter").fill("")
        await page.keyboard.press("Enter")
        await expect(
            page.get_by_role("listbox", name="Connections").get_by_role("option")
        ).to_have_count(2)
        await expect(error).to_be_empty()
        await page.keyboard.press("Escape")
        await page.keyboard.press("j")
        await expect(connection_option(page, "/alpha")).to_have_attribute("aria-selected", "true")
        await page.keyboard.press("j")
        await expect(connection_option(page, "/beta")).to_have_attribute("aria-selected", "true")
        await page.keyboard.press("?")
        await expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    finally:
        for client in clients:
            await client.close()


async def test_a_long_timeline_renders_only_the_rows_in_view(
    start_web: StartWeb, ws_echo: WsUpstream, new_page: NewPage
) -> None:
    count = 6000
    ui = await start_web(
        "--mode", f"reverse:{ws_echo.url}", "--web-history", str(2 * count), verbose=False
    )
    page = await open_ui(new_page, ui)
    async with await client_of(ui) as client:
        for n in range(count):
            await client.send(f"m{n:05d}")
        for _ in range(count):
            await client.recv()
        await connection_option(page, "/chat").click()
        timeline = page.get_by_role("listbox", name="Messages")
        # the client sent all, then read all: the newest row is the last echo
        await expect(
            message_options(page, f"server to client text 6 B forwarded: m{count - 1:05d}")
        ).to_be_visible()
        rendered = await timeline.get_by_role("option").count()
        assert rendered < 100, f"{rendered} rows in the DOM for {2 * count} messages"
        # scrolling to the top fetches older pages until the first message is there
        # Progress is the cursor of older pages going down (the list also grows from pushed
        # messages still arriving on a loaded machine, which is no progress back in time).
        # The first message is the client's: the server's echo of m00000 may come in the
        # same older page as messages the client sent long after it.
        first = message_options(page, "#1 client to server text 6 B forwarded: m00000")
        cursor = "window.wsproxyState.timeline.olderCursor"
        for _ in range(2 * (2 * count // 500) + 10):
            if await first.count():
                break
            before = await page.evaluate(cursor)
            await timeline.evaluate("el => { el.scrollTop = 0; }")
            await page.wait_for_function(
                f"() => {cursor} < {before} || window.wsproxyState.timeline.atStart"
            )
        await expect(first).to_be_visible()
        assert await timeline.get_by_role("option").count() < 100


async def test_messages_past_the_history_are_said_to_be_gone(
    start_web: StartWeb, ws_echo: WsUpstream, new_page: NewPage
) -> None:
    ui = await start_web("--mode", f"reverse:{ws_echo.url}", "--web-history", "10")
    page = await open_ui(new_page, ui)
    async with await client_of(ui) as client:
        for n in range(10):
            await client.send(f"m{n}")
            await client.recv()
        await connection_option(page, "/chat").click()
        timeline = page.get_by_role("listbox", name="Messages")
        await expect(timeline.get_by_role("option")).to_have_count(11)
        await expect(timeline.get_by_role("option").first).to_have_text(
            "10 older messages are no longer kept (--web-history)"
        )


async def test_a_paused_handshake_is_refused_from_the_page(
    start_web: StartWeb, ws_echo: WsUpstream, new_page: NewPage
) -> None:
    ui = await start_web("--mode", f"reverse:{ws_echo.url}")
    page = await open_ui(new_page, ui)
    await page.get_by_role("tab", name=re.compile("Breakpoints")).click()
    await page.get_by_role("button", name="Add rule").click()
    await page.get_by_label("Rule 1 filter").fill("~u private")
    await page.get_by_label("Rule 1 pauses on").select_option("handshake")
    await page.get_by_role("button", name="Save rules").click()
    await expect(page.locator("#rules-status")).to_have_text(re.compile("Saved: 1 rule"))

    attempt = asyncio.ensure_future(client_of(ui, "/private"))
    try:
        await expect(page.get_by_role("option", name=re.compile("Paused handshake"))).to_have_count(
            1
        )
        await expect(page.get_by_label("Request headers")).to_have_value(
            re.compile("^Host: ", re.I | re.M)
        )
        await page.get_by_label("Refuse with status").fill("451")
        await page.get_by_role("button", name="Refuse").click()
        with pytest.raises(InvalidStatus) as refused:
            await asyncio.wait_for(attempt, 10)
        assert refused.value.response.status_code == 451
        assert ws_echo.handshakes == 0  # it never reached the server
    finally:
        if not attempt.done():
            attempt.cancel()


async def test_plain_http_requests_are_listed_too(
    start_web: StartWeb, aiohttp_server: AioServer, new_page: NewPage
) -> None:
    ui = await start_web("--mode", f"reverse:{aiohttp_server.url}")
    page = await open_ui(new_page, ui)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{HOST}:{ui.port}/hello") as response,
    ):
        assert response.status == 200
    row = connection_option(page, "/hello")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("GET")
    await expect(row).to_contain_text("HTTP 200")
    await row.click()
    await expect(page.get_by_role("tab", name="Handshake")).to_have_attribute(
        "aria-selected", "true"
    )
    await expect(page.get_by_role("table", name="Response headers")).to_be_visible()


async def test_ping_and_pong_show_in_the_timeline_and_hide_on_request(
    start_web: StartWeb, ws_echo: WsUpstream, new_page: NewPage
) -> None:
    ui = await start_web("--mode", f"reverse:{ws_echo.url}")
    page = await open_ui(new_page, ui)
    async with await client_of(ui) as client:
        await client.send("before the ping")
        await client.recv()
        pong = await client.ping(b"are you there")
        await asyncio.wait_for(pong, 10)
        await connection_option(page, "/chat").click()
        timeline = page.get_by_role("listbox", name="Messages")
        await expect(timeline.get_by_role("option", name=re.compile(" ping "))).to_have_count(1)
        await expect(timeline.get_by_role("option", name=re.compile(" pong "))).to_have_count(1)
        await page.get_by_label("Hide ping/pong (control frames)").check()
        await expect(timeline.get_by_role("option", name=re.compile(" ping "))).to_have_count(0)
        await expect(message_options(page, "before the ping")).to_have_count(2)
        # one more ping while hidden stays hidden; p shows them again
        await asyncio.wait_for(await client.ping(b"again"), 10)
        await client.send("after the ping")
        await expect(message_options(page, "after the ping")).to_have_count(2)
        await expect(timeline.get_by_role("option", name=re.compile(" ping "))).to_have_count(0)
        await page.locator("#conns-title").click()
        await page.keyboard.press("p")
        await expect(timeline.get_by_role("option", name=re.compile(" ping "))).to_have_count(2)
