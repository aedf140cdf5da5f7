"""mitmproxy's flow API for WebSocket addons, as views over wsproxy's own ``Flow`` and ``Message``.

Each class mirrors the part of the mitmproxy class of the same name (``mitmproxy.http``,
``mitmproxy.websocket``) that WebSocket addons use; it stores nothing of its own that wsproxy
already holds, so a change an addon makes (a header, a message's content, a drop) is a change to
the wsproxy object the relay acts on.

Differences from mitmproxy, on purpose:

* ``flow.websocket.messages`` keeps the last ``MAX_MESSAGES`` (100) messages of the flow, not
  all of them: a long-lived WebSocket must not grow the proxy's memory. Only the newest message
  (``messages[-1]`` during ``websocket_message``) is live; older ones are snapshots, and
  changing them has no effect (as in mitmproxy, where they were forwarded long ago).
* ``flow.request.scheme`` reads ``http``/``https`` as in mitmproxy (the upgrade is an HTTP
  request), and ``url`` is built with that scheme; setting ``ws``/``wss`` is accepted too.
* ``flow.kill()`` during ``request``/``response`` answers the client 403 instead of a bare reset;
  once the WebSocket is open it closes both sides with 1001.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping
from typing import Any

from wsproxy.mitmcompat import state
from wsproxy.model import Flow, HandshakeRequest, HandshakeResponse, Message
from wsproxy.sansio.frames import Opcode
from wsproxy.sansio.http11 import Headers as WsHeaders
from wsproxy.sansio.targets import format_authority

MAX_MESSAGES = 100  # messages kept per flow in flow.websocket.messages (mitmproxy keeps all)

_ADAPTER_ATTR = "_mitm_flow"  # where a wsproxy Flow keeps its one adapter, shared by all addons


class Headers(MutableMapping[str, str]):
    """Case-insensitive header access as ``mitmproxy.http.Headers``: ``h["Name"]`` joins several
    fields with ", ", assignment replaces them all, ``del`` removes them all."""

    __slots__ = ("_headers",)

    def __init__(self, headers: WsHeaders) -> None:
        self._headers = headers

    def __getitem__(self, name: str) -> str:
        values = self._headers.get_all(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __setitem__(self, name: str, value: str) -> None:
        self._headers.set(name, value)

    def __delitem__(self, name: str) -> None:
        if name not in self._headers:
            raise KeyError(name)
        self._headers.remove(name)

    def __contains__(self, name: object) -> bool:
        return name in self._headers

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for name, _ in self._headers:
            if name.lower() not in seen:
                seen.add(name.lower())
                yield name

    def __len__(self) -> int:
        return len({name.lower() for name, _ in self._headers})

    def get_all(self, name: str) -> list[str]:
        return self._headers.get_all(name)

    def set_all(self, name: str, values: list[str]) -> None:
        self._headers.remove(name)
        for value in values:
            self._headers.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._headers.add(name, value)

    def fields_list(self) -> list[tuple[str, str]]:
        return self._headers.items()

    def __repr__(self) -> str:
        return f"Headers[{', '.join(f'{n}: {v}' for n, v in self._headers)}]"


def _mitm_scheme(scheme: str) -> str:
    return "https" if scheme in ("https", "wss") else "http"


class Request:
    """The upgrade request (``mitmproxy.http.Request``); changes reach the upstream request."""

    method = "GET"
    http_version = "HTTP/1.1"
    content = b""
    raw_content = b""
    text = ""

    def __init__(self, request: HandshakeRequest) -> None:
        self._request = request
        self.headers = Headers(request.headers)
        self.timestamp_start = time.time()
        self.timestamp_end = self.timestamp_start  # an upgrade request has no body

    @property
    def scheme(self) -> str:
        return _mitm_scheme(self._request.scheme)

    @scheme.setter
    def scheme(self, value: str) -> None:
        self._request.scheme = {"http": "ws", "https": "wss"}.get(value, value)

    @property
    def host(self) -> str:
        return self._request.host

    @host.setter
    def host(self, value: str) -> None:
        self._request.host = value
        self._update_host_header()

    @property
    def port(self) -> int:
        return self._request.port

    @port.setter
    def port(self, value: int) -> None:
        self._request.port = int(value)
        self._update_host_header()

    def _update_host_header(self) -> None:
        # As mitmproxy: setting host or port updates the Host header when there is one.
        if "Host" in self._request.headers:
            self._request.headers.set("Host", self.authority)

    @property
    def authority(self) -> str:
        return format_authority(self.host, self.port, self.scheme)

    @property
    def path(self) -> str:
        return self._request.path

    @path.setter
    def path(self, value: str) -> None:
        self._request.path = value

    @property
    def host_header(self) -> str | None:
        return self._request.headers.get("Host")

    @host_header.setter
    def host_header(self, value: str | None) -> None:
        if value is None:
            self._request.headers.remove("Host")
        else:
            self._request.headers.set("Host", value)

    @property
    def pretty_host(self) -> str:
        header = self.host_header
        if header:
            return header.rsplit(":", 1)[0] if not header.endswith("]") else header.strip("[]")
        return self.host

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"

    @property
    def pretty_url(self) -> str:
        return self.url.replace(self.authority, self.host_header or self.authority, 1)

    def __repr__(self) -> str:
        return f"Request(GET {self.authority}{self.path})"


class Response:
    """The upstream's 101 answer (``mitmproxy.http.Response``); headers may be changed."""

    http_version = "HTTP/1.1"
    content = b""
    raw_content = b""
    text = ""

    def __init__(self, response: HandshakeResponse) -> None:
        self._response = response
        self.headers = Headers(response.headers)
        self.timestamp_start = time.time()
        self.timestamp_end = self.timestamp_start

    @property
    def status_code(self) -> int:
        return self._response.status

    @property
    def reason(self) -> str:
        return self._response.reason

    def __repr__(self) -> str:
        return f"Response({self.status_code} {self.reason})"


