"""The relay's shortcuts past the reader's events, for legs nothing hooks: a quiet relay's
runs of simple frames and large binary frames streamed start to end, and a recording relay's
runs of simple frames with one record each. Each hands back the bytes it leaves, for the
general path (``Relay._handle``), which they match frame for frame."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wsproxy.sansio.commands import Command, Record, Wire
from wsproxy.sansio.frames import Opcode
from wsproxy.sansio.legs import Leg
from wsproxy.sansio.records import FrameRecord

STREAM_THRESHOLD = 64 * 1024


def _after(data: Wire, start: int) -> Wire:
    """The rest of a read from ``start``, as a view: a read holds up to 256 KiB, and a copy of
    it at every large frame's start and end cost a quarter more copying at 1 MiB frames."""
    return memoryview(data)[start:]


class Shortcuts:
    """``Relay``'s shortcut methods; ``Relay`` provides what they call."""

    if TYPE_CHECKING:
        _out: list[Command]
        _keep: int

        def _message_out(self, target: Leg) -> None: ...

    def _stream_quiet(self, source: Leg, target: Leg, data: Wire) -> Wire:
        """The shortcut of a quiet relay for large binary frames (over ``STREAM_THRESHOLD``):
        their headers (``start_streamed``) and payloads (``take_payload``) go to ``target`` as
        they come, with the runs of simple frames between them, and no reader events; what
        ``_forward_chunk`` would send, as ``FrameWriter.start_frame`` and ``payload_out``
        make it. Returns the rest of ``data``, from the first byte the shortcut leaves to the
        general path."""
        reader, writer = source.reader, target.writer
        while data:
            if target.mid_frame_out:
                taken = reader.take_payload(data)
                if taken is None:
                    break  # text, checked as it streams
                piece, key, _, frame_end, fin = taken
                writer.send_raw(writer.payload_out(piece, key))
                data = _after(data, len(piece))
                if frame_end:
                    target.mid_frame_out = False
                    if fin:
                        source.messages += 1
                        self._message_out(target)  # what was injected meanwhile: after it
                    else:
                        target.out_open = True
                continue
            if target.out_open:
                break  # a fragmented message goes on the general way
            end, out, frames = reader.take_simple(data)
            if frames:
                source.frames += frames
                source.messages += frames
                writer.send_raw(memoryview(data)[:end] if out is None else out)
                data = _after(data, end)
            started = reader.start_streamed(data, STREAM_THRESHOLD)
            if started is None:
                break
            header, fin, length = started
            source.frames += 1
            source.stream_started = True
            writer.start_frame(Opcode.BINARY, fin, 0, length)
            target.mid_frame_out = True
            data = _after(data, header)
        return data

    def _relay_recorded(self, source: Leg, target: Leg, data: bytes) -> bytes:
        """The fast path for recorded frames: the run of simple frames at the start of
        ``data`` goes to ``target`` with one record each, built as ``_forward_chunk`` would
        build it (see ``fastpath``); returns the rest of ``data``, for the general path."""
        end, out, frames = source.reader.take_simple_recorded(data, self._keep)
        if not frames:
            return data
        source.frames += len(frames)
        source.messages += len(frames)
        side = source.side
        append = self._out.append
        for opcode, length, payload in frames:
            # A whole, final, unextended, uncompressed frame: its own message, forwarded.
            append(Record(FrameRecord(side, opcode, True, 0, length, payload, False, opcode)))
        if out is None:
            out = data if end == len(data) else data[:end]
        target.writer.send_raw(out)
        return data[end:]
