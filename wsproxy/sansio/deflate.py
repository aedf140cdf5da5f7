"""permessage-deflate (RFC 7692) for a proxy in the middle: negotiation, per-direction codecs.

The proxy does not choose compression parameters; the two peers do. The client offers,
the proxy relays the offer (or strips it for ``--no-compression``), the upstream answers,
and the proxy checks that answer against the offer (RFC 7692 section 7.1) before relaying
it. Both legs then share one set of :class:`DeflateParams`.

Per direction the proxy keeps an :class:`Inflater`, so plugins see the real payloads, and
normally forwards the sender's compressed bytes untouched. Once a plugin changes a message,
that direction switches to the proxy's own :class:`Deflater` for good (see its docstring for
why there is no way back while context takeover is in effect).

Rules of this file:

* Which side's parameters apply: a message sent *by the client* is compressed with the
  ``client_*`` parameters (``client_max_window_bits``, ``client_no_context_takeover``) and one
  sent by the server with the ``server_*`` ones (RFC 7692 sections 7.1.1 and 7.1.2).
* Limits are enforced while inflating, never after: memory is bounded by the message size
  limit plus one zlib output chunk, whatever the compression ratio (precedent: websockets'
  ``max_size`` passed as zlib's ``max_length``, aiohttp's ``max_msg_size``).
* No ``asyncio``, ``socket``, ``ssl`` or ``time`` here: only ``zlib``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from wsproxy.sansio.errors import HandshakeError, ProtocolError
from wsproxy.sansio.extensions import (
    Extension,
    ExtensionParams,
    parse_extension_header,
    serialize_extension_header,
)

__all__ = [
    "EXTENSION_NAME",
    "INFLATE_PIECE",
    "MAX_BFINAL_PER_MESSAGE",
    "DeflateParams",
    "Deflater",
    "DirectInflate",
    "Inflater",
    "negotiate",
    "only_permessage_deflate",
    "strip_permessage_deflate",
    "validate_offer",
]

EXTENSION_NAME = "permessage-deflate"

# RFC 7692 section 7.2.1: a sender strips these four octets (the LEN/NLEN of the empty
# stored block that Z_SYNC_FLUSH emits); section 7.2.2: the receiver appends them back.
_TAIL = b"\x00\x00\xff\xff"

# RFC 7692 section 7.2.3.6: an empty DEFLATE block with no compression, BFINAL=0, once its
# LEN/NLEN are stripped. A whole empty message compresses to exactly this.
_EMPTY_MESSAGE = b"\x00"

_SERVER_NCT = "server_no_context_takeover"
_CLIENT_NCT = "client_no_context_takeover"
_SERVER_MWB = "server_max_window_bits"
_CLIENT_MWB = "client_max_window_bits"
_KNOWN_PARAMS = (_SERVER_NCT, _CLIENT_NCT, _SERVER_MWB, _CLIENT_MWB)

# RFC 7692 section 7.1.2.1: "a decimal integer value in the range 8 to 15 inclusive, with
# no leading zeros" (after unquoting a quoted-string, which parse_extension_header does).
_WINDOW_BITS_RE = re.compile(r"[1-9][0-9]?")

# The decoder always uses the largest window. Decoding does not depend on the window size:
# a stream valid for a 2**n window decodes identically with a 2**15 one. The smaller window
# would only make zlib reject back-references beyond 2**n, and it does so unreliably: inflate
# checks a distance against its window only when the match reaches behind the current output
# buffer, so whether a too-far reference fails would depend on how TCP and our max_length cut
# the stream. Consistent leniency beats random failures; the cost is 32 KiB per direction.
_INFLATE_WBITS = -15

# What the fast path inflates with under context takeover (``Inflater.fast_inflate``): the
# decoder, the window it keeps, and what finishes a message after a BFINAL block.
DirectInflate = tuple["zlib._Decompress", bytearray, Callable[[bytes], bytes]]

# Python's zlib (and zlib >= 1.2.9 underneath) refuses raw deflate with an 8-bit window
# (madler/zlib#171; websockets and aiohttp therefore never compress with 8). A receiver that
# negotiated 8 must never see a back-reference farther than 256 bytes, so for 8 we compress
# with a 9-bit window *and* Z_RLE, whose matches all have distance 1 (zlib manual,
# deflateInit2: "Z_RLE to limit match distances to one"). That bound is documented, unlike
# zlib's internal MAX_DIST (window - 262 = 250 bytes for 9 bits), which would also fit but is
# an implementation detail other builds (zlib-ng) need not share. RFC 7692 section 7.1.2.1
# lets a sender use a smaller window than negotiated, never a larger one; this respects it.
_MIN_ZLIB_WBITS = 9

# A block with BFINAL ends zlib's stream and the inflater must start a new decoder, primed
# with 32 KiB of history, plus a copy of the rest of the input (unused_data). A message of
# tiny BFINAL blocks (2 bytes each) would turn that into a CPU amplifier, so the restarts per
# message are capped. Senders use one BFINAL per message (RFC 7692 section 7.2.3.4), or one
# per fragment at most. Precedent: aiohttp's MAX_DECOMPRESS_MEMBERS (1024 per call).
MAX_BFINAL_PER_MESSAGE = 64

# The most output one zlib call may produce. CPython's zlib gathers a call's output in blocks
# and joins them at the end, so a call briefly holds twice its output: bounding the call keeps
# that to one piece, and lets a reader pass a highly compressed message on in pieces instead
# of inflating it whole (a 64 KiB frame of zeros inflates to 64 MiB).
INFLATE_PIECE = 256 * 1024


@dataclass(frozen=True)
class DeflateParams:
    """The agreed parameters of permessage-deflate (RFC 7692 section 7.1), shared by both legs.

    A window of ``n`` bits means back-references reach at most ``2**n`` bytes; 15 is the
    default when the answer does not name a value.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15

    def __post_init__(self) -> None:
        for bits in (self.server_max_window_bits, self.client_max_window_bits):
            if not 8 <= bits <= 15:
                raise ValueError(f"max_window_bits must be in 8..15, not {bits}")

    def no_context_takeover(self, from_client: bool) -> bool:
        """Whether messages sent by that side start each with an empty LZ77 window."""
        return self.client_no_context_takeover if from_client else self.server_no_context_takeover

    def max_window_bits(self, from_client: bool) -> int:
        """The window limit of messages sent by that side."""
        return self.client_max_window_bits if from_client else self.server_max_window_bits

    def response_header(self) -> str:
        """The ``Sec-WebSocket-Extensions`` answer that agrees on these parameters.

        Window sizes of 15 are left out: they are the default, and ``client_max_window_bits``
        may only appear if the client offered it (RFC 7692 section 7.1.2.2).
        """
        params: ExtensionParams = []
        if self.server_no_context_takeover:
            params.append((_SERVER_NCT, None))
        if self.client_no_context_takeover:
            params.append((_CLIENT_NCT, None))
        if self.server_max_window_bits != 15:
            params.append((_SERVER_MWB, str(self.server_max_window_bits)))
        if self.client_max_window_bits != 15:
            params.append((_CLIENT_MWB, str(self.client_max_window_bits)))
        return serialize_extension_header([(EXTENSION_NAME, params)])