class WebSocketMessage:
    """One whole message (``mitmproxy.websocket.WebSocketMessage``).

    While it is the message being handled it reads and writes the wsproxy ``Message`` the relay
    forwards; afterwards it keeps a snapshot (content, type, dropped).
    """

    __slots__ = ("_content", "_dropped", "_live", "from_client", "injected", "timestamp", "type")

    def __init__(self, message: Message) -> None:
        self._live: Message | None = message
        self.from_client = message.from_client
        self.type = Opcode(message.opcode)
        self.timestamp = message.timestamp
        self.injected = message.injected
        self._content = message.content
        self._dropped = False

    @property
    def content(self) -> bytes:
        return self._live.content if self._live is not None else self._content

    @content.setter
    def content(self, value: bytes) -> None:
        if self._live is not None:
            self._live.content = value
        else:
            self._content = bytes(value)

    @property
    def is_text(self) -> bool:
        return self.type == Opcode.TEXT

    @property
    def text(self) -> str:
        if not self.is_text:
            raise AttributeError(
                f"{self.type.name.title()} WebSocket frames do not have a 'text' attribute."
            )
        return self.content.decode("utf-8", "replace")

    @text.setter
    def text(self, value: str) -> None:
        if not self.is_text:
            raise AttributeError(
                f"{self.type.name.title()} WebSocket frames do not have a 'text' attribute."
            )
        self.content = value.encode("utf-8")

    @property
    def dropped(self) -> bool:
        return self._live.dropped if self._live is not None else self._dropped

    def drop(self) -> None:
        """Do not forward this message."""
        if self._live is not None and not self._live.dropped:
            self._live.drop()  # the first addon that dropped it is the one recorded
        self._dropped = True

    def kill(self) -> None:  # mitmproxy's older name for drop()
        self.drop()

    def _detach(self) -> None:
        if self._live is not None:
            self._content = self._live.content
            self._dropped = self._live.dropped
            self._live = None

    def __repr__(self) -> str:
        if self.is_text:
            return repr(self.content.decode("utf-8", "replace"))
        return repr(self.content)


class WebSocketData:
    """``flow.websocket``: the last ``MAX_MESSAGES`` messages and, at the end, how it closed."""

    def __init__(self) -> None:
        self.messages: list[WebSocketMessage] = []
        self.closed_by_client: bool | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.timestamp_end: float | None = None

    def _push(self, message: Message) -> WebSocketMessage:
        messages = self.messages
        if messages and messages[-1]._live is message:
            return messages[-1]  # an earlier addon already added it
        if messages:
            messages[-1]._detach()
        wrapped = WebSocketMessage(message)
        messages.append(wrapped)
        if len(messages) > MAX_MESSAGES:
            del messages[0]
        return wrapped

    def __repr__(self) -> str:
        return f"<WebSocketData ({len(self.messages)} messages)>"


