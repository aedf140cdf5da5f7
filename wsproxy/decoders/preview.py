"""How a decoded value reads in one line of ``-v``: short, bounded, never a secret.

The binary codecs (msgpack, CBOR, protobuf) and the brokers' summaries share these, so a
value looks the same whichever protocol carried it: JSON-like text, bytes as ``b"…"`` with
the printable ASCII kept, everything cut at a width.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["REDACTED", "WIDTH", "clip", "render", "size"]

# What a summary or a field shows in place of a password (an MQTT CONNECT's, a STOMP passcode):
# the log is read over shoulders and pasted into issues (README "Safe by default").
REDACTED = "<redacted>"

WIDTH = 80  # characters of a rendered value in a summary line

# Containers are cut after this many items, so a 10 000-element array costs no more to
# summarise than a short one (the render stops early instead of cutting a long string).
MAX_ITEMS = 8


def size(n: int) -> str:
    """``12 B``: a payload's length as the summaries print it."""
    return f"{n} B"


def clip(text: str, width: int = WIDTH) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis when it was longer."""
    return text if len(text) <= width else text[: width - 1] + "…"


def render(value: Any, width: int = WIDTH) -> str:
    """``value`` (plain data, bytes kept) as compact JSON-like text of at most ``width``
    characters."""
    parts: list[str] = []
    _render(value, parts, width, depth=0)
    return clip("".join(parts), width)


def _render(value: Any, out: list[str], budget: int, depth: int) -> None:
    # ``budget`` bounds the work: once enough text exists the rest is skipped.
    if sum(map(len, out)) > budget:
        return
    if isinstance(value, bool) or value is None:
        out.append(json.dumps(value))
    elif isinstance(value, int | float):
        out.append(repr(value))
    elif isinstance(value, str):
        out.append(json.dumps(value[: budget + 1], ensure_ascii=False))
    elif isinstance(value, bytes | bytearray | memoryview):
        out.append(_bytes(bytes(value[: budget + 1])))
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i == MAX_ITEMS or depth > 8:
                out.append(", …" if i else "…")  # "7…" would read as a number cut short
                break
            out.append(", " if i else "")
            _render(key, out, budget, depth + 1)
            out.append(": ")
            _render(item, out, budget, depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i == MAX_ITEMS or depth > 8:
                out.append(", …" if i else "…")  # "7…" would read as a number cut short
                break
            out.append(", " if i else "")
            _render(item, out, budget, depth + 1)
        out.append("]")
    else:  # a codec's own type (a msgpack ExtType, a CBOR tag, a datetime)
        out.append(clip(repr(value), budget))


def _bytes(data: bytes) -> str:
    """``b"ab\\x00"``: printable ASCII as itself, the rest as hex escapes."""
    body = "".join(
        chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\x{b:02x}" for b in data
    )
    return f'b"{body}"'
