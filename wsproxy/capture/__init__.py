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
"""

from __future__ import annotations

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
