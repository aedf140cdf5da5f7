"""``flow.get_state()`` and ``flow.set_state()``: a WebSocket flow as mitmproxy's plain-data dict.

Addons serialise flows with ``get_state()`` (mitmproxy's ``jsondump.py`` posts it as JSON, others
pickle or compare it), so the dict has the keys, nesting and value types of mitmproxy's own
``HTTPFlow.get_state()`` (flow format 21, mitmproxy 11 to 13): bytes where mitmproxy has bytes
(method, scheme, path, header fields, message contents), ``(host, port)`` tuples for addresses,
messages as ``(type, from_client, content, timestamp, dropped, injected)`` tuples. With mitmproxy
installed, ``mitmproxy.http.HTTPFlow.from_state(flow.get_state())`` rebuilds it.

What wsproxy does not know is given the value mitmproxy uses for "none": TLS details (cipher,
ALPN, certificates), the listening address (``sockname``), the upstream's IP address
(``peername`` is the address it was reached at). Times are when wsproxy saw the upgrade request
and its answer. ``websocket.messages`` holds the messages ``flow.websocket.messages`` keeps.

``set_state`` takes such a dict back (``flow.set_state(saved)`` undoes an addon's changes, as
mitmproxy's ``backup()``/``revert()`` do) and applies what a wsproxy flow can change: the
request's URL parts and headers (during the handshake they reach the upstream), the response
headers, ``metadata``, ``marked``, ``comment``, ``is_replay``. The rest (ids, connections, times,
past messages) describes what happened and stays.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsproxy.mitmcompat.flow import ClientConn, Headers, HTTPFlow, ServerConn

FLOW_FORMAT_VERSION = 21  # mitmproxy.version.FLOW_FORMAT_VERSION in mitmproxy 11, 12 and 13

_TLS_NONE: dict[str, Any] = {
    "certificate_list": [],
    "alpn": None,
    "alpn_offers": [],
    "cipher": None,
    "cipher_list": [],
    "tls_version": None,
}


def new_id() -> str:
    """A connection id in mitmproxy's form (a random UUID)."""
    return str(uuid.uuid4())


def _raw(text: str) -> bytes:
    # wsproxy decodes HTTP heads as latin-1: this gives back the bytes of the wire.
    return text.encode("latin-1", "replace")


def _text(raw: bytes | str) -> str:
    return raw.decode("latin-1") if isinstance(raw, bytes) else raw


def headers_state(headers: Headers) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((_raw(name), _raw(value)) for name, value in headers.fields_list())


def _set_headers(headers: Headers, fields: Iterable[tuple[bytes | str, bytes | str]]) -> None:
    for old in list(headers):
        del headers[old]
    for name, value in fields:
        headers.add(_text(name), _text(value))


def client_state(conn: ClientConn, started: float, ended: float | None) -> dict[str, Any]:
    tls = conn.tls_established
    return {
        "peername": tuple(conn.peername),
        "sockname": ("", 0),
        "id": conn.id,
        "transport_protocol": "tcp",
        "error": None,
        "tls": tls,
        **copy.deepcopy(_TLS_NONE),
        "sni": None,
        "timestamp_start": started,
        "timestamp_end": ended,
        "timestamp_tls_setup": started if tls else None,
        "mitmcert": None,
        "proxy_mode": "regular",
    }


def server_state(conn: ServerConn, started: float, ended: float | None) -> dict[str, Any]:
    tls = conn.tls_established
    return {
        "peername": tuple(conn.peername),
        "sockname": ("", 0),
        "id": conn.id,
        "transport_protocol": "tcp",
        "error": None,
        "tls": tls,
        **copy.deepcopy(_TLS_NONE),
        "sni": conn.sni,
        "timestamp_start": started,
        "timestamp_end": ended,
        "timestamp_tls_setup": started if tls else None,
        "address": tuple(conn.address),
        "timestamp_tcp_setup": started,
        "via": None,
    }


def flow_state(flow: HTTPFlow) -> dict[str, Any]:
    """``flow`` as mitmproxy's ``HTTPFlow.get_state()`` gives it (see the module doc)."""
    native = flow._flow
    request, response, ws, error = flow.request, flow.response, flow.websocket, flow.error
    started = request.timestamp_start
    ended = native.ended if flow._ended else None
    state: dict[str, Any] = {
        "version": FLOW_FORMAT_VERSION,
        "type": "http",
        "id": flow.id,
        "error": None if error is None else {"msg": error.msg, "timestamp": error.timestamp},
        "client_conn": client_state(flow.client_conn, native.started, ended),
        "server_conn": server_state(flow.server_conn, started, ended),
        "intercepted": flow.intercepted,
        "is_replay": flow.is_replay,
        "marked": flow.marked,
        "metadata": copy.deepcopy(flow.metadata),
        "comment": flow.comment,
        "timestamp_created": flow.timestamp_created,
        "backup": None,
        "request": {
            "http_version": _raw(request.http_version),
            "headers": headers_state(request.headers),
            "content": b"",
            "trailers": None,
            "timestamp_start": started,
            "timestamp_end": started,
            "host": request.host,
            "port": request.port,
            "method": _raw(request.method),
            "scheme": _raw(request.scheme),
            "authority": b"",  # the upgrade goes upstream in origin form
            "path": _raw(request.path),
        },
        "response": None,
        "websocket": None,
    }
    if response is not None:
        state["response"] = {
            "http_version": _raw(response.http_version),
            "headers": headers_state(response.headers),
            "content": b"",
            "trailers": None,
            "timestamp_start": response.timestamp_start,
            "timestamp_end": response.timestamp_start,
            "status_code": response.status_code,
            "reason": _raw(response.reason),
        }
    if ws is not None:
        state["websocket"] = {
            "messages": [
                (int(m.type), m.from_client, m.content, m.timestamp, m.dropped, m.injected)
                for m in ws.messages
            ],
            "closed_by_client": ws.closed_by_client,
            "close_code": ws.close_code,
            "close_reason": ws.close_reason,
            "timestamp_end": ws.timestamp_end,
        }
    return state


def set_flow_state(flow: HTTPFlow, state: dict[str, Any]) -> None:
    """Apply what ``state`` (a ``flow_state`` dict, possibly edited) changes (see the module
    doc); ValueError for a dict that is not an HTTP flow's state."""
    if state.get("type") != "http" or not isinstance(state.get("request"), dict):
        raise ValueError("not the state of an HTTP flow (flow.get_state())")
    for name in ("metadata", "marked", "comment", "is_replay"):
        if name in state:
            setattr(flow, name, state[name])
    if "metadata" in state:
        flow._flow.metadata = flow.metadata
    req = state["request"]
    request = flow.request
    if "scheme" in req:
        request.scheme = _text(req["scheme"])
    if "path" in req:
        request.path = _text(req["path"])
    if "headers" in req:
        _set_headers(request.headers, req["headers"])
    # After the headers: setting host or port updates the Host header, as in mitmproxy.
    if "host" in req and req["host"] != request.host:
        request.host = req["host"]
    if "port" in req and req["port"] != request.port:
        request.port = req["port"]
    resp = state.get("response")
    if isinstance(resp, dict) and flow.response is not None and "headers" in resp:
        _set_headers(flow.response.headers, resp["headers"])
