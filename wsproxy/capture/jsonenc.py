"""JSON and base64 for capture records: compact UTF-8 JSON, with orjson and pybase64 when
they are installed (the same bytes either way)."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable
from typing import Any

Data = bytes | memoryview

json_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# The writer's two hot spots, measured (bench/capture_bench.py): base64 of large payloads
# (CPython's binascii does about 300 MB/s, pybase64's SIMD code over 10 GB/s) and JSON of
# small records (orjson about 5x faster than json). pybase64 is a dependency, orjson an option
# (``wsproxy[fast]``); each is used when installed, and the lines are the same JSON either way.
_b64encode: Callable[[Data], bytes] = base64.b64encode
ORJSON: Any = None  # the orjson module, when installed
try:
    import pybase64

    _b64encode = pybase64.b64encode
except ImportError:  # pragma: no cover - depends on what is installed
    pass
with contextlib.suppress(ImportError):  # pragma: no cover - depends on what is installed
    import orjson as ORJSON


def dumps(obj: dict[str, Any]) -> str:
    """One record as one line (no newline): compact, UTF-8 text kept as it is."""
    return json_dumps(obj)


def encode(obj: dict[str, Any]) -> bytes:
    """``dumps(obj)`` as UTF-8 bytes, with orjson when it is installed."""
    if ORJSON is not None:
        try:
            line: bytes = ORJSON.dumps(obj)
            return line
        except TypeError:  # orjson.JSONEncodeError: a lone surrogate, an int over 64 bits
            pass
    return json_dumps(obj).encode("utf-8")


def b64encode(data: Data) -> bytes:
    """Base64 of ``data`` (bytes or a memoryview, not copied first), with pybase64 when it is
    installed."""
    return _b64encode(data)
