"""``~json PATH=VALUE``: a path into a JSON document (``a.b[0].c``) and the value it must hold.

PATH is dotted keys and ``[N]`` indexes, an optional leading ``$`` or ``$.``, and ``["key"]``
for a key with dots, brackets or ``=`` in it. VALUE is a JSON literal (``42``, ``true``,
``null``, ``"a string"``, ``[1, 2]``) or, when it does not parse as one, a bare string
(``name=bob``). Without ``=VALUE`` the path only has to exist. Values compare as JSON does:
``1`` equals ``1.0`` but not ``true``, ``"1"`` is not ``1``.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MISSING", "JsonPathError", "json_equal", "lookup", "parse_json_test"]

PathPart = str | int

MISSING: Any = object()  # ``lookup`` of a path the document does not have

_KEY = re.compile(r"[^.\[\]=]+")
_INDEX = re.compile(r"\[\s*(-?\d+)\s*\]")
_QUOTED_KEY = re.compile(r"""\[\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\s*\]""")


class JsonPathError(ValueError):
    """A PATH=VALUE that cannot be read; ``offset`` is where in the argument."""

    def __init__(self, problem: str, offset: int) -> None:
        super().__init__(problem)
        self.offset = offset


def parse_json_test(text: str) -> tuple[tuple[PathPart, ...], bool, Any]:
    """``a.b[0]=42`` -> ``(("a", "b", 0), True, 42)``; ``a.b`` -> ``(("a", "b"), False, None)``."""
    parts: list[PathPart] = []
    position = 0
    if text.startswith("$"):
        position = 2 if text.startswith("$.") else 1
    first = True
    while position < len(text) and text[position] != "=":
        if text[position] == ".":
            if first:
                raise JsonPathError("a path starts with a key, not '.'", position)
            position += 1
            found = _KEY.match(text, position)
            if found is None:
                raise JsonPathError("a key must follow '.'", position)
            parts.append(found.group())
        elif text[position] == "[":
            index = _INDEX.match(text, position)
            quoted = index or _QUOTED_KEY.match(text, position)
            if quoted is None:
                raise JsonPathError("'[' starts [N] or [\"key\"]", position)
            found = quoted
            if index is not None:
                parts.append(int(index.group(1)))
            else:
                raw = found.group(1) if found.group(1) is not None else found.group(2)
                parts.append(re.sub(r"\\(.)", r"\1", raw))
        else:
            found = _KEY.match(text, position)
            if found is None or not first:
                raise JsonPathError("expected '.', '[' or '=' here", position)
            parts.append(found.group())
        position = found.end()
        first = False
    if not parts:
        raise JsonPathError("PATH=VALUE needs a path before '='", position)
    if position >= len(text):
        return tuple(parts), False, None
    raw_value = text[position + 1 :]
    try:
        value = json.loads(raw_value)
    except ValueError:
        value = raw_value  # a bare string: ``name=bob``
    return tuple(parts), True, value


def lookup(document: Any, path: tuple[PathPart, ...]) -> Any:
    """The value at ``path``, or ``MISSING``. ``[N]`` indexes a list (negative from the
    end) and is the key ``"N"`` of an object."""
    node = document
    for part in path:
        if isinstance(node, dict):
            for key in _keys(part):  # CBOR and msgpack maps may have int keys
                if key in node:
                    node = node[key]
                    break
            else:
                return MISSING
        elif isinstance(node, list | tuple) and isinstance(part, int):
            if not -len(node) <= part < len(node):
                return MISSING
            node = node[part]
        else:
            return MISSING
    return node


def _keys(part: PathPart) -> tuple[Any, ...]:
    """The keys ``part`` may mean in a map: itself, then as text or as a number."""
    if isinstance(part, int):
        return (part, str(part))
    if part.lstrip("-").isdigit() and part.isascii():
        return (part, int(part))
    return (part,)


def json_equal(left: Any, right: Any) -> bool:
    """Equality as JSON has it: booleans are not numbers, containers compare deeply."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(map(json_equal, left, right))
    return type(left) is type(right) and bool(left == right)
