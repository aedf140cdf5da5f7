"""How a frame reads in a log line: one format for the ``-v`` log, the log plugin and ``show``.

::

    client -> server TEXT Fz len=5 'hello'
    server -> client CLOSE F len=5 code=1000 'bye'
    client -> server BINARY F len=300 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 …

Flags after the opcode: ``F`` final frame, ``1`` RSV1 set, ``z`` compressed message; ``-``
when none is. Text (and ping/pong payloads) shows as a Python ``repr``, binary as hex, a close
frame as its code and reason; "…" marks a preview that was cut. Opcode names are the
``Opcode`` enum's (RFC 6455 section 5.2): ``CONTINUATION``, not an abbreviation.

Pure functions over plain values, so each caller passes its own record's fields.
"""

from __future__ import annotations

import re

from wsproxy.sansio.frames import Opcode

__all__ = [
    "OPCODE_NAMES",
    "PREVIEW_WIDTH",
    "arrow",
    "decoded_preview",
    "frame_flags",
    "frame_line",
    "frame_line_head",
    "message_counts",
    "negotiated",
    "opcode_name",
    "payload_kind",
    "preview",
    "preview_bytes",
]

OPCODE_NAMES: dict[int, str] = {int(op): op.name for op in Opcode}
PREVIEW_WIDTH = 40  # text characters shown (binary: half as many bytes); --preview-length

_TEXT_LIKE = (Opcode.TEXT, Opcode.PING, Opcode.PONG)


def opcode_name(opcode: int) -> str:
    """``TEXT``, ``CONTINUATION``...; a reserved opcode as hex (``0x3``)."""
    return OPCODE_NAMES.get(opcode, f"0x{opcode:x}")


def arrow(from_client: bool) -> str:
    return "client -> server" if from_client else "server -> client"


def frame_flags(*, fin: bool, rsv: int, compressed: bool) -> str:
    """``F`` fin, ``1`` RSV1 (0x40 of the first byte), ``z`` compressed; ``-`` for none."""
    return _FLAGS[bool(fin), bool(rsv & 0x40), bool(compressed)]


# Every frame line asks: the eight answers, made once.
_FLAGS = {
    (fin, rsv1, compressed): "".join(
        flag for flag, on in (("F", fin), ("1", rsv1), ("z", compressed)) if on
    )
    or "-"
    for fin in (False, True)
    for rsv1 in (False, True)
    for compressed in (False, True)
}


def payload_kind(opcode: int, message_opcode: int) -> int:
    """The opcode a payload reads as: a continuation frame's is its message's."""
    return message_opcode if opcode == Opcode.CONTINUATION else opcode


def preview(data: bytes, kind: int, width: int = PREVIEW_WIDTH, *, partial: bool = False) -> str:
    """A short, printable view of a payload that reads as ``kind`` (see ``payload_kind``).

    ``width`` is the number of text characters shown, half as many bytes of binary in hex;
    0 shows everything. ``partial`` says ``data`` is only the start of the payload (the
    relay's 64-byte preview), so the view is marked as cut even when it fits.
    """
    if kind == Opcode.CLOSE and len(data) >= 2:
        code = int.from_bytes(data[:2], "big")
        return f"code={code} {data[2:].decode('utf-8', 'replace')!r}"
    if kind in _TEXT_LIKE:
        text = data.decode("utf-8", "replace")
        cut = (bool(width) and len(text) > width) or partial
        return repr(text[: width or None] + ("…" if cut else ""))
    half = width // 2 if width else len(data)
    return data[:half].hex(" ") + (" …" if len(data) > half or partial else "")


def decoded_preview(summary: str, width: int = PREVIEW_WIDTH) -> str:
    """A decoder's one-line summary (``socket.io EVENT "chat" ["hi", {…}]``) in place of a
    preview: control characters escaped so it stays one line, cut at ``width`` characters
    (0: whole). It starts with the protocol's name, so it never reads as a raw preview (a
    quoted text or hex)."""
    line = summary.translate(_CONTROLS) if not summary.isprintable() else summary
    return line if not width or len(line) <= width else line[:width] + "…"


_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(32), 127)}


def preview_bytes(width: int) -> int:
    """How much of a payload a ``width``-character preview needs: up to 4 bytes per character
    (UTF-8), never less than the relay's usual 64, so a cut is always seen as one."""
    return max(64, 4 * width) if width else 0


def frame_line(*, from_client: bool, opcode: int, flags: str, length: int, shown: str) -> str:
    """``client -> server TEXT Fz len=5 'hello'``: what every frame (or message) line says."""
    return f"{frame_line_head(from_client, opcode, flags)}{length} {shown}"


def frame_line_head(from_client: bool, opcode: int, flags: str) -> str:
    """``client -> server TEXT Fz len=``: ``frame_line`` up to the length, the same for every
    frame of a direction and kind (a caller that logs many can make it once)."""
    return f"{arrow(from_client)} {opcode_name(opcode)} {flags} len="


# A subprotocol is a header value: some applications smuggle a credential through it (a
# browser cannot set Authorization on a WebSocket), and logs never print secrets.
_SECRET_LIKE = re.compile(r"auth|bearer|token|secret|key|jwt|session|password", re.IGNORECASE)
_SUBPROTOCOL_SHOWN = 64  # longer ones look like data, not a protocol name


def negotiated(subprotocol: str | None, extensions: list[str]) -> str:
    """`` subprotocol=graphql-transport-ws extensions=permessage-deflate; ...`` for the
    "WebSocket open" line: what the upstream chose, "" when nothing was negotiated. A
    subprotocol that looks like a credential shows as its length only."""
    parts = []
    if subprotocol is not None:
        secret = len(subprotocol) > _SUBPROTOCOL_SHOWN or _SECRET_LIKE.search(subprotocol)
        shown = f"<hidden, {len(subprotocol)} characters>" if secret else subprotocol
        parts.append(f" subprotocol={shown}")
    if extensions:
        parts.append(f" extensions={', '.join(extensions)}")
    return "".join(parts)


def message_counts(from_client: int, from_server: int) -> str:
    """``data messages: 3 from the client, 2 from the server``: the data messages each peer
    sent (those a plugin dropped included). Worded without the frame lines' arrows, so a
    search for ``client -> server`` finds frames only."""
    return f"data messages: {from_client} from the client, {from_server} from the server"
