"""The wire format between ``wsproxy-web --workers N`` and its workers: events and commands.

A worker tells the UI process what its proxy sees (handshakes, frames, closes, pauses) and
the UI process tells it what to do (send, close, resolve a pause). Each item is a flat dict
whose values are JSON data or ``bytes``; the bytes travel raw, beside the JSON, so a frame's
payload is neither base64-inflated nor copied into a text encoder::

    frame  := u32 body_length, body                          (network byte order)
    body   := u32 header_length, header, blob*
    header := UTF-8 JSON object: the item's JSON fields, and "$blobs": [[key, length], ...]
    blob   := the bytes of the blobs' keys, in that order, back to back

Sans-I/O: ``encode`` gives the bytes to write; ``BridgeReader`` is fed whatever the socket
delivered (any split) and hands out whole items. A frame over ``max_frame`` bytes, or one
that does not parse, is a ``BridgeError``: the stream cannot be trusted after it, and the
side that reads it drops the connection (one log line), as a WebSocket endpoint fails the
connection on a protocol error.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_FRAME", "BridgeError", "BridgeReader", "encode"]

# A paused message travels whole (as text or base64 in the pause's shape, up to the proxy's
# 64 MiB --max-message-size): the frame limit sits above that, and bounds what one read holds.
MAX_FRAME = 128 * 1024 * 1024

_U32 = struct.Struct("!I")
BLOBS = "$blobs"

Item = dict[str, Any]


class BridgeError(Exception):
    """The bytes received are not bridge frames (or one is too large)."""


def encode(item: Mapping[str, Any], max_frame: int = MAX_FRAME) -> bytes:
    """One item as a frame. ``bytes`` values (top level only) go raw after the header;
    ValueError when the frame would be over ``max_frame`` (the reader would refuse it)."""
    fields: dict[str, Any] = {}
    blobs: list[bytes] = []
    table: list[list[Any]] = []
    for key, value in item.items():
        if isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            blobs.append(data)
            table.append([key, len(data)])
        else:
            fields[key] = value
    if table:
        fields[BLOBS] = table
    header = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    body_length = _U32.size + len(header) + sum(len(b) for b in blobs)
    if body_length > max_frame:
        raise ValueError(f"a bridge frame of {body_length} bytes is over {max_frame}")
    return b"".join([_U32.pack(body_length), _U32.pack(len(header)), header, *blobs])


class BridgeReader:
    """Frames in (``feed``), items out (``items``); holds at most one frame's bytes plus
    what one ``feed`` brought."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def items(self) -> list[Item]:
        """Every whole item received so far (BridgeError for a bad frame: stop reading)."""
        out: list[Item] = []
        buffer = self._buffer
        start = 0
        while len(buffer) - start >= _U32.size:
            (length,) = _U32.unpack_from(buffer, start)
            if length > self.max_frame:
                raise BridgeError(f"a bridge frame of {length} bytes is over {self.max_frame}")
            end = start + _U32.size + length
            if len(buffer) < end:
                break
            out.append(_decode(memoryview(buffer)[start + _U32.size : end]))
            start = end
        del buffer[:start]
        return out


def _decode(body: memoryview) -> Item:
    if len(body) < _U32.size:
        raise BridgeError("a bridge frame too short for its header length")
    (header_length,) = _U32.unpack_from(body)
    end = _U32.size + header_length
    if end > len(body):
        raise BridgeError("a bridge frame's header runs past its end")
    try:
        item = json.loads(bytes(body[_U32.size : end]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise BridgeError(f"a bridge frame's header is not JSON: {error}") from None
    if not isinstance(item, dict):
        raise BridgeError("a bridge frame's header is not a JSON object")
    table = item.pop(BLOBS, [])
    if not isinstance(table, list):
        raise BridgeError('a bridge frame\'s "$blobs" is not a list')
    offset = end
    for entry in table:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not isinstance(entry[0], str)
            or not isinstance(entry[1], int)
            or isinstance(entry[1], bool)
            or entry[1] < 0
        ):
            raise BridgeError(f"a bridge frame's blob entry {entry!r} is not [key, length]")
        key, length = entry
        if offset + length > len(body):
            raise BridgeError(f"a bridge frame's blob {key!r} runs past its end")
        item[key] = bytes(body[offset : offset + length])
        offset += length
    if offset != len(body):
        raise BridgeError(f"a bridge frame has {len(body) - offset} bytes after its blobs")
    return item
