"""One leg of a proxied WebSocket: the frames one peer sends us, and the frames we send it.

The proxy is the server towards its client and the client towards the upstream, so each leg
knows which way masking goes (RFC 6455 section 5.1: client frames masked, server frames not).

Reading is incremental and streaming (the wsproto way): ``receive_data`` takes whatever bytes
arrived and returns events right away. A data frame comes out as one or more ``DataChunk``
events as its payload arrives, so a 100 MiB frame is never held whole; control frames, at most
125 bytes, come out whole as ``ControlFrame``. Every rule of RFC 6455 section 5 is checked
here; a violation stops the reader and comes out as a ``Violation`` event with its close code,
never as an exception.
"""

from __future__ import annotations

import codecs
from typing import Protocol

from wsproxy.sansio.commands import Wire
from wsproxy.sansio.errors import ProtocolError
from wsproxy.sansio.events import ControlFrame, DataChunk, Event, Violation
from wsproxy.sansio.fastpath import EVENT_COST, Inflate
from wsproxy.sansio.framechecks import (
    check_control_frame,
    check_utf8,
    new_utf8_decoder,
    payload_length,
)
from wsproxy.sansio.frames import (
    FIN,
    KNOWN_OPCODES,
    MASK,
    RSV1,
    RSV2,
    RSV3,
    CloseCode,
    Opcode,
    apply_mask,
    parse_close,
)
from wsproxy.sansio.takes import FastTakes

# RFC 7692 7.2.2: what a receiver appends to a message's payload before inflating it.
_TAIL = b"\x00\x00\xff\xff"


class MessageInflater(Protocol):
    """What the reader needs from permessage-deflate (see ``deflate.Inflater``)."""

    @property
    def pending(self) -> bool: ...

    def feed_piece(self, data: bytes) -> bytes: ...

    def resume(self) -> bytes: ...

    def end_message(self) -> bytes: ...

    def fast_inflate(self) -> Inflate: ...

    def inflate_message(self, payload_and_tail: bytes) -> bytes: ...

    def most_compressed(self) -> int: ...

    def failure(self, error: BaseException) -> ProtocolError: ...


# A compressed piece may inflate to far more than it is (1032 times at most, RFC 1951), and a
# read of tiny frames makes many events: one call of receive_data passes on at most this much
# (the content of its events, and EVENT_COST each), then stops with ``pending`` set and the
# rest kept, so a caller that handles the events before asking for more streams even a highly
# compressed message instead of holding it whole (issue 10), and holds a read of thousands of
# 9-byte compressed frames as a mebibyte at a time, not as the hundred it inflates to.
READ_BUDGET = 1024 * 1024


