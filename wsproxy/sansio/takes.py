"""The reader's fast paths: runs of whole frames taken straight off a read, in one call.

Between messages, with nothing held, ``FrameReader`` hands the start of each read to one of
the walks in ``wsproxy.sansio.fastpath`` (C, or its pure twin): frames that need nothing but a
new mask (``take_simple``), whole compressed messages checked on the way (``take_deflated``),
the same with records (``take_simple_recorded``), or whole messages for the plugins
(``take_whole``, ``take_whole_deflated``). Each stops at the first frame the general reader
must see, which then reads on from there. The walks draw mask keys from one shared block;
when it runs out mid-read, ``_go_on`` refills it and walks on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from wsproxy.sansio.commands import Wire
from wsproxy.sansio.events import Violation
from wsproxy.sansio.fastpath import (
    MASK_KEYS,
    Buffer,
    WholeDeflatedFrame,
    relay_deflated,
    relay_frames,
    relay_frames_recorded,
    whole_deflated,
    whole_frames,
)

if TYPE_CHECKING:
    from wsproxy.sansio.endpoint import MessageInflater

# What one fast-path run finds besides its bytes: a count of frames, or their records.
_Found = TypeVar(
    "_Found",
    int,
    list[tuple[int, int, bytes]],
    list[tuple[int, bytes, bytes]],
    list[WholeDeflatedFrame],
)


class FastTakes:
    """``FrameReader``'s fast-path methods; the reader provides the state they read."""

    # What the fast paths write; the reader sets them up and reads them too.
    __slots__ = ("_unreported", "bytes_received", "failed")
    _unreported: bool
    bytes_received: int
    failed: Violation | None

    if TYPE_CHECKING:
        _in_frame: bool
        _buffer: bytearray
        _message_opcode: int | None
        _inflating: tuple[bytes, bool, bool] | None
        masked: bool
        max_frame_size: int
        max_message_size: int
        inflater: MessageInflater | None

        @property
        def _at_rest(self) -> bool: ...

    def take_simple(self, data: Wire) -> tuple[int, bytes | None, int]:
        """The fast path (``fastpath.relay_frames``) over the start of ``data``, when this
        reader is between messages with nothing held: ``(end, out, frames)``, where ``out``
        is ``data[:end]`` re-masked with fresh keys (a client's frames) or None (a server's,
        which go on as they are). The rest, from ``end``, is for ``receive_data``."""
        # ``_at_rest`` written out, one call, no closure: this runs for every read of small
        # messages (see _with_keys).
        if (
            self._in_frame
            or self._buffer
            or self._message_opcode is not None
            or self._inflating is not None
            or self.failed is not None
        ):
            return 0, None, 0
        keys = MASK_KEYS
        masked = self.masked
        end, out, frames, keys.position = relay_frames(
            data, masked, self.max_frame_size, self.max_message_size, keys.block, keys.position
        )
        if masked and end < len(data) and keys.position + 4 > len(keys.block):
            return self._go_on(data, end, out, frames, self._simple_run)
        self.bytes_received += end
        return end, out, frames

    def _simple_run(
        self, view: Buffer, block: bytes, position: int
    ) -> tuple[int, bytes | None, int, int]:
        end, out, frames, position = relay_frames(
            view, self.masked, self.max_frame_size, self.max_message_size, block, position
        )
        return end, out, position, frames

    def take_deflated(self, data: bytes) -> tuple[int, bytes | None, int]:
        """``take_simple`` for a connection with permessage-deflate
        (``fastpath.relay_deflated``): whole compressed messages too, inflated by
        ``inflater`` (its context carries on) and forwarded as they came. When one of them
        fails (invalid DEFLATE data or UTF-8, a limit), the reader is failed there and the
        next ``receive_data`` reports it."""
        inflater = self.inflater
        if inflater is None or not self._at_rest:
            return 0, None, 0
        limits = self.max_frame_size, self.max_message_size
        most = inflater.most_compressed()
        errors: list[tuple[int, str] | BaseException] = []

        # A failure stops the walk at a frame it had a key for, so _go_on never walks on after
        # one; only a final block (a new decoder) or the keys running out does.
        def run(view: Buffer, block: bytes, position: int) -> tuple[int, bytes | None, int, int]:
            inflate = inflater.fast_inflate()  # anew: a BFINAL block replaces the decoder
            end, out, frames, position, error = relay_deflated(
                view, self.masked, *limits, block, position, inflate, most
            )
            if error is not None:
                errors.append(error)
            return end, out, position, frames

        result = self._with_keys(data, run)
        if errors:
            self._fail_at(inflater, errors[0])
        return result

    def take_simple_recorded(
        self, data: bytes, keep: int
    ) -> tuple[int, bytes | None, list[tuple[int, int, bytes]]]:
        """``take_simple`` for a relay that records its frames
        (``fastpath.relay_frames_recorded``): ``(end, out, frames)``, ``frames`` one
        ``(opcode, length, payload)`` per frame, ``payload`` its first ``keep`` bytes in the
        clear (all of it when ``keep`` is negative)."""
        if not self._at_rest:
            return 0, None, []
        limits = self.max_frame_size, self.max_message_size

        def run(
            view: Buffer, block: bytes, position: int
        ) -> tuple[int, bytes | None, int, list[tuple[int, int, bytes]]]:
            return relay_frames_recorded(view, self.masked, *limits, block, position, keep)

        return self._with_keys(data, run)

    def take_whole(self, data: bytes, budget: int) -> tuple[int, list[tuple[int, bytes, bytes]]]:
        """For a relay whose plugins read every message (``fastpath.whole_frames``): the run
        of simple frames at the start of ``data``, when this reader is between messages with
        nothing held, as ``(end, frames)``, one ``(opcode, content, out)`` per frame, ``out``
        the frame for the other peer if unchanged; about ``budget`` bytes of them at most
        (twice that where the mask keys ran out at the same frame). The rest, from ``end``, is
        for ``receive_data``."""
        if not self._at_rest:
            return 0, []
        limits = self.masked, self.max_frame_size, self.max_message_size

        def run(
            view: Buffer, block: bytes, position: int
        ) -> tuple[int, None, int, list[tuple[int, bytes, bytes]]]:
            end, frames, position = whole_frames(view, *limits, block, position, budget)
            return end, None, position, frames

        end, _, frames = self._with_keys(data, run)
        return end, frames

    def take_whole_deflated(self, data: bytes, budget: int) -> tuple[int, list[WholeDeflatedFrame]]:
        """``take_whole`` for a connection with permessage-deflate (``fastpath.whole_deflated``):
        whole compressed one-frame messages too, inflated by ``inflater`` (its context carries
        on), as ``(end, frames)``, one ``(opcode, content, wire, out)`` per frame. When one of
        them fails (invalid DEFLATE data or UTF-8, a limit), the reader is failed there and
        the next ``receive_data`` reports it, as after ``take_deflated``."""
        inflater = self.inflater
        if inflater is None or not self._at_rest:
            return 0, []
        limits = self.max_frame_size, self.max_message_size
        most = inflater.most_compressed()
        errors: list[tuple[int, str] | BaseException] = []

        def run(  # as in take_deflated: nothing after a failure
            view: Buffer, block: bytes, position: int
        ) -> tuple[int, None, int, list[WholeDeflatedFrame]]:
            inflate = inflater.fast_inflate()  # anew: a BFINAL block replaces the decoder
            end, frames, position, error = whole_deflated(
                view, self.masked, *limits, block, position, inflate, most, budget
            )
            if error is not None:
                errors.append(error)
            return end, None, position, frames

        end, _, frames = self._with_keys(data, run)
        if errors:
            self._fail_at(inflater, errors[0])
        return end, frames

    def _with_keys(
        self,
        data: bytes,
        run: Callable[[Buffer, bytes, int], tuple[int, bytes | None, int, _Found]],
    ) -> tuple[int, bytes | None, _Found]:
        """One fast-path ``run`` over ``data`` with the shared mask keys (``run`` returns
        ``(end, out, key position, found)``); when the keys run out in the middle of a run, a
        new block and on from there, the ``found`` of each call added up."""
        keys = MASK_KEYS
        end, out, keys.position, found = run(data, keys.block, keys.position)
        return self._go_on(data, end, out, found, run)

    def _go_on(
        self,
        data: Wire,
        end: int,
        out: bytes | None,
        found: _Found,
        run: Callable[[Buffer, bytes, int], tuple[int, bytes | None, int, _Found]],
    ) -> tuple[int, bytes | None, _Found]:
        """After the first ``run`` over ``data``: on with new key blocks while the keys ran out
        before the run's end, then the total."""
        keys = MASK_KEYS
        if self.masked and end < len(data) and keys.position + 4 > len(keys.block):
            pieces = [out] if out is not None else []
            while end < len(data) and keys.position + 4 > len(keys.block):
                keys.refill()
                more, out, keys.position, also = run(
                    memoryview(data)[end:], keys.block, keys.position
                )
                if out is not None:
                    pieces.append(out)
                end += more
                found += also
            out = b"".join(pieces) if pieces else None
        self.bytes_received += end
        return end, out, found

    def _fail_at(self, inflater: MessageInflater, error: tuple[int, str] | BaseException) -> None:
        """A compressed frame the fast path inflated failed (a close code and reason, or what
        inflating raised): the reader is failed there, and the next ``receive_data`` reports
        it, as the event it would have made itself."""
        if isinstance(error, BaseException):
            failure = inflater.failure(error)
            error = failure.code, failure.reason
        self.failed = Violation(*error)
        self._unreported = True
