"""The web UI's export: what it keeps of some connections, as a capture file.

The kept messages are written as a JSONL capture with the capture package's own encoder
(``jsonl``) — one whole-message frame record each, with its verdict and original — and that
file is turned into HAR or mitmproxy flows by the converters ``wsproxy har`` and
``wsproxy mitm`` use. Messages whose content is no longer kept are left out, with a ``lost``
record saying how many, so a reader sees the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsproxy.capture import jsonl, jsonlframes
from wsproxy.sansio.records import FrameRecord
from wsproxy.web.livemodel import LiveConn

EXPORT_FORMATS = ("jsonl", "har", "mitm")


@dataclass
class ConnSnapshot:
    """One connection's records, taken on the event loop (the file is written in a thread)."""

    conn_id: str
    opening: dict[str, Any] | None  # its handshake or http record
    frames: list[tuple[float, FrameRecord]]
    close: dict[str, Any] | None
    lost: int


def snapshot(conns: list[LiveConn]) -> list[ConnSnapshot]:
    out = []
    for conn in conns:
        frames = [(m.ts, m.record()) for m in conn.messages if m.content is not None or not m.size]
        lost = len(conn.messages) - len(frames) + (conn.first_seq() - 1)
        opening = conn.records.get("handshake") or conn.records.get("http")
        out.append(ConnSnapshot(conn.id, opening, frames, conn.records.get("close"), lost))
    return out


def write_jsonl(snap: list[ConnSnapshot], path: Path) -> None:
    with open(path, "wb") as out:
        out.write(jsonl.encode(jsonl.header("wsproxy-web", None)) + b"\n")
        for conn in snap:
            if conn.opening is None:
                continue
            out.write(jsonl.encode(conn.opening) + b"\n")
            if conn.lost:
                out.write(jsonl.encode(jsonl.lost(conn.lost, conn.lost)) + b"\n")
            for ts, record in conn.frames:
                for part in jsonlframes.frame_line(conn.conn_id, ts, record):
                    out.write(part)
            if conn.close is not None:
                out.write(jsonl.encode(conn.close) + b"\n")


def export_file(snap: list[ConnSnapshot], directory: Path, fmt: str) -> Path:
    """Write the export in ``fmt`` under ``directory``; returns its path."""
    journal = directory / "export.jsonl"
    write_jsonl(snap, journal)
    if fmt == "jsonl":
        return journal
    out = directory / f"export.{fmt}"
    if fmt == "har":
        from wsproxy.capture.har import journal_to_har

        journal_to_har(journal, out)
    else:
        from wsproxy.capture.mitmflows import journal_to_flows

        journal_to_flows(journal, out)
    return out
