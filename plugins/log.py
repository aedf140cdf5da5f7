"""log: one readable line per WebSocket message (or per frame), plus a line at open and close.

Options (``--set NAME=VALUE``)::

    log_frames=true       one line per frame, data and control, instead of one per message
    log_json=true         JSON lines instead of text (one object per line)
    log_file=PATH         append to PATH (mode 0600: it holds traffic) instead of stderr
    log_max_preview=N     text characters shown (binary: N/2 bytes, in hex); default 80, 0 = all

Examples::

    wsproxy -s log
    wsproxy -s log --set log_json=true --set log_file=ws.jsonl
    wsproxy -s log --set log_frames=true --set log_max_preview=200

Text lines follow the proxy's own ``-v`` frame lines (``F`` fin, ``1`` rsv1, ``z`` compressed)::

    12:00:01 [c1] open ws://example.com/chat from 127.0.0.1:50514 subprotocol=chat ...
    12:00:01 [c1] client -> server TEXT z len=5 'hello'
    12:00:01 [c1] server -> client TEXT z len=7 'HELLO!!' (modified by rewrite)
    12:00:02 [c1] closed by client: client sent 1000 'bye', server sent 1000 ''; client 1 msg ...

Colours (ANSI) are used only when the output is a terminal and ``NO_COLOR`` is unset or empty
(https://no-color.org).

JSON lines carry ``time`` (Unix seconds), ``event`` (open, message, frame, close, error),
``conn`` (the connection id) and, for messages and frames: ``direction`` (client or server:
who sent it), ``opcode`` (text, binary, continuation, close, ping, pong), ``length`` (bytes,
decompressed), ``text`` or ``base64`` (the payload, cut to ``log_max_preview``; ``truncated``
says so), ``compressed``, ``verdict`` (``forward`` or ``modified``) and ``by`` (the plugin that
changed it); frames add ``fin`` and ``rsv1``, fragmented messages ``fragments``.

What the log sees: each message as it leaves the plugins listed before ``log`` (put ``-s log``
last to see their changes). The chain stops at the first plugin that drops a message, so a
message dropped by an earlier plugin is not logged here (the proxy's own log says who dropped
it). Injected messages do not pass through the chain either.

Cost: logging messages makes the proxy reassemble every message before forwarding it. Per-frame
logging costs more: with frame hooks the relay decompresses and recompresses every compressed
frame. So the plugin asks the chain only for the hook its options need: ``message`` normally,
``frame`` with ``log_frames=true`` (the chain reads a plugin's hooks when it is built, after
``configure``; the unused hook reads as ``None``).

Writes are synchronous (a blocked terminal or disk would stall the proxy either way), and the
lines of one turn of the event loop are written and flushed together at its end rather than
one by one: the lines of one read reach the file in one system call, still within the turn
that made them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from wsproxy.capture.files import append_private
from wsproxy.logformat import (
    arrow,
    frame_flags,
    frame_line,
    opcode_name,
    payload_kind,
    preview,
)
from wsproxy.model import Flow, FrameEvent, Message
from wsproxy.plugins import Option
from wsproxy.sansio.frames import Opcode
from wsproxy.sansio.targets import host_port

# ANSI SGR colours (ECMA-48 8.3.117): who sent what, at a glance.
_COLOURS = {"client": "\x1b[32m", "server": "\x1b[36m", "event": "\x1b[33m", "error": "\x1b[31m"}
_RESET = "\x1b[0m"
# The start of a text message's line, by its direction (``frame_line``'s words).
# The start of a text message's line, up to its length, by direction and compression: the
# heads ``frame_line`` makes, made once.
_TEXT_HEADS = {
    from_client: (
        f"{arrow(from_client)} {opcode_name(Opcode.TEXT)} - len=",
        f"{arrow(from_client)} {opcode_name(Opcode.TEXT)} z len=",
    )
    for from_client in (False, True)
}


class Log:
    name = "log"
    options = [
        Option("log_frames", bool, False, "log every frame instead of every message"),
        Option("log_json", bool, False, "write JSON lines instead of text"),
        Option("log_file", str, "", "append the log to this file instead of stderr"),
        Option("log_max_preview", int, 80, "payload characters shown per line (0: all)"),
    ]

    def __init__(self) -> None:
        self.log_frames = False
        self.log_json = False
        self.log_file = ""
        self.max_preview = 80
        self._file: TextIO | None = None
        # The stream this turn's lines go to, and those lines: written and flushed together
        # at the end of the turn of the event loop.
        self._unflushed: TextIO | None = None
        self._lines: list[str] = []
        self._tty: tuple[TextIO | None, bool] = (None, False)  # a stream and its isatty()
        self._second = -1  # the time string of _text, made once a second
        self._stamp = ""

    def configure(self, options: object) -> None:
        defaults = {option.name: option.default for option in self.options}

        def get(name: str) -> Any:
            return getattr(options, name, defaults[name])

        self.log_frames = bool(get("log_frames"))
        self.log_json = bool(get("log_json"))
        self.max_preview = max(0, int(get("log_max_preview")))
        path = str(get("log_file") or "")
        if path != self.log_file:
            self.done()
            self.log_file = path
            if path:
                self._file = append_private(path)  # mode 0600: the log holds traffic

    def done(self) -> None:
        self._flush()
        if self._file is not None:
            self._file.close()
            self._file = None
        self.log_file = ""  # a later configure opens it again

    # -- the hooks the chain sees -------------------------------------------------------------

    @property
    def message(self) -> Callable[[Flow, Message], None] | None:
        return None if self.log_frames else self._message

    @property
    def frame(self) -> Callable[[Flow, FrameEvent], None] | None:
        return self._frame if self.log_frames else None

    def opened(self, flow: Flow) -> None:
        client = host_port(*flow.client_address)
        if self.log_json:
            self._json(
                "open",
                flow,
                url=flow.request.url,
                client=client,
                subprotocol=flow.subprotocol,
                extensions=flow.extensions,
            )
            return
        line = f"open {flow.request.url} from {client}"
        if flow.subprotocol:
            line += f" subprotocol={flow.subprotocol}"
        if flow.extensions:
            line += f" extensions={', '.join(flow.extensions)}"
        self._text(flow, line, "event")

    def closed(self, flow: Flow) -> None:
        sides = (
            ("client", flow.client_close, flow.client_counts),
            ("server", flow.server_close, flow.server_counts),
        )
        if self.log_json:
            fields = {
                side: {
                    "code": info.code,
                    "reason": info.reason,
                    "close_received": info.received_close,
                    "messages": counts.messages,
                    "frames": counts.frames,
                    "bytes": counts.bytes,
                }
                for side, info, counts in sides
            }
            self._json("close", flow, closed_by=flow.closed_by, error=flow.error, **fields)
            return
        codes = ", ".join(
            f"{side} sent {info.code} {info.reason!r}"
            if info.received_close
            else f"{side} sent no close frame"
            for side, info, _ in sides
        )
        counts = ", ".join(
            f"{side} {_plural(c.messages, 'msg')} {_plural(c.frames, 'frame')} {c.bytes} B"
            for side, _, c in sides
        )
        self._text(flow, f"closed by {flow.closed_by or '?'}: {codes}; {counts}", "event")

    def error(self, flow: Flow, error: str) -> None:
        if self.log_json:
            self._json("error", flow, error=error)
        else:
            self._text(flow, f"error: {error}", "error")

    def _message(self, flow: Flow, message: Message) -> None:
        content = message.content
        if self.log_json:
            fields = self._payload_fields(message.opcode, content)
            self._json(
                "message",
                flow,
                direction=message.direction,
                opcode=opcode_name(message.opcode).lower(),
                length=len(content),
                **fields,
                compressed=message.compressed,
                fragments=len(message.fragment_sizes),
                verdict="modified" if message.modified else "forward",
                by=message.modified_by,
            )
            return
        opcode = message.opcode
        fragments = len(message.fragment_sizes)
        if fragments == 1 and opcode == Opcode.TEXT:
            # The usual line, made here: what frame_line and preview make of it.
            text = content.decode("utf-8", "replace")
            width = self.max_preview
            if width and len(text) > width:
                text = text[:width] + "…"
            head = _TEXT_HEADS[message.from_client][bool(message.compressed)]
            stream = self._file if self._file is not None else sys.stderr
            known, tty = self._tty
            if stream is self._unflushed and stream is known and not tty:
                # And what _text and _write do with it, when this turn's lines already go to
                # this stream, uncoloured (this runs for every message): stamped with the
                # time the shell handed the message to the hooks (one clock read, not two).
                now = int(message.timestamp or time.time())
                if now != self._second:
                    self._second = now
                    self._stamp = time.strftime("%H:%M:%S", time.localtime(now))
                line = f"{self._stamp} [{flow.id}] {head}{len(content)} {text!r}"
                if message.modified_by is not None:
                    line += f" (modified by {message.modified_by})"
                self._lines.append(line)
                return
            line = f"{head}{len(content)} {text!r}"
        else:
            flags = "z" if message.compressed else "-"
            if fragments > 1:
                flags += f" frames={fragments}"
            line = frame_line(
                from_client=message.from_client,
                opcode=opcode,
                flags=flags,
                length=len(content),
                shown=preview(content, opcode, self.max_preview),
            )
        if message.modified_by is not None:
            line += f" (modified by {message.modified_by})"
        self._text(flow, line, "client" if message.from_client else "server")

    def _frame(self, flow: Flow, frame: FrameEvent) -> None:
        payload = frame.payload
        kind = payload_kind(frame.opcode, frame.message_opcode)
        if self.log_json:
            self._json(
                "frame",
                flow,
                direction=frame.direction,
                opcode=opcode_name(frame.opcode).lower(),
                length=len(payload),
                **self._payload_fields(kind, payload),
                compressed=frame.compressed,
                fin=frame.fin,
                rsv1=bool(frame.rsv & 0x40),
                verdict="modified" if frame.modified else "forward",
                by=frame.modified_by,
            )
            return
        line = frame_line(
            from_client=frame.from_client,
            opcode=frame.opcode,
            flags=frame_flags(fin=frame.fin, rsv=frame.rsv, compressed=frame.compressed),
            length=len(payload),
            shown=preview(payload, kind, self.max_preview),
        )
        if frame.modified:
            line += f" (modified by {frame.modified_by})"
        self._text(flow, line, frame.direction)

    # -- formatting ---------------------------------------------------------------------------

    def _payload_fields(self, opcode: int, data: bytes) -> dict[str, Any]:
        width = self.max_preview
        if opcode == Opcode.TEXT:
            text = data.decode("utf-8", "replace")
            truncated = bool(width) and len(text) > width
            return {"text": text[:width] if truncated else text, "truncated": truncated}
        truncated = bool(width) and len(data) > width
        shown = data[:width] if truncated else data
        return {"base64": base64.b64encode(shown).decode("ascii"), "truncated": truncated}

    def _json(self, event: str, flow: Flow, **fields: Any) -> None:
        record = {"time": round(time.time(), 6), "event": event, "conn": flow.id, **fields}
        self._write(json.dumps(record, ensure_ascii=False))

    def _text(self, flow: Flow, line: str, colour: str) -> None:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._stamp = time.strftime("%H:%M:%S", time.localtime(now))
        text = f"{self._stamp} [{flow.id}] {line}"
        # sys.stderr is looked up on each line, so a redirected stderr is honoured.
        stream = self._file if self._file is not None else sys.stderr
        if self._colour(stream):
            text = f"{_COLOURS[colour]}{text}{_RESET}"
        self._write(text, stream)

    def _colour(self, stream: TextIO) -> bool:
        """ANSI colours only on a terminal, and never with NO_COLOR set (no-color.org)."""
        known, tty = self._tty
        if stream is not known:  # asked once per stream, not per line
            isatty = getattr(stream, "isatty", None)
            tty = bool(isatty and isatty())
            self._tty = (stream, tty)
        return tty and not os.environ.get("NO_COLOR")

    def _write(self, line: str, stream: TextIO | None = None) -> None:
        if stream is None:
            stream = self._file if self._file is not None else sys.stderr
        if self._unflushed is not stream:
            if self._unflushed is not None:
                self._flush()  # stderr was redirected: the old stream's lines go out first
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (a test, a thread): written at once
                stream.write(line + "\n")
                stream.flush()
                return
            self._unflushed = stream
            loop.call_soon(self._flush)
        self._lines.append(line)

    def _flush(self) -> None:
        """The lines of this turn of the loop, in one write and one flush."""
        stream, self._unflushed = self._unflushed, None
        lines, self._lines = self._lines, []
        if stream is not None and not stream.closed and lines:
            lines.append("")
            stream.write("\n".join(lines))
            stream.flush()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


plugins = [Log()]
