"""The frames the proxy sends one peer: serialized, masked with a fresh key when the peer is a
server (RFC 6455 section 5.3), gathered until the shell takes them for one write."""

from __future__ import annotations

from wsproxy.sansio import masking
from wsproxy.sansio.commands import Wire
from wsproxy.sansio.fastpath import MASK_KEYS
from wsproxy.sansio.frames import (
    FIN,
    MASK,
    Opcode,
    apply_mask,
    new_mask_key,
    serialize_close,
    serialize_header,
)

# Output up to this size is joined into one write; beyond it, copying costs more than a write.
JOIN_LIMIT = 64 * 1024


class FrameWriter:
    """Serializes the frames we send one peer; masks with a fresh key when the peer is a server.

    Output accumulates until ``data_to_send`` takes it, so one event loop turn becomes one write.
    """

    __slots__ = ("_key", "_offset", "_output", "bytes_sent", "mask")

    def __init__(self, *, mask: bool) -> None:
        self.mask = mask
        self.bytes_sent = 0
        self._output: list[Wire] = []
        self._key = b""
        self._offset = 0

    def send_frame(
        self, opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, masked_with: bytes = b""
    ) -> None:
        """A whole frame; ``masked_with`` is the key ``payload`` is still masked with, if any."""
        if self.mask:
            keys = MASK_KEYS  # new_mask_key and MaskKeys.take, written out
            start = keys.position
            if start + 4 > len(keys.block):
                keys.refill()
                start = 0
            keys.position = start + 4
            key = keys.block[start : start + 4]
            length = len(payload)
            if length < 126 and not masked_with:
                # The usual frame of a message a plugin changed: header, key and payload
                # masked in one piece, serialize_header and apply_mask written out.
                first = (FIN | rsv | opcode) if fin else (rsv | opcode)
                head = bytes((first, MASK | length)) + key
                self._output.append(head + masking.mask_copy(payload, key, 0) if length else head)
                return
            self._output.append(serialize_header(opcode, fin, rsv, length, key))
            if payload:
                # Masking is XOR: re-masking a masked payload is one pass with both keys XORed.
                combined = _xor_keys(key, masked_with) if masked_with else key
                self._output.append(apply_mask(payload, combined))
        else:
            self._output.append(serialize_header(opcode, fin, rsv, len(payload)))
            if payload:
                self._output.append(payload)

    def send_raw(self, frames: Wire) -> None:
        """Frames already serialized (the fast path's), as they are."""
        self._output.append(frames)

    def take_single(self) -> Wire | None:
        """The output when it is one piece, taken (and counted as sent); None otherwise."""
        if len(self._output) != 1:
            return None
        piece = self._output.pop()
        self.bytes_sent += len(piece)
        return piece

    def start_frame(self, opcode: int, fin: bool, rsv: int, length: int) -> None:
        """The header of a frame whose payload follows in pieces (``send_payload``)."""
        key = new_mask_key() if self.mask else None
        self._output.append(serialize_header(opcode, fin, rsv, length, key))
        self._key = key or b""
        self._offset = 0

    def send_payload(self, piece: bytes, masked_with: bytes = b"") -> None:
        """A piece of the current frame; ``masked_with`` is the key ``piece`` is masked with."""
        if piece:
            self._output.append(self.payload_out(piece, masked_with))

    def payload_out(self, piece: Wire, masked_with: bytes = b"") -> Wire:
        """What a piece of the current frame goes out as (masked with this frame's key when
        the peer is a server), for a caller that writes it itself; ``send_payload`` queues it."""
        if not self.mask:
            return piece
        key = _xor_keys(self._key, masked_with) if masked_with else self._key
        out = apply_mask(piece, key, self._offset)
        self._offset += len(piece)
        return out

    def send_close(self, code: int | None, reason: str = "") -> None:
        self.send_frame(Opcode.CLOSE, serialize_close(code, reason))

    @property
    def has_output(self) -> bool:
        return bool(self._output)

    def data_to_send(self) -> bytes:
        if not self._output:
            return b""
        data = b"".join(self._output)
        self._output.clear()
        self.bytes_sent += len(data)
        return data

    def chunks_to_send(self) -> list[Wire]:
        """Like ``data_to_send``, without joining: large payloads are written without a copy."""
        output = self._output
        if len(output) > 1 and sum(map(len, output)) <= JOIN_LIMIT:
            output = [b"".join(output)]
        self._output = []
        for piece in output:
            self.bytes_sent += len(piece)
        return output


def _xor_keys(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(4, "big")
