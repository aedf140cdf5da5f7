"""Helpers for the sans-I/O frame, endpoint and relay tests: make wire bytes, read them back.

Tests import these plainly (``from tests.sansio.conftest import ...``): they are functions, not
fixtures, so each playbook shows exactly which bytes it feeds.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import strategies as st

from wsproxy.sansio import masking
from wsproxy.sansio.endpoint import FrameReader
from wsproxy.sansio.events import ControlFrame, DataChunk, Event, Violation
from wsproxy.sansio.frames import MAX_CONTROL_PAYLOAD, Opcode, serialize_close
from wsproxy.sansio.framewriter import FrameWriter

MIB = 1 << 20
BIG = 64 * MIB  # limits high enough to stay out of the way

# Both masking implementations, for the tests that run the same vectors through each. The C
# one skips when it was not built (no compiler at install time), except in CI (CI=true), where
# ``pip install`` must have built it and a missing one fails every test that names it.
IN_CI = os.environ.get("CI", "").lower() == "true"


NOT_BUILT = "wsproxy.sansio._speedups is not built"


class NotBuilt(RuntimeError):
    """Stands in for a C function in CI when the extension is missing: every test that calls
    it fails. A plain exception, not pytest.fail: some callers run in threads or under
    hypothesis."""


def _c_not_built(*args: object) -> Any:
    raise NotBuilt(f"{NOT_BUILT}: pip install must compile it in CI")


def both_builds(c: Callable[..., Any] | None, python: Callable[..., Any]) -> list[Any]:
    """The C extension's function and its pure-Python twin as two test parameters (ids ``c``
    and ``python``): the C one skips when the extension was not built (no compiler at install
    time), except in CI, where it stands for a failure."""
    return [
        pytest.param(
            c or _c_not_built,
            id="c",
            marks=pytest.mark.skipif(
                c is None and not IN_CI, reason=f"{NOT_BUILT} (no compiler at install time)"
            ),
        ),
        pytest.param(python, id="python"),
    ]


def require_extension(c: Callable[..., Any] | None) -> Callable[..., Any]:
    """``c``, for a test comparing the two builds: a skip without the extension, a failure in CI."""
    if c is None:
        if IN_CI:
            pytest.fail(NOT_BUILT)
        pytest.skip(NOT_BUILT)
    return c


MASKERS = both_builds(masking.mask_c, masking.mask_py)
MASK_COPIERS = both_builds(masking.mask_copy_c, masking.mask_copy_py)


@dataclass(frozen=True)
class Wire:
    """One frame as a FrameReader saw it: reassembled from its chunks, or a control frame."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0


def frames_bytes(frames: Iterable[Wire], *, mask: bool) -> bytes:
    """The bytes a peer sends: masked like a client's, or not like a server's."""
    writer = FrameWriter(mask=mask)
    for frame in frames:
        writer.send_frame(frame.opcode, frame.payload, frame.fin, frame.rsv)
    return writer.data_to_send()


def client_bytes(*frames: Wire) -> bytes:
    return frames_bytes(frames, mask=True)


def server_bytes(*frames: Wire) -> bytes:
    return frames_bytes(frames, mask=False)


def reader(masked: bool, max_frame_size: int = BIG, max_message_size: int = BIG) -> FrameReader:
    return FrameReader(
        masked=masked, max_frame_size=max_frame_size, max_message_size=max_message_size
    )


def feed(reader: FrameReader, data: bytes, step: int | None = None) -> list[Event]:
    """Feed ``data`` whole (step None) or in pieces of ``step`` bytes; all the events."""
    if step is None:
        return reader.receive_data(data)
    events: list[Event] = []
    for start in range(0, len(data), step):
        events += reader.receive_data(data[start : start + step])
    return events


def assemble(events: Iterable[Event]) -> list[Wire | Violation]:
    """Turn chunks back into whole frames (checking the chunk flags on the way)."""
    out: list[Wire | Violation] = []
    pieces: list[bytes] | None = None
    for event in events:
        if isinstance(event, DataChunk):
            if event.frame_start:
                assert pieces is None, "a frame started inside another"
                pieces = []
            assert pieces is not None, "a chunk without its frame's start"
            pieces.append(event.data)
            if event.frame_end:
                payload = b"".join(pieces)
                assert len(payload) == event.frame_length
                out.append(Wire(event.opcode, payload, event.fin, event.rsv))
                pieces = None
        elif isinstance(event, ControlFrame):
            assert pieces is None, "a control frame inside a data frame's chunks"
            out.append(Wire(event.opcode, event.payload))
        else:
            out.append(event)
    return out


def parse(data: bytes, *, masked: bool, step: int | None = None) -> list[Wire | Violation]:
    """What a peer would read from ``data``, frame by frame."""
    return assemble(feed(reader(masked), data, step))


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (out-of-range ones ignored, duplicates kept empty)."""
    bounds = [0, *sorted(c for c in cuts if 0 <= c <= len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


_CLOSE_CODES = st.sampled_from([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 3000, 4999])


@st.composite
def control_frames(draw: st.DrawFn) -> Wire:
    opcode = draw(st.sampled_from([Opcode.PING, Opcode.PONG]))
    return Wire(opcode, draw(st.binary(max_size=MAX_CONTROL_PAYLOAD)))


@st.composite
def frame_sequences(
    draw: st.DrawFn, max_messages: int = 6, max_size: int = 200, close: bool | None = None
) -> list[Wire]:
    """Valid frames as one peer may send them: messages of any fragmentation (empty fragments
    included, text split inside a character), pings and pongs between fragments, and maybe a
    close at the end (``close``: True always, False never, None either)."""
    frames: list[Wire] = []
    for _ in range(draw(st.integers(0, max_messages))):
        if draw(st.integers(0, 3)) == 0:
            frames.append(draw(control_frames()))
            continue
        if draw(st.booleans()):
            opcode, payload = Opcode.TEXT, draw(st.text(max_size=max_size // 2)).encode()
        else:
            opcode, payload = Opcode.BINARY, draw(st.binary(max_size=max_size))
        pieces = split(payload, draw(st.lists(st.integers(0, len(payload)), max_size=4)))
        for index, piece in enumerate(pieces):
            fin = index == len(pieces) - 1
            frames.append(Wire(opcode if index == 0 else Opcode.CONTINUATION, piece, fin))
            if not fin and draw(st.integers(0, 2)) == 0:
                frames.append(draw(control_frames()))
    if close or (close is None and draw(st.booleans())):
        if draw(st.booleans()):
            frames.append(Wire(Opcode.CLOSE, b""))
        else:
            reason = draw(st.text(max_size=20))
            frames.append(Wire(Opcode.CLOSE, serialize_close(draw(_CLOSE_CODES), reason)))
    return frames