class Error:
    """``flow.error``: what went wrong, as text in ``msg``."""

    def __init__(self, msg: str) -> None:
        self.msg = msg
        self.timestamp = time.time()

    def __str__(self) -> str:
        return self.msg


class ClientConn:
    def __init__(self, flow: Flow) -> None:
        self.id = state.new_id()
        self.peername = flow.client_address
        self.address = flow.client_address  # mitmproxy's older name
        self.tls_established = False


class ServerConn:
    def __init__(self, flow: Flow) -> None:
        self.id = state.new_id()
        self._flow = flow

    @property
    def address(self) -> tuple[str, int]:
        return (self._flow.request.host, self._flow.request.port)

    @property
    def peername(self) -> tuple[str, int]:
        return self.address

    @property
    def tls_established(self) -> bool:
        return self._flow.request.scheme in ("wss", "https")

    @property
    def sni(self) -> str | None:
        return self._flow.request.host if self.tls_established else None


class HTTPFlow:
    """What a mitmproxy addon's hooks get as ``flow`` (``mitmproxy.http.HTTPFlow``).

    ``flow.websocket`` is None in ``request``, as in mitmproxy, and set from ``response`` on.
    """

    type = "http"

    def __init__(self, flow: Flow) -> None:
        self._flow = flow
        self.id = flow.id
        self.request = Request(flow.request)
        self.response: Response | None = None
        self.websocket: WebSocketData | None = None
        self.client_conn = ClientConn(flow)
        self.server_conn = ServerConn(flow)
        self.metadata: dict[str, Any] = flow.metadata
        self.timestamp_created = flow.started
        self.marked = ""
        self.comment = ""
        self.is_replay: str | None = None
        self.intercepted = False
        self.live = True
        self._open = False  # False during the handshake hooks, True once the WebSocket is open
        self._ended = False

    @classmethod
    def of(cls, flow: Flow) -> HTTPFlow:
        """The one adapter of ``flow``, shared by every mitmproxy-style addon."""
        adapter = getattr(flow, _ADAPTER_ATTR, None)
        if not isinstance(adapter, HTTPFlow):
            adapter = cls(flow)
            setattr(flow, _ADAPTER_ATTR, adapter)
        return adapter

    @property
    def error(self) -> Error | None:
        return Error(self._flow.error) if self._flow.error else None

    @property
    def timestamp_start(self) -> float:
        """When the upgrade request arrived (``request.timestamp_start``, as in mitmproxy)."""
        return self.request.timestamp_start

    def get_state(self) -> dict[str, Any]:
        """The flow as plain data, shaped as mitmproxy's ``get_state()`` (``state``)."""
        return state.flow_state(self)

    def set_state(self, saved: dict[str, Any]) -> None:
        """Apply a ``get_state()`` dict: what a wsproxy flow can change (``state``)."""
        state.set_flow_state(self, saved)

    @property
    def killable(self) -> bool:
        return not self._ended

    def kill(self) -> None:
        """Refuse the handshake (403) or, once open, close the WebSocket (1001)."""
        if not (self._open or self._flow._injector is not None):
            self._flow.refuse(403, "killed by a script")
        else:
            self._flow.close(1001, "killed by a script")

    def _websocket(self) -> WebSocketData:
        if self.websocket is None:
            self.websocket = WebSocketData()
        return self.websocket

    def _set_response(self) -> None:
        if self.response is None and self._flow.response is not None:
            self.response = Response(self._flow.response)

    def _end(self) -> None:
        """Fill in ``flow.websocket``'s close fields from the wsproxy flow (once)."""
        if self._ended:
            return
        self._ended = True
        self.live = False
        flow = self._flow
        ws = self._websocket()
        for message in ws.messages:
            message._detach()
        ws.closed_by_client = None if flow.closed_by == "proxy" else flow.closed_by == "client"
        first = flow.server_close if flow.closed_by == "server" else flow.client_close
        other = flow.client_close if first is flow.server_close else flow.server_close
        info = first if first.received_close else other
        ws.close_code = info.code if info.received_close else 1006
        ws.close_reason = info.reason if info.received_close else ""
        ws.timestamp_end = flow.ended or time.time()

    def __repr__(self) -> str:
        return f"<HTTPFlow {self.id} {self.request.url}>"
