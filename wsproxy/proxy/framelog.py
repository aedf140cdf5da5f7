"""The ``-v`` lines of one session's frames, made from the relay's frame records.

One line per frame (a frame recorded in pieces: one line, with its first piece), laid out as
``wsproxy.logformat`` says, with a preview of the payload, or the decoder's summary of the
message when ``--decode`` is on; a ``--view-filter`` that looks at each record leaves out the
frames it does not keep.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from wsproxy import logformat, loglines
from wsproxy.sansio.frames import Opcode
from wsproxy.sansio.relay import FrameRecord, Side

if TYPE_CHECKING:
    from wsproxy.decoders.connection import StreamDecoding
    from wsproxy.filtering import Selection

log = logging.getLogger("wsproxy")

_CLOSE = int(Opcode.CLOSE)  # data opcodes are below it (a plain int compares faster)


class FrameLog:
    """The frame lines of one connection (``conn_id``): ``lines`` takes a run of records."""

    def __init__(
        self,
        conn_id: str,
        width: int,
        view: Selection | None,
        decoding: StreamDecoding | None,
    ) -> None:
        self.conn_id = conn_id
        self._width = width  # --preview-length: characters shown; 0 shows none
        self._preview_size = logformat.preview_bytes(width)
        self._view = view  # a view filter that decides record by record
        self._decoding = decoding
        self._heads: dict[tuple[Side, int, bool, int, bool], str] = {}

    def lines(self, records: list[FrameRecord]) -> None:
        """The ``-v`` lines of a run of records, as ``_line`` writes each: one call per
        run and a line head made once per direction and kind, unless a decoder or a view
        filter looks at each record."""
        decoding = self._decoding
        if decoding is not None and decoding.decoding.gave_up:
            self._decoding = decoding = None  # as in _line
        if decoding is not None or self._view is not None:
            for record in records:
                self._line(record)
            return
        width = self._width
        size = self._preview_size
        heads = self._heads
        preview = logformat.preview
        lines = []
        for r in records:
            if r.offset:
                continue  # a later piece of a frame recorded in pieces: logged with its first
            key = (r.side, r.opcode, r.fin, r.rsv, r.compressed)
            head = heads.get(key)
            if head is None:
                flags = logformat.frame_flags(fin=r.fin, rsv=r.rsv, compressed=r.compressed)
                from_client = r.side is Side.CLIENT
                head = heads[key] = logformat.frame_line_head(from_client, r.opcode, flags)
            if not width:
                lines.append(f"{head}{r.length}")
                continue
            data = r.payload
            if len(data) > size:
                data = data[:size]  # the whole payload when a capture listens too
            kind = r.message_opcode if r.opcode == 0 else r.opcode
            shown = preview(data, kind, width, partial=len(data) >= size)
            lines.append(f"{head}{r.length} {shown}")
        loglines.info_tagged(log, self.conn_id, lines)

    def _line(self, record: FrameRecord) -> None:
        decoding = self._decoding
        summary = None
        if decoding is not None and decoding.decoding.gave_up:
            # No decoder fits this connection, and none ever will: no more joining either.
            self._decoding = decoding = None
        if decoding is not None and record.opcode < _CLOSE:
            try:
                decoded = decoding.frame(
                    record.payload,
                    from_client=record.side is Side.CLIENT,
                    text=record.message_opcode == Opcode.TEXT,
                    last=record.fin and not record.more,
                    whole=record.verdict == "injected",
                )
            except Exception as error:  # a decoder's bug must not end the connection
                self._decoding = decoded = None
                log.info(
                    "[%s] %s: decoding stopped: %s: %s",
                    self.conn_id,
                    record.side.value,
                    type(error).__name__,
                    error,
                )
            if decoded is not None:
                summary = logformat.decoded_preview(decoded.summary, self._width)
                if record.offset:  # its frame's line went with its first piece
                    side = "client -> server" if record.side is Side.CLIENT else "server -> client"
                    loglines.info(log, "[%s] %s message: %s", self.conn_id, side, summary)
        if record.offset:
            return  # a later piece of a frame recorded in pieces: logged with its first
        if self._view is not None and not self._view.keeps_record(record):
            return
        width = self._width
        size = self._preview_size
        data = record.payload
        if len(data) > size:
            data = data[:size]  # the whole payload when a capture listens too
        if summary is not None:
            shown = summary
        elif width:
            kind = logformat.payload_kind(record.opcode, record.message_opcode)
            shown = logformat.preview(data, kind, width, partial=len(data) >= size)
        else:
            shown = ""
        flags = logformat.frame_flags(fin=record.fin, rsv=record.rsv, compressed=record.compressed)
        line = logformat.frame_line(
            from_client=record.side is Side.CLIENT,
            opcode=record.opcode,
            flags=flags,
            length=record.length,
            shown=shown,
        )
        shown_line = line if width else line[:-1]  # no preview, no " "
        loglines.info(log, "[%s] %s", self.conn_id, shown_line)
