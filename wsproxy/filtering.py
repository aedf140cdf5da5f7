"""The filter language (``wsproxy.filters``) wired to what the proxy, captures and plugins have.

``wsproxy.filters`` is pure and knows nothing of ``Flow`` or records; the views here adapt
them to its ``FlowFacts``/``MessageFacts`` without copying: the proxy's ``Flow``, a relay
``FrameRecord``, a plugin's ``Message``, a capture's ``Connection``/``Frame``/``Http``.

``decode_for_filter`` is the one place where decoded values (``~proto ~event ~op ~topic
~json``) come from; every view calls it lazily, and only when the expression asks
(``Filter.needs_decoding``), so a filter without those operators costs no decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from wsproxy.decoders.base import Decoded, Hints
from wsproxy.decoders.connection import ConnectionDecoding
from wsproxy.exceptions import ConfigError
from wsproxy.filters import (
    Filter,
    FilterError,
    FlowFacts,
    compile_filter,
    compile_url_filter,
)
from wsproxy.model import Flow, Message
from wsproxy.sansio.records import FrameRecord

__all__ = [
    "DecodeState",
    "FlowView",
    "MessageView",
    "RecordView",
    "Selection",
    "UrlView",
    "decode_for_filter",
    "hints_of",
    "option_filter",
    "select",
]

DecodeState = dict[str, Any]  # one connection's decoding state (its Decoder, once chosen)


def decode_for_filter(
    hints: Hints, state: DecodeState, payload: bytes, *, text: bool, from_client: bool
) -> Decoded | None:
    """The message ``payload`` of one connection as its protocol sees it, for a filter.

    THE HOOK for the decoders (issue 14, item 1): ``hints`` are the connection's subprotocol
    and request path, ``state`` a dict kept per connection for as long as it lives (a
    ``Decoder`` chosen by ``wsproxy.decoders.registry`` goes in it, so protocols spread over
    several messages keep their state), called once per message a filter asks about, in the
    order they came. The decoder is chosen as everywhere else (``ConnectionDecoding``: a
    claim by subprotocol or URL, else sniffing of the first data messages).
    """
    codec = state.get("codec")
    if codec is None:
        codec = state["codec"] = ConnectionDecoding(hints)
    assert isinstance(codec, ConnectionDecoding)
    return codec.decode(payload, text=text, from_client=from_client)


def hints_of(subprotocol: str | None, url: str) -> Hints:
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Hints(subprotocol=subprotocol, path=path)


def option_filter(where: str, text: str, *, url_regex: bool = False) -> Filter:
    """``text`` compiled, or ConfigError naming ``where`` (a flag, a plugin option) and the
    column: the one-line error a bad command line gets (status 2)."""
    try:
        return compile_url_filter(text) if url_regex else compile_filter(text)
    except FilterError as error:
        raise ConfigError(f"{where}: {error}") from None


class FlowView:
    """A proxied WebSocket's ``Flow`` as ``FlowFacts`` (the response once it came)."""

    __slots__ = ("flow",)

    is_websocket = True
    method = "GET"

    def __init__(self, flow: Flow) -> None:
        self.flow = flow

    @property
    def url(self) -> str:
        return self.flow.request.url

    @property
    def host(self) -> str:
        return self.flow.request.host

    @property
    def status(self) -> int | None:
        response = self.flow.response
        return None if response is None else response.status

    @property
    def request_headers(self) -> Sequence[tuple[str, str]]:
        return self.flow.request.headers.items()

    @property
    def response_headers(self) -> Sequence[tuple[str, str]] | None:
        response = self.flow.response
        return None if response is None else response.headers.items()


class UrlView:
    """A flow known by its URL and heads (a capture's records, a plain HTTP exchange)."""

    __slots__ = (
        "host",
        "is_websocket",
        "method",
        "request_headers",
        "response_headers",
        "status",
        "url",
    )

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        status: int | None = None,
        request_headers: Sequence[tuple[str, str]] = (),
        response_headers: Sequence[tuple[str, str]] | None = None,
        is_websocket: bool = True,
    ) -> None:
        self.url = url
        try:
            self.host = urlsplit(url).hostname or ""
        except ValueError:  # a damaged capture's URL: no host to match
            self.host = ""
        self.method = method
        self.status = status
        self.request_headers = request_headers
        self.response_headers = response_headers
        self.is_websocket = is_websocket


def _decode_once(
    cache: list[Decoded | None],
    hints: Hints | None,
    state: DecodeState | None,
    payload: bytes,
    *,
    text: bool,
    from_client: bool,
) -> Decoded | None:
    """``decoded()`` of the views: through ``decode_for_filter``, at most once per message."""
    if not cache:
        value = None
        if hints is not None and state is not None:
            value = decode_for_filter(hints, state, payload, text=text, from_client=from_client)
        cache.append(value)
    return cache[0]