# --- Handshake -----------------------------------------------------------------------------


def _is_deflate(extension: Extension) -> bool:
    # Extension tokens compare case-insensitively, like every HTTP token: stripping must not
    # let "PerMessage-Deflate" slip through to an upstream that would accept it, and keeping
    # must not drop it.
    return extension[0].lower() == EXTENSION_NAME


def _quote(value: str) -> str:
    """A parameter value as it must be written: a token as is, anything else quoted."""
    if re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def strip_permessage_deflate(values: list[str]) -> list[str]:
    """Remove every permessage-deflate offer from ``Sec-WebSocket-Extensions`` values.

    For ``--no-compression``: other extensions are kept, in order, in one header value; an
    empty list means the header should be dropped. A malformed header is the client's fault:
    HandshakeError(400).
    """
    return _select(values, deflate=False)


def only_permessage_deflate(values: list[str]) -> list[str]:
    """Keep only the permessage-deflate offers of ``Sec-WebSocket-Extensions`` values.

    The proxy must read every frame it relays, so it lets through only the extension it can
    decode; the offers keep their order and spelling, in one header value (an empty list: no
    header). A malformed header is the client's fault: HandshakeError(400).
    """
    return _select(values, deflate=True)


def _select(values: list[str], *, deflate: bool) -> list[str]:
    """The extensions of ``values`` that are (or are not) permessage-deflate, re-serialized."""
    kept = [
        (name, [(key, None if value is None else _quote(value)) for key, value in params])
        for name, params in parse_extension_header(values, 400)
        if _is_deflate((name, params)) == deflate
    ]
    return [serialize_extension_header(kept)] if kept else []


