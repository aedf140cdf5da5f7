"""The web UI's HTTP server (aiohttp): the page, the REST API and the push channel.

Every answer goes through ``_guard``: the ``Host`` must name the UI (else 403), the token must
be there (else 401), and the security headers of ``security.SECURITY_HEADERS`` are set. The
token comes as ``Authorization: Bearer T`` (the page's fetches), ``?token=T`` (the first page
load, the WebSocket URL) or, for the page's own files only, the cookie the first load sets
(``HttpOnly; SameSite=Strict``: a ``<script src>`` cannot send a header). The API takes no
cookie, so no other site can make a browser call it. The shapes are ``/work/notes/ui-api.md``'s.

Compose, close and abort go through the flow's own ``inject``/``close``/``abort``, as a plugin's
would (with ``--workers``, a ``remote.RemoteFlow`` sends them to the connection's worker);
export writes the kept messages as a JSONL capture and converts it with the capture package's
own converters (HAR, mitmproxy flows).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import json
import logging
import shlex
import tempfile
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from wsproxy.filters import Filter, FilterError, compile_filter
from wsproxy.proxy.appserver import AppServer
from wsproxy.web.live import LiveState
from wsproxy.web.livemodel import LiveConn
from wsproxy.web.security import API_HEADERS, SECURITY_HEADERS, UiAddress, bearer, token_matches

log = logging.getLogger("wsproxy")

COOKIE = "wsproxy_web"
MAX_LIMIT = 5_000  # messages in one /messages answer
MAX_BODY = 2 * 1024 * 1024  # a request body (a composed message, a rule list)
SEND_MAX = 1024 * 1024  # a composed message


class PauseEngine(Protocol):
    """The breakpoints (``wsproxy.web.breakpoints.Breakpoints``), as the server uses them."""

    on_event: Callable[[dict[str, Any]], None] | None

    def set_rules(self, rules: list[dict[str, Any]]) -> list[dict[str, Any]]: ...

    def rules(self) -> list[dict[str, Any]]: ...

    def pauses(self) -> list[dict[str, Any]]: ...

    def resolve(self, pause_id: str, action: dict[str, Any]) -> None: ...


def _error(status: int, message: str, **more: Any) -> web.Response:
    return web.json_response({"error": message, **more}, status=status)


class ApiError(Exception):
    """An answer with an error status and a JSON ``{"error": ...}`` body."""

    def __init__(self, status: int, message: str, **more: Any) -> None:
        super().__init__(message)
        self.status = status
        self.more = more


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _OneLine(logging.Filter):
    """aiohttp's own error lines (a malformed request, a handler that failed) as one line
    each, the exception's text appended and its traceback left out unless debugging."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not logging.getLogger("wsproxy").isEnabledFor(logging.DEBUG):
            error = record.exc_info[1]
            text = " ".join(str(error).split())
            record.msg = f"web UI: {record.getMessage()}: {type(error).__name__}: {text}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


_AIOHTTP_LOG = logging.getLogger("aiohttp.server")
if not any(isinstance(f, _OneLine) for f in _AIOHTTP_LOG.filters):
    _AIOHTTP_LOG.addFilter(_OneLine())


