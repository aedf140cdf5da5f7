"""Plain JSON text: the last fallback, for a text message that parses as one JSON document.

Re-encoding keeps the original's style: compact (``{"a":1}``) or spaced (``{"a": 1}``), and
non-ASCII as it was or escaped (``\\u00e9``) as the original had it, found by writing the
original's value both ways (only when an edit is encoded, never per message). Byte-for-byte
only for text in one of those styles: indentation, other whitespace, a mix of escapes and
number spellings (``1e3``, ``1.0``) are the writer's choice and come out normalised.
"""

from __future__ import annotations

import json
from typing import Any

from wsproxy.decoders.base import Decoded, Hints
from wsproxy.decoders.brief import brief

__all__ = ["JsonDecoder", "JsonFactory", "dump", "dump_like", "load"]

COMPACT = (",", ":")
SPACED = (", ", ": ")


def load(payload: bytes) -> Any:
    """The JSON document in ``payload``; ``ValueError`` when it is not one."""
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, RecursionError) as error:
        raise ValueError(str(error)) from None


def dump(value: Any, separators: tuple[str, str] = COMPACT, ascii_only: bool = False) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only, separators=separators).encode("utf-8")


def dump_like(value: Any, original: bytes) -> bytes:
    """``value`` as JSON text in the style of ``original`` (see the module's docstring);
    ``TypeError`` or ``ValueError`` when it is no JSON value."""
    try:
        was = load(original)
    except ValueError:
        was = None
    # ``was`` came from json.loads, so json.dumps writes it (NaN as NaN) whatever the style.
    for separators in (COMPACT, SPACED):
        for ascii_only in (False, True):
            if dump(was, separators, ascii_only) == original:
                return dump(value, separators, ascii_only)
    return dump(value, SPACED if b'": ' in original else COMPACT)


def kind_of(value: Any) -> str:
    """``object``, ``array``, ``string``, ``number``, ``boolean`` or ``null`` (RFC 8259)."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "null" if value is None else "number"


def looks_like_json(payload: bytes) -> bool:
    """A cheap first look before parsing: an object or an array, in text."""
    start = payload[:1]
    return start in (b"{", b"[") or (start.isspace() and payload.lstrip()[:1] in (b"{", b"["))


class JsonDecoder:
    protocol = "json"

    def decode(self, payload: bytes, *, text: bool, from_client: bool) -> Decoded | None:
        if not text:
            return None
        try:
            value = load(payload)
        except ValueError:
            return None
        kind = kind_of(value)
        return Decoded(
            "json",
            kind,
            value,
            fields={"raw": payload},
            summary=f"json {brief(value)}",
        )

    def encode(self, decoded: Decoded) -> bytes | None:
        try:
            return dump_like(decoded.value, decoded.fields.get("raw", b""))
        except (TypeError, ValueError):
            return None


class JsonFactory:
    """JSON claims nothing and sniffs an object or array: other JSON protocols come first."""

    protocol = "json"

    def claims(self, hints: Hints) -> bool:
        return hints.subprotocol is not None and hints.subprotocol.lower() == "json"

    def sniff(self, payload: bytes, *, text: bool) -> bool:
        if not text or not looks_like_json(payload):
            return False
        try:
            load(payload)
        except ValueError:
            return False
        return True

    def new(self, hints: Hints) -> JsonDecoder:
        return JsonDecoder()
