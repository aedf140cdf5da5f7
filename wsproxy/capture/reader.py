"""Read any capture as one stream of records: JSONL (ours) or HAR (ours, Chrome, mitmproxy).

JSONL is read line by line, so memory does not grow with the file: a 1 GiB capture is read with
one line in memory at a time (a line holds one frame, so at most the proxy's frame size limit).
``follow`` keeps reading a file that is being written, like ``tail -f``: at the end it waits
for more, and a line the writer has only half written is held until its newline arrives.
HAR files are read whole (see ``har.MAX_HAR_SIZE``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

from wsproxy.capture import jsonl
from wsproxy.capture.har import CaptureFormatError, read_har
from wsproxy.capture.records import Record

FOLLOW_POLL = 0.2  # seconds between looks at a followed file


def detect_format(path: Path) -> str:
    """ "jsonl" or "har": by extension, else by the first line."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".har":
        return "har"
    with open(path, "rb") as file:
        first = file.readline(1 << 20)
    try:
        obj = json.loads(first)
    except ValueError:
        return "har"
    return "jsonl" if isinstance(obj, dict) and "type" in obj else "har"


def read_jsonl(path: Path, *, follow: bool = False) -> Iterator[Record]:
    with open(path, "rb") as file:
        held = b""
        while True:
            line = file.readline()
            if not line:
                if not follow:
                    return
                time.sleep(FOLLOW_POLL)
                continue
            if not line.endswith(b"\n") and follow:
                held += line  # the writer is mid-line: wait for the rest
                continue
                # The last line, cut short by a crash: decode_line skips it if incomplete.
            if held:
                line, held = held + line, b""
            record = jsonl.decode_line(line)
            if record is not None:
                yield record


def read_capture(path: Path | str, *, follow: bool = False) -> Iterator[Record]:
    """Every record of a capture file, in file order."""
    path = Path(path)
    if not path.exists():
        raise CaptureFormatError(f"{path}: no such file")
    if detect_format(path) == "jsonl":
        return read_jsonl(path, follow=follow)
    if follow:
        raise CaptureFormatError("--follow reads JSONL captures (a HAR file is rewritten whole)")
    return read_har(path)
