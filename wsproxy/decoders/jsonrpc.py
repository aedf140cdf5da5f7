"""JSON-RPC 2.0 (https://www.jsonrpc.org/specification): requests, notifications, responses,
errors and batches, each one JSON text message.

``operation`` is the method: a request's and a notification's own, and a response's or an
error's too, remembered from the request with the same id (per direction pair, so ``~op`` and
block rules on a method also catch its answers). A batch's ``operation`` is its method when
every call in it has the same one, else None; ``fields["methods"]`` lists them all.
``value`` is what an edit changes: ``params``, ``result`` or ``error``, or for a batch the
list of its items as they are. Re-encoding: see ``jsontext`` (style kept, whitespace not).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from wsproxy.decoders.base import Decoded, Hints
from wsproxy.decoders.brief import brief, quoted
from wsproxy.decoders.jsontext import dump_like, load, looks_like_json

__all__ = ["JsonRpcDecoder", "JsonRpcFactory"]

PENDING_LIMIT = 1024  # request ids remembered for their answers' method (oldest forgotten)
_BODY = {"request": "params", "notification": "params", "response": "result", "error": "error"}


def _kind(item: Any) -> str | None:
    """The message type of one JSON-RPC 2.0 object, None when it is not one."""
    if not isinstance(item, dict) or item.get("jsonrpc") != "2.0":
        return None
    if isinstance(item.get("method"), str):
        return "request" if "id" in item else "notification"
    if "id" in item and ("result" in item) != ("error" in item):
        return "response" if "result" in item else "error"
    return None


def _id(item: dict[str, Any]) -> str | None:
    ident = item.get("id")
    return None if ident is None else str(ident)


class JsonRpcDecoder:
    protocol = "jsonrpc"

    def __init__(self) -> None:
        self._methods: OrderedDict[str, str] = OrderedDict()

    def decode(self, payload: bytes, *, text: bool, from_client: bool) -> Decoded | None:
        if not text:
            return None
        try:
            document = load(payload)
        except ValueError:
            return None
        if isinstance(document, list):
            return self._batch(document, payload)
        kind = _kind(document)
        if kind is None:
            return None
        return self._single(document, kind, payload)

    def _single(self, item: dict[str, Any], kind: str, raw: bytes) -> Decoded:
        ident = _id(item)
        method = self._method(item, kind, ident)
        body = item.get(_BODY[kind])
        name = "" if method is None else f" {quoted(method)}"
        shown = "" if ident is None else f" id={ident}"
        if _BODY[kind] in item:
            shown += f" {brief(body)}"
        return Decoded(
            "jsonrpc",
            kind,
            body,
            operation=method,
            id=ident,
            fields={"message": item, "raw": raw},
            summary=f"jsonrpc {kind}{name}{shown}",
        )

    def _method(self, item: dict[str, Any], kind: str, ident: str | None) -> str | None:
        if kind in ("request", "notification"):
            method: str = item["method"]
            if kind == "request" and ident is not None:
                self._methods[ident] = method
                if len(self._methods) > PENDING_LIMIT:
                    self._methods.popitem(last=False)
            return method
        return None if ident is None else self._methods.pop(ident, None)

    def _batch(self, items: list[Any], raw: bytes) -> Decoded | None:
        kinds = [_kind(item) for item in items]
        if not items or None in kinds:
            return None
        methods = [
            self._method(item, str(kind), _id(item))
            for item, kind in zip(items, kinds, strict=True)
        ]
        named = [method for method in methods if method is not None]
        operation = named[0] if named and len(set(named)) == 1 else None
        return Decoded(
            "jsonrpc",
            "batch",
            items,
            operation=operation,
            fields={"methods": methods, "kinds": kinds, "raw": raw},
            summary=f"jsonrpc batch of {len(items)} {brief(methods)}",
        )

    def encode(self, decoded: Decoded) -> bytes | None:
        raw = decoded.fields.get("raw", b"")
        try:
            if decoded.kind == "batch":
                return dump_like(decoded.value, raw)
            item = dict(decoded.fields["message"])
            body = _BODY[decoded.kind]
            if decoded.value is not None or body in item:
                item[body] = decoded.value
            if decoded.kind in ("request", "notification") and decoded.operation is not None:
                item["method"] = decoded.operation
            return dump_like(item, raw)
        except (KeyError, TypeError, ValueError):
            return None


class JsonRpcFactory:
    protocol = "jsonrpc"

    def claims(self, hints: Hints) -> bool:
        sub = (hints.subprotocol or "").lower()
        return sub in ("jsonrpc", "json-rpc", "jsonrpc2", "jsonrpc-2.0")

    def sniff(self, payload: bytes, *, text: bool) -> bool:
        if not text or not looks_like_json(payload) or b'"jsonrpc"' not in payload:
            return False
        return JsonRpcDecoder().decode(payload, text=True, from_client=True) is not None

    def new(self, hints: Hints) -> JsonRpcDecoder:
        return JsonRpcDecoder()
