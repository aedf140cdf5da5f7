"""One-line views of decoded values, for the ``-v`` summaries every decoder writes.

A summary shows the shape of a message at a glance: the top level of a value in JSON, with
what is nested deeper folded to ``{…}`` or ``[…]`` (``["hi", {…}]``), bytes as their size
(``<3 B>``), and the whole cut at ``LIMIT`` characters. The log cuts it again to
``--preview-length``; this limit only keeps a huge message from costing a huge string.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["LIMIT", "brief", "cut", "quoted"]

LIMIT = 200  # characters of one summary's value part


def cut(text: str, limit: int = LIMIT) -> str:
    """``text``, or its first ``limit`` characters and "…"."""
    return text if len(text) <= limit else text[:limit] + "…"


def quoted(text: str) -> str:
    """A name as JSON writes it (``"chat"``): quotes and control characters escaped."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'  # the usual name: what json.dumps would give, at a tenth the cost
    return json.dumps(text, ensure_ascii=False)


def brief(value: Any, limit: int = LIMIT) -> str:
    """``value``'s top level in JSON, nested containers folded; at most about ``limit``
    characters."""
    return cut(_top(value, limit), limit)


def _top(value: Any, limit: int) -> str:
    if isinstance(value, dict):
        parts = []
        size = 0
        for key, item in value.items():
            part = f"{quoted(str(key))}: {_leaf(item, limit)}"
            parts.append(part)
            size += len(part) + 2
            if size > limit:
                break
        return "{" + ", ".join(parts) + "}"
    if isinstance(value, list | tuple):
        parts = []
        size = 0
        for item in value:
            part = _leaf(item, limit)
            parts.append(part)
            size += len(part) + 2
            if size > limit:
                break
        return "[" + ", ".join(parts) + "]"
    return _leaf(value, limit)


def _leaf(value: Any, limit: int) -> str:
    if isinstance(value, dict):
        return "{…}" if value else "{}"
    if isinstance(value, list | tuple):
        return "[…]" if value else "[]"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} B>"
    if isinstance(value, str):
        return quoted(cut(value, limit))
    if value is None or value is True or value is False:
        return "null" if value is None else "true" if value else "false"
    if type(value) is int:
        return str(value)
    try:
        return json.dumps(value)
    except (TypeError, ValueError):  # a value no JSON has (a codec's own type): its repr
        return cut(repr(value), limit)
