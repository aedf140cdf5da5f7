"""GraphQL over WebSocket, both protocols in use: ``graphql-transport-ws`` (the graphql-ws
library's, https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md) and the legacy
``graphql-ws`` subprotocol of subscriptions-transport-ws (Apollo's).

Every message is a JSON object with a ``type`` (``connection_init``, ``subscribe``/``start``,
``next``/``data``, ``error``, ``complete``, ``ping``/``pong``, ``ka``...), most with an ``id``
and a ``payload``. ``value`` is the payload; ``operation`` the operation's name: its
``operationName``, else the name in the query text (``subscription OnMessage { ... }``), and
for the answers (``next``, ``data``, ``error``, ``complete``) the name of the operation that
started that id, remembered per connection until it completes. Re-encoding rewrites the
object with the payload (and operationName when one was given) changed; see ``jsontext`` for
what stays byte-for-byte.
"""

from __future__ import annotations

import re
from typing import Any

from wsproxy.decoders.base import Decoded, Hints
from wsproxy.decoders.brief import brief, quoted
from wsproxy.decoders.jsontext import dump_like, load, looks_like_json

__all__ = ["GraphqlWsDecoder", "GraphqlWsFactory", "operation_name"]

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"  # subscriptions-transport-ws

TYPES = {
    TRANSPORT_WS: frozenset(
        {"connection_init", "connection_ack", "ping", "pong", "subscribe", "next", "error"}
        | {"complete"}
    ),
    LEGACY_WS: frozenset(
        {"connection_init", "connection_ack", "connection_error", "ka", "start", "data"}
        | {"error", "complete", "stop", "connection_terminate"}
    ),
}
_STARTS = ("subscribe", "start")
_ENDS = ("complete", "stop", "error")
PENDING_LIMIT = 1024  # operation ids remembered for their answers (oldest forgotten)

_COMMENT = re.compile(r"#[^\n\r]*")
_STRING = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"', re.DOTALL)
_OPERATION = re.compile(r"\b(query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)")


def operation_name(query: str) -> str | None:
    """The name of the first named operation in a GraphQL document (strings and comments
    skipped), None for an anonymous one (``{ hello }``)."""
    bare = _COMMENT.sub("", _STRING.sub('""', query))
    found = _OPERATION.search(bare)
    return found.group(2) if found else None


class GraphqlWsDecoder:
    protocol = "graphql"

    def __init__(self, subprotocol: str | None = None) -> None:
        self.subprotocol = subprotocol  # None: either, as the messages say
        self._operations: dict[str, str | None] = {}

    def decode(self, payload: bytes, *, text: bool, from_client: bool) -> Decoded | None:
        if not text:
            return None
        try:
            message = load(payload)
        except ValueError:
            return None
        kind = message.get("type") if isinstance(message, dict) else None
        if not isinstance(kind, str) or not self._known(kind):
            return None
        ident = message.get("id")
        ident = None if ident is None else str(ident)
        body = message.get("payload")
        operation = self._operation(kind, ident, body)
        fields: dict[str, Any] = {"message": message, "raw": payload}
        if self.subprotocol is not None:
            fields["subprotocol"] = self.subprotocol
        shown = brief(body.get("variables") if kind in _STARTS and isinstance(body, dict) else body)
        parts = ["graphql", kind]
        if ident is not None:
            parts.append(f"id={ident}")
        if operation is not None:
            parts.append(quoted(operation))
        if body is not None:
            parts.append(shown)
        return Decoded(
            "graphql",
            kind,
            body,
            operation=operation,
            id=ident,
            fields=fields,
            summary=" ".join(parts),
        )

    def _known(self, kind: str) -> bool:
        if self.subprotocol in TYPES:
            return kind in TYPES[self.subprotocol]
        return kind in TYPES[TRANSPORT_WS] or kind in TYPES[LEGACY_WS]

    def _operation(self, kind: str, ident: str | None, body: Any) -> str | None:
        if kind in _STARTS and isinstance(body, dict):
            name = body.get("operationName")
            query = body.get("query")
            if not isinstance(name, str) or not name:
                name = operation_name(query) if isinstance(query, str) else None
            if ident is not None:
                self._operations[ident] = name
                if len(self._operations) > PENDING_LIMIT:
                    del self._operations[next(iter(self._operations))]
            return name
        if ident is None:
            return None
        if kind in _ENDS:
            return self._operations.pop(ident, None)
        return self._operations.get(ident)

    def encode(self, decoded: Decoded) -> bytes | None:
        original = decoded.fields.get("message")
        if not isinstance(original, dict):
            return None
        message = dict(original)
        message["type"] = decoded.kind
        if decoded.value is not None or "payload" in message:
            message["payload"] = decoded.value
        if decoded.id is not None and "id" in message and decoded.id != str(message["id"]):
            message["id"] = decoded.id
        body = message.get("payload")
        named = decoded.kind in _STARTS and isinstance(body, dict) and decoded.operation
        if named and isinstance(body, dict) and _renamed(body, decoded.operation):
            message["payload"] = {**body, "operationName": decoded.operation}
        try:
            return dump_like(message, decoded.fields.get("raw", b""))
        except (TypeError, ValueError):
            return None


def _renamed(body: dict[str, Any], operation: str | None) -> bool:
    """Whether ``operationName`` must be written: given before, or a name the query lacks."""
    given = body.get("operationName") is not None
    return given or operation != operation_name(str(body.get("query", "")))


class GraphqlWsFactory:
    protocol = "graphql"

    def claims(self, hints: Hints) -> bool:
        return (hints.subprotocol or "").lower() in TYPES

    def sniff(self, payload: bytes, *, text: bool) -> bool:
        if not text or not looks_like_json(payload) or b'"type"' not in payload:
            return False
        try:
            message = load(payload)
        except ValueError:
            return False
        # The first message of either protocol is the client's connection_init.
        return isinstance(message, dict) and message.get("type") == "connection_init"

    def new(self, hints: Hints) -> GraphqlWsDecoder:
        sub = (hints.subprotocol or "").lower()
        return GraphqlWsDecoder(sub if sub in TYPES else None)
