"""Which capture format a ``-w`` path means, and where a journaled format keeps its journal."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from wsproxy.exceptions import ConfigError


def journal_path(path: Path) -> Path:
    """Where the JSONL journal of a HAR (or mitmproxy) capture goes: ``FILE.har`` ->
    ``FILE.har.jsonl``."""
    return path.with_name(path.name + ".jsonl")


FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".har": "har", ".mitm": "mitm"}
JOURNALED = ("har", "mitm")  # formats made from a journal beside them


def capture_format(path: Path) -> str:
    """The format ``path``'s extension names, "jsonl", "har" or "mitm"; ConfigError for any
    other (rather than JSONL under a name that promises something else)."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        what = f"format {suffix}" if suffix else f"file {path} (no extension)"
        raise ConfigError(f"unsupported capture {what}; use .jsonl, .har or .mitm")
    return FORMATS[suffix]


def check_capture_paths(paths: Sequence[Path]) -> tuple[Path, ...]:
    """``-w`` paths, checked: known formats, mitmproxy installed for ``.mitm``, and no two
    writing the same file (a HAR's journal included: ``-w a.har -w a.har.jsonl`` would
    interleave two writers)."""
    written: dict[Path, Path] = {}
    for path in paths:
        fmt = capture_format(path)
        if fmt == "mitm":
            from wsproxy.capture.mitmflows import require_mitmproxy

            require_mitmproxy(f"-w {path}")
        targets = [path, journal_path(path)] if fmt in JOURNALED else [path]
        for target in targets:
            key = Path(os.path.abspath(target))
            if key in written:
                raise ConfigError(f"-w {path} and -w {written[key]} both write {target}")
            written[key] = path
    return tuple(paths)
