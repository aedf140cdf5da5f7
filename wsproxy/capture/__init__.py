"""Captures: record a run's WebSockets to a file, read them back, show them, replay them.

* ``writer.CaptureWriter``: the proxy's capture sink (``-w FILE``), JSONL or HAR by extension.
* ``jsonl``: the JSONL schema (documented there), encoding and decoding.
* ``har``: HAR 1.2 with Chrome's ``_webSocketMessages``: journal -> HAR, and reading HAR files
  from wsproxy, Chrome DevTools and mitmproxy.
* ``reader.read_capture``: either format as one stream of ``records``.
* ``show``, ``replay``: the ``wsproxy show`` and ``wsproxy replay`` subcommands.
"""

from __future__ import annotations

from wsproxy.capture.reader import read_capture
from wsproxy.capture.records import Close, Connection, Frame, Header, Lost, Record
from wsproxy.capture.writer import CaptureWriter, journal_path

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