class FrameReader(FastTakes):
    """Parses the frames one peer sends, with all the state RFC 6455 section 5 needs.

    ``masked`` says whether this peer must mask (it is a client). Limits follow the flags
    ``--max-frame-size`` and ``--max-message-size``; for a compressed message the message
    limit applies to the decompressed size, which the inflater enforces as it goes.
    """

    __slots__ = (
        "_buffer",
        "_compressed",
        "_fin",
        "_header_size",
        "_in_frame",
        "_inflating",
        "_length",
        "_mask_key",
        "_message_opcode",
        "_message_size",
        "_offset",
        "_opcode",
        "_remaining",
        "_rsv",
        "_utf8",
        "inflater",
        "keep_binary_masked",
        "masked",
        "max_frame_size",
        "max_message_size",
        "pending",
    )

    def __init__(self, *, masked: bool, max_frame_size: int, max_message_size: int) -> None:
        self.masked = masked
        self.max_frame_size = max_frame_size
        self.max_message_size = max_message_size
        self.inflater: MessageInflater | None = None
        # Binary payloads that no one reads (no plugin hooks) may stay masked: the relay then
        # re-masks them with one XOR instead of unmasking and masking again.
        self.keep_binary_masked = False
        self.failed: Violation | None = None
        # The fast path failed the reader (a compressed frame it inflated): receive_data
        # reports ``failed`` once, as the event it would have made itself.
        self._unreported = False
        self.bytes_received = 0
        self._buffer = bytearray()
        # The frame being read: its header fields, and how much payload is still to come.
        self._in_frame = False
        self._opcode = 0
        self._fin = False
        self._rsv = 0
        self._length = 0
        self._remaining = 0
        self._mask_key = b""
        self._offset = 0
        self._header_size = 0
        # The message being read, if any (between its first frame and its final one).
        self._message_opcode: int | None = None
        self._message_size = 0
        self._compressed = False
        self._utf8: codecs.IncrementalDecoder | None = None
        # A compressed piece whose inflated content is still coming: the piece, and whether it
        # ended its frame and message; its last content chunk carries all three.
        self._inflating: tuple[bytes, bool, bool] | None = None
        # receive_data stopped early (READ_BUDGET): call it again, with b"" if need be.
        self.pending = False

    @property
    def in_message(self) -> bool:
        return self._message_opcode is not None

    def take_payload(self, data: Wire) -> tuple[Wire, bytes, int, bool, bool] | None:
        """The shortcut for a binary frame streamed through untouched: inside its payload,
        ``(piece, mask_key, offset, frame_end, fin)`` for the part of ``data`` that belongs to
        it, taken as it came (a view of ``data`` when there is more; still masked with
        ``mask_key`` from ``offset`` when the peer masks); None anywhere else, where
        ``receive_data`` reads. Only for a reader that keeps binary payloads masked (nothing
        reads them), as ``receive_data`` would then pass the same bytes on."""
        if not (
            self._in_frame
            and self._message_opcode == Opcode.BINARY
            and (self.keep_binary_masked or not self.masked)
            and not (self._compressed or self._buffer)
            and self._inflating is None
            and self.failed is None
        ):
            return None
        size = len(data)
        take = min(size, self._remaining)
        if take == 0:
            return None
        offset = self._offset
        if self.masked:
            self._offset += take
        self._remaining -= take
        self.bytes_received += take
        frame_end = self._remaining == 0
        fin = self._fin
        if frame_end:
            self._in_frame = False
            if fin:
                self._message_opcode = None
        piece: Wire = data if take == size else memoryview(data)[:take]
        return piece, self._mask_key, offset, frame_end, fin

    def start_streamed(self, data: Wire, threshold: int) -> tuple[int, bool, int] | None:
        """The header of a binary frame of more than ``threshold`` bytes at the start of
        ``data``, when this reader is at rest and the frame passes every check of the
        general reader: read, and ``(header size, fin, payload length)``; None otherwise
        (also for a header not all there, or one the general reader must refuse)."""
        if len(data) < 10 or not self._at_rest:
            return None
        first, second = data[0], data[1]
        # FIN or not, no RSV bits, binary; masked as this peer must; the 64-bit length.
        if first & 0x7F != Opcode.BINARY or second & 0x7F != 127:
            return None
        if bool(second & MASK) != self.masked or (self.masked and len(data) < 14):
            return None
        length = int.from_bytes(data[2:10], "big")
        if length <= threshold or length >> 63:
            return None
        if length > self.max_frame_size or length > self.max_message_size:
            return None
        header_end = self._parse_header(data, 0)  # cannot fail: its checks passed above
        self._in_frame = True
        self.bytes_received += header_end
        return header_end, self._fin, length

    @property
    def _at_rest(self) -> bool:
        """Between messages with nothing held or failed: where the fast path may run."""
        return not (
            self._in_frame
            or self._buffer
            or self._message_opcode is not None
            or self._inflating is not None
            or self.failed is not None
        )

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; returns the events they complete.

        The bytes are parsed where they are: only an incomplete header or control frame is
        kept for the next call, so the payload of a large frame is never copied into a buffer.
        Once its events hold ``READ_BUDGET`` (a compressed frame that inflates to a lot, or
        thousands of small frames), the call stops there with ``pending`` set and keeps the
        rest: the caller handles the events, then calls again (``receive_data(b"")`` if nothing
        new came) until ``pending`` is unset; ``hold`` keeps bytes for such a later call."""
        if self.failed is not None:
            if not self._unreported:
                return []
            self._unreported = False
            self.bytes_received += len(data)
            return [self.failed]
        self.bytes_received += len(data)
        self.pending = False
        events: list[Event] = []
        try:
            if self._inflating is not None and not self._resume_inflating(data, events):
                return events
            if self._buffer:
                self._buffer += data
                data = bytes(self._buffer)
                self._buffer.clear()
            position = self._parse(data, events)
        except ProtocolError as error:
            self.failed = Violation(error.code, error.reason)
            events.append(self.failed)
            return events
        if position < len(data):
            self._buffer += data[position:]
        return events

    def hold(self, data: bytes) -> None:
        """Keep ``data`` unparsed for a later ``receive_data`` (``pending`` set): a caller whose
        events wait (a relay's hooks behind) reads no more of them yet."""
        if data:
            self.bytes_received += len(data)
            self._buffer += data
            self.pending = True

    def _resume_inflating(self, data: bytes, events: list[Event]) -> bool:
        """Go on with a frame that inflated past its budget; False when parsing waits."""
        if not self._inflate_more(events):
            self._buffer += data
            self.pending = True
            return False
        return bool(data or self._buffer)

    def _parse(self, data: bytes, events: list[Event]) -> int:
        """Parse ``data`` into ``events``; returns where the unparsed rest starts."""
        size = len(data)
        position = 0
        produced = 0  # against READ_BUDGET
        while True:
            if not self._in_frame:
                header_end = self._parse_header(data, position)
                if header_end < 0:
                    break
                if self._opcode >= 0x8:
                    # Control frames come out whole (at most 125 bytes, RFC 6455 5.5).
                    end = header_end + self._length
                    if size < end:
                        break  # parsed again, header included, when the rest arrives
                    events.append(self._control(data[header_end:end]))
                    position = end
                    produced += EVENT_COST
                    if produced >= READ_BUDGET:
                        self.pending = True  # the rest waits until these events are handled
                        break
                    continue
                position = header_end
                self._in_frame = True
                if self._length == 0:
                    chunk = self._chunk(b"", True, True)
                    events.append(chunk)
                    self._in_frame = False
                    produced += len(chunk.content) + EVENT_COST
                    if produced >= READ_BUDGET:
                        self.pending = True
                        break
                    continue
            available = size - position
            if available == 0:
                break
            take = min(available, self._remaining)
            # When the whole read is payload, it is passed on as it is: no copy.
            whole = position == 0 and take == size
            piece = data if whole else data[position : position + take]
            position += take
            frame_start = self._remaining == self._length
            self._remaining -= take
            frame_end = self._remaining == 0
            chunk = self._chunk(piece, frame_start, frame_end)
            events.append(chunk)
            if frame_end:
                self._in_frame = False
            produced += len(chunk.content) + EVENT_COST
            if self._inflating is not None or produced >= READ_BUDGET:
                self.pending = True  # the rest waits until these events are handled
                break
        return position

    def _parse_header(self, buffer: Wire, position: int) -> int:
        """Read and check a header at ``position``; returns where its payload starts, or -1."""
        available = len(buffer) - position
        if available < 2:
            return -1
        first = buffer[position]
        second = buffer[position + 1]
        opcode = first & 0x0F
        if opcode not in KNOWN_OPCODES:
            raise ProtocolError(f"reserved opcode {opcode:#x}", CloseCode.PROTOCOL_ERROR)
        rsv = first & (RSV1 | RSV2 | RSV3)
        if rsv & (RSV2 | RSV3):
            raise ProtocolError("RSV2/RSV3 set without an extension", CloseCode.PROTOCOL_ERROR)
        if bool(second & MASK) != self.masked:
            if self.masked:
                raise ProtocolError("unmasked frame from the client", CloseCode.PROTOCOL_ERROR)
            raise ProtocolError("masked frame from the server", CloseCode.PROTOCOL_ERROR)
        size, length = payload_length(buffer, position, available, second & 0x7F)
        if size < 0:
            return -1
        if self.masked:
            if available < size + 4:
                return -1
            self._mask_key = bytes(buffer[position + size : position + size + 4])
            size += 4
        fin = bool(first & FIN)
        if opcode >= 0x8:
            check_control_frame(fin, rsv, length)
        else:
            self._start_data_frame(opcode, fin, rsv, length)
        self._opcode = opcode
        self._fin = fin
        self._rsv = rsv
        self._length = length
        self._remaining = length
        self._offset = 0
        self._header_size = size
        return position + size

    def _start_data_frame(self, opcode: int, fin: bool, rsv: int, length: int) -> None:
        if opcode == Opcode.CONTINUATION:
            if self._message_opcode is None:
                raise ProtocolError("continuation frame without a message", 1002)
            if rsv:
                raise ProtocolError("RSV1 set on a continuation frame", 1002)
        else:
            if self._message_opcode is not None:
                raise ProtocolError("new data frame inside a fragmented message", 1002)
            if rsv and self.inflater is None:
                raise ProtocolError("RSV1 set without permessage-deflate", 1002)
            self._message_opcode = opcode
            self._message_size = 0
            self._compressed = bool(rsv)
            self._utf8 = new_utf8_decoder() if opcode == Opcode.TEXT else None
        if length > self.max_frame_size:
            raise ProtocolError(
                f"frame of {length} bytes over the limit of {self.max_frame_size}",
                CloseCode.MESSAGE_TOO_BIG,
            )
        if not self._compressed:
            self._message_size += length
            if self._message_size > self.max_message_size:
                raise ProtocolError(
                    f"message over the limit of {self.max_message_size} bytes",
                    CloseCode.MESSAGE_TOO_BIG,
                )

    def _chunk(self, piece: bytes, frame_start: bool, frame_end: bool) -> DataChunk:
        message_opcode = self._message_opcode
        assert message_opcode is not None
        mask_key = b""
        offset = self._offset
        if self.masked and piece:
            self._offset += len(piece)
            if self.keep_binary_masked and message_opcode == Opcode.BINARY and not self._compressed:
                # Nothing needs these bytes in the clear: the relay re-masks them in one pass.
                mask_key = self._mask_key
            else:
                piece = apply_mask(piece, self._mask_key, offset)
        message_end = frame_end and self._fin
        content = piece
        if self._compressed:
            inflater = self.inflater
            assert inflater is not None
            if (
                frame_start
                and message_end
                and self._opcode != Opcode.CONTINUATION
                and len(piece) <= inflater.most_compressed()
            ):
                # A whole one-frame message that cannot inflate past a piece or the limit
                # (the plugins' and the log's usual case): one zlib call, tail included.
                content = inflater.inflate_message(piece + _TAIL if piece else b"")
                return self._data_chunk(piece, content, True, True, mask_key, offset)
            content = inflater.feed_piece(piece) if piece else b""
            if inflater.pending:
                # More content comes from this piece (_inflate_more). The piece itself goes
                # with its last content chunk, once all it inflates to has passed the checks
                # (size limit, valid DEFLATE, UTF-8): a relay forwards nothing of it before.
                self._inflating = (piece, frame_end, message_end)
                return self._data_chunk(b"", content, frame_start, False, b"", 0)
            elif message_end:
                content += inflater.end_message()
        return self._data_chunk(piece, content, frame_start, frame_end, mask_key, offset)

    def _inflate_more(self, events: list[Event]) -> bool:
        """Pass on more content of the piece being inflated; True once it is all out."""
        assert self.inflater is not None and self._inflating is not None
        piece, frame_end, message_end = self._inflating
        produced = 0
        while produced < READ_BUDGET:
            content = self.inflater.resume()
            last = not self.inflater.pending
            if last and message_end:
                content += self.inflater.end_message()
            produced += len(content)
            if last:
                self._inflating = None
                events.append(self._data_chunk(piece, content, False, frame_end, b"", 0))
                return True
            events.append(self._data_chunk(b"", content, False, False, b"", 0))
        return False

    def _data_chunk(
        self,
        piece: bytes,
        content: bytes,
        frame_start: bool,
        frame_end: bool,
        mask_key: bytes,
        offset: int,
    ) -> DataChunk:
        message_opcode = self._message_opcode
        assert message_opcode is not None
        message_end = frame_end and self._fin
        if self._utf8 is not None:
            check_utf8(self._utf8, content, message_end)
        chunk = DataChunk(
            self._opcode,
            message_opcode,
            self._fin,
            self._rsv,
            self._length,
            piece,
            content,
            frame_start,
            frame_end,
            self._compressed,
            mask_key,
            offset,
        )
        if message_end:
            self._message_opcode = None
            self._utf8 = None
        return chunk

    def _control(self, payload: bytes) -> ControlFrame:
        if self.masked and payload:
            payload = apply_mask(payload, self._mask_key)
        if self._opcode == Opcode.CLOSE:
            code, reason = parse_close(payload)
            return ControlFrame(self._opcode, payload, code, reason)
        return ControlFrame(self._opcode, payload)