class WebUi:
    """The aiohttp application of one run, and its listener."""

    def __init__(
        self,
        live: LiveState,
        address: UiAddress,
        token: str,
        *,
        breakpoints: PauseEngine | None = None,
        capture_file: Path | None = None,
        capture_origin: Callable[[str], tuple[Path, str] | None] | None = None,
        password_mode: bool = False,
    ) -> None:
        self.live = live
        self.password_mode = password_mode  # the token is a --web-password: never printed
        self.address = address
        self.token = token
        self.breakpoints = breakpoints
        self.capture_file = capture_file  # what a replay command reads (-r FILE or -w)
        # -r with several files: a connection's own file and its id there (``capture.merge``)
        self.capture_origin = capture_origin
        if breakpoints is not None:
            breakpoints.on_event = live.push
        self.app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        self._routes()
        self._runner: AppServer | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self.port = address.port

    def _routes(self) -> None:
        r = self.app.router
        r.add_get("/", self.index)
        r.add_get("/static/{name:.+}", self.static)
        r.add_get("/api/updates", self.updates)
        r.add_get("/api/connections", self.connections)
        r.add_get("/api/connections/{id}", self.connection)
        r.add_get("/api/connections/{id}/messages", self.messages)
        r.add_get("/api/connections/{id}/messages/{seq}/content", self.content)
        r.add_get("/api/connections/{id}/messages/{seq}/replay", self.replay)
        r.add_post("/api/connections/{id}/send", self.send)
        r.add_post("/api/connections/{id}/close", self.close)
        r.add_post("/api/connections/{id}/abort", self.abort)
        r.add_get("/api/breakpoints", self.get_breakpoints)
        r.add_put("/api/breakpoints", self.put_breakpoints)
        r.add_get("/api/pauses", self.pauses)
        r.add_post("/api/pauses/{id}", self.resolve)
        r.add_get("/api/export", self.export)

    # -- the listener -----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen; OSError when the address cannot be had. No access log: URLs hold tokens."""
        server = AppServer(self.app, access_log=None)
        self.port = self.address.port = await server.start(self.address.host, self.address.port)
        self._runner = server

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"wsproxy-web is shutting down")
        if self._runner is not None:
            await self._runner.stop()
            self._runner = None

    # -- every request ----------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        api = request.path.startswith("/api/")
        try:
            if not self.address.host_allowed(request.headers.get("Host")):
                raise ApiError(403, "wrong Host header: open the UI by the address it prints")
            if not self._authorized(request, cookie_ok=not api):
                raise ApiError(401, "token required: open the URL wsproxy-web printed")
            response = await handler(request)
        except ApiError as error:
            response = _error(error.status, str(error), **error.more)
            if error.status == 401 and not api and "text/html" in request.headers.get("Accept", ""):
                response = _token_page()
        except web.HTTPException as error:
            response = _error(error.status, error.reason)
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
            if api:
                response.headers.update(API_HEADERS)
        return response

    def _authorized(self, request: web.Request, *, cookie_ok: bool) -> bool:
        given = bearer(request.headers.get("Authorization")) or request.query.get("token")
        if given is None and cookie_ok:
            given = request.cookies.get(COOKIE)
        return token_matches(given, self.token)

    # -- the page ---------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        response = self._file("index.html")
        response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
        return response

    async def static(self, request: web.Request) -> web.StreamResponse:
        return self._file(request.match_info["name"])

    def _file(self, name: str) -> web.Response:
        root = resources.files("wsproxy.web") / "static"
        parts = name.split("/")
        if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
            raise ApiError(404, "no such file")
        target = root.joinpath(*parts)
        if not target.is_file():
            raise ApiError(404, "no such file")
        return web.Response(body=target.read_bytes(), content_type=_content_type(name))

    # -- the push channel -------------------------------------------------------------------

    async def updates(self, request: web.Request) -> web.StreamResponse:
        if not self.address.origin_allowed(
            request.headers.get("Origin"), request.headers.get("Host")
        ):
            raise ApiError(403, "wrong Origin: the push channel serves the UI's own page")
        ws = web.WebSocketResponse(max_msg_size=64 * 1024)
        await ws.prepare(request)
        self._sockets.add(ws)
        subscriber = self.live.subscribe()
        reader = asyncio.create_task(self._read_until_closed(ws))
        try:
            await ws.send_str(json.dumps(self.live.hello()))
            while not ws.closed:
                waiter = asyncio.create_task(subscriber.ready.wait())
                done, _ = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    waiter.cancel()
                    break
                for batch in subscriber.take():
                    await ws.send_str(batch)
        except (ConnectionError, RuntimeError):
            pass  # the page went away mid-send
        finally:
            self.live.unsubscribe(subscriber)
            self._sockets.discard(ws)
            reader.cancel()
            await ws.close()
        return ws

    @staticmethod
    async def _read_until_closed(ws: web.WebSocketResponse) -> None:
        """The page sends nothing; this notices when it goes (and answers its pings)."""
        async for message in ws:
            if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break

    # -- connections and messages -----------------------------------------------------------

    def _conn(self, request: web.Request) -> LiveConn:
        conn = self.live.conns.get(request.match_info["id"])
        if conn is None:
            raise ApiError(404, f"no connection {request.match_info['id']!r} (never, or evicted)")
        return conn

    async def connections(self, request: web.Request) -> web.StreamResponse:
        text = request.query.get("filter", "").strip()
        chosen = self.live.conns.values()
        if text:
            flt = _compile(text)
            chosen = [c for c in chosen if c.matches(flt)]  # type: ignore[assignment]
        return web.json_response({"connections": [c.to_dict() for c in chosen]})

    async def connection(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._conn(request).detail())

    async def messages(self, request: web.Request) -> web.StreamResponse:
        conn = self._conn(request)
        after = _int(request.query.get("after", "0"), "after")
        limit = min(_int(request.query.get("limit", "500"), "limit") or 1, MAX_LIMIT)
        control = request.query.get("control", "1") not in ("0", "false", "no")
        out = []
        first = conn.first_seq()
        start = max(0, after + 1 - first)
        for index in range(start, len(conn.messages)):
            message = conn.messages[index]
            if not control and message.opcode >= 0x8:
                continue
            out.append(message.to_dict())
            if len(out) >= limit:
                break
        return web.json_response(
            {"messages": out, "first_seq": first, "last_seq": conn.next_seq - 1}
        )

    def _message_content(self, request: web.Request) -> tuple[LiveConn, int, bytes, bool]:
        conn = self._conn(request)
        seq = _int(request.match_info["seq"], "seq")
        if seq < 1 or seq >= conn.next_seq:
            raise ApiError(404, f"no message {seq} in {conn.id}")
        message = conn.message(seq)
        if message is None or message.content is None:
            raise ApiError(410, f"message {seq} of {conn.id} is no longer kept (history full)")
        return conn, seq, message.content, message.complete

    async def content(self, request: web.Request) -> web.StreamResponse:
        conn, seq, data, complete = self._message_content(request)
        response = web.Response(body=data, content_type="application/octet-stream")
        response.headers["Content-Disposition"] = f'attachment; filename="{conn.id}-{seq}.bin"'
        response.headers["X-Wsproxy-Complete"] = "true" if complete else "false"
        return response

    async def replay(self, request: web.Request) -> web.StreamResponse:
        conn = self._conn(request)
        seq = _int(request.match_info["seq"], "seq")
        if conn.kind != "websocket":
            raise ApiError(409, "only a WebSocket can be replayed")
        if seq < 1 or seq >= conn.next_seq:
            raise ApiError(404, f"no message {seq} in {conn.id}")
        origin = None if self.capture_origin is None else self.capture_origin(conn.id)
        if origin is None and self.capture_file is not None:
            origin = (self.capture_file, conn.id)
        if origin is not None:
            command = shlex.join(["wsproxy", "replay", str(origin[0]), "--conn", origin[1]])
        else:
            export = f"{self.address.url}/api/export?format=jsonl&conn={conn.id}"
            fetch = shlex.join(["curl", "-fsS", "-o", f"{conn.id}.jsonl", export])
            auth = '-H "Authorization: Bearer $WSPROXY_WEB_TOKEN"'
            replay = shlex.join(["wsproxy", "replay", f"{conn.id}.jsonl", "--conn", conn.id])
            command = f"{fetch} {auth} && {replay}"
        return web.json_response({"command": command})

    # -- acting on a connection -------------------------------------------------------------

    def _open_flow(self, request: web.Request) -> tuple[LiveConn, Any]:
        conn = self._conn(request)
        if self.live.readonly:
            raise ApiError(409, "read-only: this UI shows a capture file")
        if conn.flow is None or conn.state == "closed":
            raise ApiError(409, "connection is not open")
        return conn, conn.flow

    async def send(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        conn, flow = self._open_flow(request)
        to = body.get("to")
        if to not in ("client", "server"):
            raise ApiError(400, '"to" must be "client" or "server"')
        content: str | bytes
        if isinstance(body.get("text"), str):
            content = body["text"]
        elif isinstance(body.get("base64"), str):
            try:
                content = base64.b64decode(body["base64"], validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, '"base64" is not valid base64') from None
        else:
            raise ApiError(400, 'give the message as "text" or "base64"')
        size = len(content.encode("utf-8")) if isinstance(content, str) else len(content)
        if size > SEND_MAX:
            raise ApiError(413, f"a composed message is at most {SEND_MAX} bytes")
        if conn.state != "open":
            raise ApiError(409, "connection is not open")
        sent = flow.inject(content, to_client=to == "client")
        if inspect.isawaitable(sent):  # a connection of a worker (remote.RemoteFlow): it says
            sent = await sent
        if not sent:
            raise ApiError(409, f"not sent: the {to} side is closing or not reading fast enough")
        return web.json_response({"ok": True})

    async def close(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        _, flow = self._open_flow(request)
        code = body.get("code", 1000)
        reason = body.get("reason", "")
        side = body.get("side", "both")
        if not isinstance(code, int) or isinstance(code, bool) or not _sendable(code):
            raise ApiError(400, "code must be 1000-1003, 1007-1014 or 3000-4999 (RFC 6455 7.4)")
        if not isinstance(reason, str) or len(reason.encode("utf-8")) > 123:
            raise ApiError(400, "reason must be text of at most 123 bytes (RFC 6455 5.5)")
        if side not in ("client", "server", "both"):
            raise ApiError(400, '"side" must be "client", "server" or "both"')
        flow.close(code, reason, side=None if side == "both" else side)
        return web.json_response({"ok": True})

    async def abort(self, request: web.Request) -> web.StreamResponse:
        _, flow = self._open_flow(request)
        flow.abort()
        return web.json_response({"ok": True})

    # -- breakpoints ------------------------------------------------------------------------

    def _engine(self) -> PauseEngine:
        if self.breakpoints is None:
            reason = "read-only: a capture file" if self.live.readonly else "not loaded"
            raise ApiError(409, f"breakpoints are not available ({reason})")
        return self.breakpoints

    async def get_breakpoints(self, request: web.Request) -> web.StreamResponse:
        engine = self.breakpoints
        rules = [] if engine is None else engine.rules()
        return web.json_response({"breakpoints": rules})

    async def put_breakpoints(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        rules = body.get("breakpoints")
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            raise ApiError(400, '"breakpoints" must be a list of rules')
        engine = self._engine()
        try:
            rules = engine.set_rules(rules)
        except FilterError as error:
            raise ApiError(400, str(error), column=error.column) from None
        except (ValueError, TypeError, KeyError) as error:
            raise ApiError(400, str(error)) from None
        return web.json_response({"breakpoints": rules})

    async def pauses(self, request: web.Request) -> web.StreamResponse:
        engine = self.breakpoints
        return web.json_response({"pauses": [] if engine is None else engine.pauses()})

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        engine = self._engine()
        pause_id = request.match_info["id"]
        try:
            engine.resolve(pause_id, body)
        except KeyError:
            raise ApiError(404, f"no pause {pause_id!r} (resolved, timed out or never)") from None
        except ValueError as error:
            raise ApiError(400, str(error)) from None
        return web.json_response({"ok": True})

    # -- export -----------------------------------------------------------------------------

    async def export(self, request: web.Request) -> web.StreamResponse:
        from wsproxy.web.export import EXPORT_FORMATS, export_file, snapshot

        fmt = request.query.get("format", "jsonl")
        if fmt not in EXPORT_FORMATS:
            raise ApiError(400, f"format must be one of {', '.join(EXPORT_FORMATS)}")
        if fmt == "mitm":
            from wsproxy.capture.mitmflows import INSTALL, mitmproxy_missing

            if mitmproxy_missing() is not None:
                raise ApiError(501, f"the mitm export needs mitmproxy: {INSTALL}")
        wanted = request.query.get("conn")
        text = request.query.get("filter", "").strip()
        if wanted is not None:
            conns = [self._conn_by_id(wanted)]
        else:
            flt = _compile(text) if text else None
            conns = [c for c in self.live.conns.values() if flt is None or c.matches(flt)]
        snap = snapshot(conns)
        with tempfile.TemporaryDirectory(prefix="wsproxy-web-") as tmp:
            path = await asyncio.to_thread(export_file, snap, Path(tmp), fmt)
            name = f"wsproxy-{wanted or 'export'}.{fmt}"
            response = web.StreamResponse(
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Disposition": f'attachment; filename="{name}"',
                    **SECURITY_HEADERS,
                    **API_HEADERS,
                }
            )
            response.content_length = path.stat().st_size
            await response.prepare(request)
            with open(path, "rb") as file:
                while chunk := await asyncio.to_thread(file.read, 256 * 1024):
                    await response.write(chunk)
            await response.write_eof()
        return response

    def _conn_by_id(self, conn_id: str) -> LiveConn:
        conn = self.live.conns.get(conn_id)
        if conn is None:
            raise ApiError(404, f"no connection {conn_id!r} (never, or evicted)")
        return conn


def _sendable(code: int) -> bool:
    """Close codes an endpoint may send (RFC 6455 7.4.1, 7.4.2; IANA registry)."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _compile(text: str) -> Filter:
    try:
        return compile_filter(text)
    except FilterError as error:
        raise ApiError(400, str(error), column=error.column) from None


def _int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, not {text!r}") from None
    if value < 0:
        raise ApiError(400, f"{name} must be 0 or more")
    return value


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body must be JSON") from None
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, f"the request body is over {MAX_BODY} bytes") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".ico": "image/x-icon",
}


def _content_type(name: str) -> str:
    return _TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def _token_page() -> web.Response:
    """What a browser gets without the token: a form asking for it (no script: CSP)."""
    page = (
        "<!doctype html><meta charset=utf-8><title>wsproxy web UI: token required</title>"
        "<h1>Token required</h1><p>Open the URL <code>wsproxy-web</code> printed, or enter "
        "the token (the <code>--web-password</code>):</p>"
        '<form method=get action="/"><input type=password name=token autofocus>'
        "<button>Open</button></form>"
    )
    return web.Response(text=page, status=401, content_type="text/html")