def _window_bits(value: str | None, status: int, where: str) -> int:
    if value is None or not _WINDOW_BITS_RE.fullmatch(value) or not 8 <= int(value) <= 15:
        raise HandshakeError(status, f"permessage-deflate {where} must be 8..15, not {value!r}")
    return int(value)


def _check_params(params: ExtensionParams, status: int, offer: bool) -> dict[str, int | None]:
    """Check one permessage-deflate element; map each parameter to its window bits or None.

    RFC 7692 section 7.1: each parameter at most once, only the four known names, the
    no_context_takeover ones without a value, ``server_max_window_bits`` always with one,
    ``client_max_window_bits`` with one in a response but optionally without in an offer.
    """
    seen: dict[str, int | None] = {}
    for raw_key, value in params:
        key = raw_key.lower()
        if key not in _KNOWN_PARAMS:
            raise HandshakeError(status, f"unknown permessage-deflate parameter {raw_key!r}")
        if key in seen:
            raise HandshakeError(status, f"duplicate permessage-deflate parameter {raw_key!r}")
        if key in (_SERVER_NCT, _CLIENT_NCT):
            if value is not None:
                raise HandshakeError(status, f"permessage-deflate {key} takes no value")
            seen[key] = None
        elif key == _CLIENT_MWB and offer and value is None:
            seen[key] = None
        else:
            seen[key] = _window_bits(value, status, key)
    return seen


def validate_offer(offer_values: list[str]) -> None:
    """Refuse a client's malformed permessage-deflate offer with HandshakeError(400).

    RFC 7692 section 7.1 has a server *decline* an offer it cannot accept; the proxy is
    not the server, and relaying a header it knows to be broken would only move the error
    upstream, so it answers 400 instead. Other extensions are relayed untouched.
    """
    for name, params in parse_extension_header(offer_values, 400):
        if _is_deflate((name, params)):
            _check_params(params, 400, offer=True)


def _answer_fits(offer: dict[str, int | None], answer: dict[str, int | None]) -> bool:
    """Whether ``answer`` accepts ``offer`` (RFC 7692 sections 7.1.1 and 7.1.2)."""
    if _SERVER_NCT in offer and _SERVER_NCT not in answer:
        return False  # 7.1.1.1: the server must accept server_no_context_takeover
    if _SERVER_MWB in offer:
        server_bits = answer.get(_SERVER_MWB)
        limit = offer[_SERVER_MWB]
        # 7.1.2.1: the answer must repeat server_max_window_bits with an equal or smaller value
        if server_bits is None or limit is None or server_bits > limit:
            return False
    # 7.1.2.2: client_max_window_bits only if the offer has it. A value larger than the
    # offer's is allowed ("the server may ignore this value"): the client stays within its
    # own offer anyway, and a client that minds can refuse the answer itself.
    return _CLIENT_MWB not in answer or _CLIENT_MWB in offer


def negotiate(offer_values: list[str], response_values: list[str]) -> DeflateParams | None:
    """Check the upstream's ``Sec-WebSocket-Extensions`` answer against the client's offer.

    Returns the agreed parameters, or None when the answer does not accept
    permessage-deflate. Any violation is the upstream's fault: HandshakeError(502), since
    the proxy cannot relay an answer the client would have to fail the connection over
    (RFC 6455 section 9.1, RFC 7692 section 7.1):

    * an extension the client did not offer (checked for every extension, not only ours);
    * permessage-deflate more than once;
    * an unknown, duplicate or malformed parameter;
    * an answer that accepts none of the client's alternative offers.
    """
    offers = [
        _check_params(params, 400, offer=True)
        for name, params in parse_extension_header(offer_values, 400)
        if _is_deflate((name, params))
    ]
    offered_names = {name.lower() for name, _ in parse_extension_header(offer_values, 400)}
    answers: list[ExtensionParams] = []
    for name, params in parse_extension_header(response_values, 502):
        if name.lower() not in offered_names:
            raise HandshakeError(502, f"upstream accepted extension {name!r} that was not offered")
        if _is_deflate((name, params)):
            answers.append(params)
    if not answers:
        return None
    if len(answers) > 1:
        raise HandshakeError(502, "upstream accepted permessage-deflate more than once")
    answer = _check_params(answers[0], 502, offer=False)
    if not any(_answer_fits(offer, answer) for offer in offers):
        raise HandshakeError(502, "upstream's permessage-deflate answer matches no offer")
    return DeflateParams(
        server_no_context_takeover=_SERVER_NCT in answer,
        client_no_context_takeover=_CLIENT_NCT in answer,
        server_max_window_bits=answer.get(_SERVER_MWB) or 15,
        client_max_window_bits=answer.get(_CLIENT_MWB) or 15,
    )


