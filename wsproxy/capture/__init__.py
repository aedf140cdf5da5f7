"""Captures: record a run's WebSockets to a file, read them back, show them, replay them.

* ``writer.CaptureWriter``: the proxy's capture sink (``-w FILE``), JSONL, HAR or mitmproxy
  flows by extension.
* ``jsonl``: the JSONL schema (documented there), encoding and decoding.
* ``har``: HAR 1.2 with Chrome's ``_webSocketMessages``: journal -> HAR, and reading HAR files
  from wsproxy, Chrome DevTools and mitmproxy.
* ``mitmflows``: mitmproxy flow files (``-w FILE.mitm``, ``mitmproxy -r``), through mitmproxy's
  own ``mitmproxy.io`` (the ``wsproxy[mitmproxy]`` extra): journal -> flows, and reading them.
* ``reader.read_capture``: any of these formats as one stream of ``records``.
* ``merge.MergedCaptures``: several captures as one stream ordered by time.
* ``show``, ``replay``: the ``wsproxy show`` and ``wsproxy replay`` subcommands.

The names below are imported on first use, so that a proxy that captures nothing (and imports
``capture.sink`` or ``capture.run`` only) loads no writer, reader or codec.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsproxy.capture.formats import journal_path
    from wsproxy.capture.reader import read_capture
    from wsproxy.capture.records import Close, Connection, Frame, Header, Lost, Record
    from wsproxy.capture.writer import CaptureWriter

__all__ = [
    "CaptureWriter",
    "Close",
    "Connection",
    "Frame",
    "Header",
    "Lost",
    "Record",
    "journal_path",
    "read_capture",
]

_HOMES = {
    "CaptureWriter": "writer",
    "Close": "records",
    "Connection": "records",
    "Frame": "records",
    "Header": "records",
    "Lost": "records",
    "Record": "records",
    "journal_path": "formats",
    "read_capture": "reader",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