class RecordView:
    """A relay ``FrameRecord`` (the ``-v`` log, a capture) or a capture's ``Frame`` as
    ``MessageFacts``: one frame, its payload as recorded (in the clear).

    ``length`` is the payload's size in the clear: the frame's length on the wire when it is
    not compressed (known even when only a preview was kept), else the decompressed payload's
    size (``~len`` asks for whole payloads; a compressed frame recorded in pieces counts its
    first piece).
    """

    __slots__ = (
        "_decoded",
        "from_client",
        "hints",
        "length",
        "message_opcode",
        "opcode",
        "payload",
        "state",
    )

    def __init__(
        self,
        *,
        from_client: bool,
        opcode: int,
        message_opcode: int,
        payload: bytes,
        length: int,
        compressed: bool = False,
        hints: Hints | None = None,
        state: DecodeState | None = None,
    ) -> None:
        self.from_client = from_client
        self.opcode = opcode
        self.message_opcode = message_opcode
        self.payload = payload
        self.length = len(payload) if compressed else length
        self.hints = hints
        self.state = state
        self._decoded: list[Decoded | None] = []

    def decoded(self) -> Decoded | None:
        text = self.message_opcode == 1
        return _decode_once(
            self._decoded,
            self.hints,
            self.state,
            self.payload,
            text=text,
            from_client=self.from_client,
        )

    @classmethod
    def of(
        cls, record: FrameRecord, hints: Hints | None = None, state: DecodeState | None = None
    ) -> RecordView:
        return cls(
            from_client=record.side.value == "client",
            opcode=record.opcode,
            message_opcode=record.message_opcode,
            payload=record.payload,
            length=record.length,
            compressed=record.compressed,
            hints=hints,
            state=state,
        )


class MessageView:
    """A plugin's ``Message`` as ``MessageFacts`` (its content as it is now)."""

    __slots__ = ("_decoded", "hints", "message", "state")

    def __init__(
        self, message: Message, hints: Hints | None = None, state: DecodeState | None = None
    ) -> None:
        self.message = message
        self.hints = hints
        self.state = state
        self._decoded: list[Decoded | None] = []

    def decoded(self) -> Decoded | None:
        message = self.message
        return _decode_once(
            self._decoded,
            self.hints,
            self.state,
            message.content,
            text=message.is_text,
            from_client=message.from_client,
        )

    @property
    def from_client(self) -> bool:
        return self.message.from_client

    @property
    def opcode(self) -> int:
        return self.message.opcode

    @property
    def message_opcode(self) -> int:
        return self.message.opcode

    @property
    def payload(self) -> bytes:
        return self.message.content

    @property
    def length(self) -> int:
        return len(self.message.content)


class Selection:
    """One flow's answer to a filter: every frame (``verdict`` True), none (False), or
    (None) the frames whose message the filter matches, asked frame by frame.

    A frame recorded in pieces (captures, over 256 KiB) is decided by its first piece, so a
    capture never holds half a frame; a message in several frames is asked frame by frame
    (the capture writes each before it is forwarded, the whole message is never there).
    """

    __slots__ = ("_open", "bound", "hints", "state", "verdict")

    def __init__(self, filter: Filter, flow: FlowFacts, hints: Hints) -> None:
        self.bound = filter.bind(flow)
        self.verdict = self.bound.verdict
        # Decoding only when the expression asks for it (no cost per frame otherwise).
        self.hints = hints if filter.needs_decoding else None
        self.state: DecodeState = {}
        self._open: dict[tuple[bool, bool], bool] = {}  # a frame in pieces: its decision

    def keeps(self, view: RecordView, *, offset: int, more: bool, injected: bool) -> bool:
        if self.verdict is not None:
            return self.verdict
        key = (view.from_client, injected)
        if offset and key in self._open:
            keep = self._open[key]
        else:
            view.hints, view.state = self.hints, self.state
            keep = self.bound.matches(view)
        if more:
            self._open[key] = keep
        else:
            self._open.pop(key, None)
        return keep

    def keeps_record(self, record: FrameRecord) -> bool:
        if self.verdict is not None:
            return self.verdict
        return self.keeps(
            RecordView.of(record),
            offset=record.offset,
            more=record.more,
            injected=record.verdict == "injected",
        )


def select(filter: Filter, flow: Flow) -> Selection:
    """``filter``'s selection of a proxied flow's frames."""
    return Selection(filter, FlowView(flow), Hints(flow.subprotocol, flow.request.path))