# --- Codecs --------------------------------------------------------------------------------


class Inflater:
    """Decompresses the messages of one direction as their frames stream in.

    ``feed`` takes any pieces of the payloads of one message (split anywhere, across any
    number of frames) and returns what they inflate to. ``feed_piece`` returns at most
    ``INFLATE_PIECE`` bytes of it; while ``pending`` is set there is more, which ``resume``
    returns piece by piece (zlib keeps the input not yet inflated): what a reader uses, so a
    highly compressed frame is never inflated whole. ``end_message`` finishes the message
    (RFC 7692 section 7.2.2: append ``00 00 ff ff`` and inflate). ``decompress`` does it all
    for a message held whole.

    Errors, both raised as ProtocolError and leaving the inflater unusable:

    * 1009 (message too big) as soon as the inflated size of the current message exceeds
      ``max_message_size`` (None: no limit). zlib is never asked for more than one byte
      beyond the remaining budget, and never for more than ``INFLATE_PIECE`` at once, so a bomb
      yields at most the limit plus one byte, whatever its ratio, in pieces. Also 1009 for more
      than ``MAX_BFINAL_PER_MESSAGE`` DEFLATE
      streams in one message, like aiohttp's "too many deflate members".
    * 1007 (invalid payload data) for corrupt DEFLATE data. RFC 7692 section 8 only says to
      fail the connection; 1007 is RFC 6455's code for data inconsistent with the message
      type (websockets sends 1002 here; the payload, not the framing, is what is wrong).

    Context takeover: when the sender kept its LZ77 window (no ``*_no_context_takeover`` for
    that side), so do we; otherwise the decoder starts afresh with every message.

    A message may end with a DEFLATE block that has BFINAL set (RFC 7692 section 7.2.3.4). zlib
    calls that the end of the stream and ignores what follows, so the inflater starts a new
    decoder primed (``zdict``) with the last 32 KiB of output: later back-references still
    find the shared window. That is why the output tail is remembered.
    """

    def __init__(
        self, params: DeflateParams, from_client: bool, max_message_size: int | None
    ) -> None:
        self._reset_each_message = params.no_context_takeover(from_client)
        self._limit = max_message_size
        self._decoder = zlib.decompressobj(wbits=_INFLATE_WBITS)
        self._window = bytearray()  # the last output, up to 2 * 32 KiB, for a BFINAL restart
        self._size = 0  # inflated bytes of the current message
        self._fed = False  # whether the current message had any compressed bytes
        self._restarts = 0  # BFINAL blocks in the current message
        self._input = b""  # fed but not inflated yet (zlib's unconsumed tail)
        self._full = False  # the last call filled its piece: zlib may hold more output
        most = (
            INFLATE_PIECE if max_message_size is None else min(INFLATE_PIECE, max_message_size + 1)
        )
        self._most_compressed = max((most - 1) // 1032 - len(_TAIL), 0)

    @property
    def pending(self) -> bool:
        """Whether what was fed has more output to come (``resume``)."""
        return self._full or bool(self._input)

    def feed(self, data: bytes) -> bytes:
        """Inflate one more piece of the current message; return all it yields so far."""
        if not data:
            return b""
        self._fed = True
        return self._inflate(data)

    def feed_piece(self, data: bytes) -> bytes:
        """``feed``, returning only the first piece of output; ``resume`` gives the rest."""
        assert not self.pending, "resume() the previous input first"
        if not data:
            return b""
        self._fed = True
        self._input = data
        return self.resume()

    def resume(self) -> bytes:
        """The next piece of output (at most INFLATE_PIECE bytes) of the input fed."""
        data, self._input = self._input, b""
        out = self._step(data)
        self._input = self._decoder.unconsumed_tail
        if self._decoder.eof:
            # RFC 7692 section 7.2.3.4: a block with BFINAL ends zlib's stream; the rest of the
            # message (at least the 0x00 header of an empty stored block) goes to a new
            # decoder, primed with the window. Rare: a loop test on the common path.
            self._restarts += 1
            if self._restarts > MAX_BFINAL_PER_MESSAGE:
                raise ProtocolError("too many DEFLATE streams in one message", 1009)
            self._input = self._decoder.unused_data
            self._decoder = zlib.decompressobj(wbits=_INFLATE_WBITS, zdict=self._recent())
            self._full = False
        return out

    def end_message(self) -> bytes:
        """Finish the current message: return its last output and get ready for the next.

        A compressed message with an entirely empty payload is taken as empty and leaves the
        decoder alone: the senders we know write ``0x00`` (RFC 7692 section 7.2.3.6), and
        appending the tail to nothing would put the stream in the middle of a stored block.
        The tail's output is small: everything fed before was inflated (``pending`` unset).
        """
        out = self._inflate(_TAIL) if self._fed else b""
        self._finish()
        return out

    def decompress(self, data: bytes) -> bytes:
        """``feed(data) + end_message()`` for a message held whole."""
        out = self.feed(data)
        return out + self.end_message()

    def inflate_message(self, payload_and_tail: bytes) -> bytes:
        """A whole message in one call, for the fast path (``fastpath.relay_deflated``): its
        payload with the tail of RFC 7692 section 7.2.2 already appended (``b""`` for an empty
        payload), between messages, and short enough (``most_compressed``) that its content can
        neither exceed the limit nor fill a piece. What ``decompress`` does, in one zlib call.
        """
        if not payload_and_tail:
            self._finish()
            return b""
        decoder = self._decoder
        try:
            out = decoder.decompress(payload_and_tail)
        except zlib.error as exc:
            raise self.failure(exc) from exc
        limit = self._limit
        if limit is not None and len(out) > limit:  # not with most_compressed's bound
            raise ProtocolError(f"message inflates beyond {limit} bytes", 1009)
        if decoder.eof:
            return self._after_final_block(out)
        # _remember and _finish, inlined: this runs for every small message.
        window = self._window
        if len(out) >= 32768:
            window[:] = out[-32768:]
        else:
            window += out
            if len(window) > 65536:
                del window[:-32768]
        if self._reset_each_message:
            self._decoder = zlib.decompressobj(wbits=_INFLATE_WBITS)
            window.clear()
        return out

    def fast_inflate(self) -> Callable[[bytes], bytes] | DirectInflate:
        """What ``fastpath.relay_deflated`` inflates whole messages with: with context
        takeover, the decoder itself, the window and what to do after a BFINAL block (the fast
        path calls zlib and keeps the window without a Python call per message); without,
        ``inflate_message`` (a fresh decoder per message). Asked anew for each run: a BFINAL
        block replaces the decoder, and the run stops after that message."""
        if self._reset_each_message:
            return self.inflate_message
        return self._decoder, self._window, self._after_final_block

    @staticmethod
    def failure(error: BaseException) -> ProtocolError:
        """The connection's failure for what inflating raised: zlib's error is a 1007 (see the
        class doc); a ProtocolError stays what it is; anything else is a bug, raised."""
        if isinstance(error, zlib.error):
            return ProtocolError(f"invalid permessage-deflate data: {error}", 1007)
        if isinstance(error, ProtocolError):
            return error
        raise error

    def _after_final_block(self, out: bytes) -> bytes:
        """``inflate_message`` past a BFINAL block (section 7.2.3.4): the rest of the input
        goes to a new decoder primed with the window, as in ``resume``."""
        self._size = len(out)
        self._remember(out)
        self._restarts = 1
        self._input = self._decoder.unused_data
        self._decoder = zlib.decompressobj(wbits=_INFLATE_WBITS, zdict=self._recent())
        self._full = False
        pieces = [out]
        while self.pending:
            pieces.append(self.resume())
        self._finish()
        return b"".join(pieces)

    def most_compressed(self) -> int:
        """The longest payload ``inflate_message`` takes: DEFLATE expands at most 1032 times
        (a 258-byte match in 2 bits, RFC 1951), so its content, tail included, stays below both
        the message limit and ``INFLATE_PIECE``."""
        return self._most_compressed

    def _recent(self) -> bytes:
        return bytes(self._window[-32768:])

    def _finish(self) -> None:
        self._size = 0
        self._fed = False
        self._restarts = 0
        if self._reset_each_message:
            self._decoder = zlib.decompressobj(wbits=_INFLATE_WBITS)
            self._window.clear()

    def _inflate(self, data: bytes) -> bytes:
        """All the output of ``data`` at once (for the tail, whose output is small)."""
        self._input = data
        pieces = [self.resume()]
        while self.pending:
            pieces.append(self.resume())
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _step(self, data: bytes) -> bytes:
        limit = self._limit
        # Ask for at most a piece, and for one byte beyond the budget: getting it proves the
        # message too big, and zlib keeps the rest of the input in unconsumed_tail.
        most = INFLATE_PIECE if limit is None else min(INFLATE_PIECE, limit - self._size + 1)
        try:
            out = self._decoder.decompress(data, most)
        except zlib.error as exc:
            raise self.failure(exc) from exc
        self._size += len(out)
        if limit is not None and self._size > limit:
            raise ProtocolError(f"message inflates beyond {limit} bytes", 1009)
        # A full piece: zlib may hold more output even with all the input consumed.
        self._full = len(out) >= most
        self._remember(out)
        return out

    def _remember(self, out: bytes) -> None:
        # Amortised O(len(out)): CPython deletes from the front of a bytearray in O(1).
        window = self._window
        if len(out) >= 32768:
            window[:] = out[-32768:]
            return
        window += out
        if len(window) > 65536:
            del window[:-32768]


class Deflater:
    """The proxy's own compressor for one direction, used once a plugin changed a message.

    ``compress`` takes a whole message and returns its payload per RFC 7692 section 7.2.1:
    deflate, Z_SYNC_FLUSH, strip the trailing ``00 00 ff ff``. It honours that direction's
    ``max_window_bits`` (8 becomes a 9-bit window with Z_RLE, see ``_MIN_ZLIB_WBITS``) and
    ``no_context_takeover`` (a fresh compressor per message; otherwise the window carries on).

    Switching from forwarding the sender's bytes to this compressor mid-connection is safe:
    a fresh compressor only refers back to what it produced itself, which is also the most
    recent part of the receiver's window. Switching back is not, under context takeover: the
    sender's next message may refer to its own version of a message the receiver never saw.
    So a direction that switched stays switched unless it has no_context_takeover.
    """

    def __init__(
        self,
        params: DeflateParams,
        from_client: bool,
        *,
        level: int = zlib.Z_DEFAULT_COMPRESSION,
    ) -> None:
        bits = params.max_window_bits(from_client)
        self._wbits = -max(bits, _MIN_ZLIB_WBITS)
        self._strategy = zlib.Z_RLE if bits < _MIN_ZLIB_WBITS else zlib.Z_DEFAULT_STRATEGY
        self._level = level
        self._reset_each_message = params.no_context_takeover(from_client)
        self._encoder: zlib._Compress | None = None  # created on first use

    def _new_encoder(self) -> zlib._Compress:
        return zlib.compressobj(self._level, zlib.DEFLATED, self._wbits, strategy=self._strategy)

    def compress(self, data: bytes) -> bytes:
        """The compressed payload of one whole message."""
        if not data:
            # RFC 7692 section 7.2.3.6. Also sidesteps zlib emitting nothing for a second
            # sync flush in a row; the window is unchanged either way.
            return _EMPTY_MESSAGE
        encoder = self._encoder or self._new_encoder()
        out = encoder.compress(data) + encoder.flush(zlib.Z_SYNC_FLUSH)
        # Without context takeover the next message needs a fresh window (RFC 7692 7.1.1).
        self._encoder = None if self._reset_each_message else encoder
        # Z_SYNC_FLUSH always ends with an empty stored block, whose LEN/NLEN we strip.
        return out[:-4]

    def compress_piece(self, data: bytes, final: bool) -> bytes:
        """The compressed payload of one frame of a message that goes out in several frames.

        Each piece ends with a sync flush, so the receiver can inflate it as it arrives; the
        pieces concatenated form the message's payload, whose tail is stripped on the last
        (RFC 7692 section 7.2.1 applies to the message, not to each frame).
        """
        encoder = self._encoder or self._new_encoder()
        self._encoder = encoder
        out = encoder.compress(data) + encoder.flush(zlib.Z_SYNC_FLUSH)
        if not final:
            return out
        if self._reset_each_message:
            self._encoder = None
        out = out[:-4]
        return out or _EMPTY_MESSAGE
