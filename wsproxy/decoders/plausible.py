"""When a value decoded from binary bytes is believable as a serialized message.

A self-describing binary codec (msgpack, CBOR) reads a value out of many short byte strings:
``05`` is the integer 5 in both, ``91 13`` the msgpack array ``[19]``, and a few random
payloads in a thousand decode whole. Sniffing therefore asks more than "decodes and uses
every byte": the value must look like what applications send (Socket.IO's msgpack packets,
SignalR's and WAMP's arrays): a map with text or integer keys or an array, built only of
plain data, holding some text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["kind", "looks_like_a_message"]

MAX_DEPTH = 64  # deeper than any message an application writes by hand or by schema


def looks_like_a_message(value: Any, plain: Callable[[Any], bool]) -> bool:
    """``value`` is a non-empty map or array, its map keys are text or integers, every leaf
    is plain data (``plain`` says which of the codec's own types count), and some key or
    leaf is text."""
    if type(value) not in (dict, list, tuple) or not value:
        return False
    texts = [0]
    return _plain(value, plain, 0, texts) and texts[0] > 0


def _plain(value: Any, plain: Callable[[Any], bool], depth: int, texts: list[int]) -> bool:
    if depth > MAX_DEPTH:
        return False
    kind = type(value)
    if kind is str:
        texts[0] += 1
        return True
    if kind is dict:
        return all(
            type(key) in (str, int)
            and _plain(key, plain, depth + 1, texts)
            and _plain(item, plain, depth + 1, texts)
            for key, item in value.items()
        )
    if kind in (list, tuple):  # exactly: a codec's named tuple (msgpack's ExtType) is no array
        return all(_plain(item, plain, depth + 1, texts) for item in value)
    return kind in (type(None), bool, int, float, bytes) or plain(value)


def kind(value: Any) -> str:
    """A decoded value's ``Decoded.kind``: ``map``, ``array``, or its type's name (``int``)."""
    if isinstance(value, dict):
        return "map"
    if type(value) in (list, tuple):
        return "array"
    return type(value).__name__
