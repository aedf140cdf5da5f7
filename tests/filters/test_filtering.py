"""The wiring's views and selections (wsproxy.filtering), without a proxy."""

from __future__ import annotations

from wsproxy.decoders.base import Hints
from wsproxy.filtering import (
    FlowView,
    MessageView,
    RecordView,
    Selection,
    UrlView,
    decode_for_filter,
    select,
)
from wsproxy.filters import Subject, compile_filter
from wsproxy.model import Flow, HandshakeRequest, HandshakeResponse, Message
from wsproxy.sansio.http11 import Headers


def flow() -> Flow:
    headers = Headers([("Host", "chat.test"), ("Origin", "https://chat.test")])
    return Flow("c1", ("127.0.0.1", 5), HandshakeRequest("ws", "chat.test", 80, "/chat", headers))


def piece(payload: bytes, *, client: bool = True) -> RecordView:
    return RecordView(from_client=client, opcode=1, message_opcode=1, payload=payload, length=9)


def test_flow_view_before_and_after_the_response() -> None:
    f = flow()
    view = FlowView(f)
    assert (view.url, view.host, view.method, view.is_websocket) == (
        "ws://chat.test/chat",
        "chat.test",
        "GET",
        True,
    )
    assert view.status is None and view.response_headers is None
    assert compile_filter("~hq '^Origin: https://chat'").matches(Subject(view))
    f.response = HandshakeResponse(101, "Switching Protocols", Headers([("X-A", "1")]))
    assert view.status == 101 and compile_filter("~hs 'X-A: 1' & ~c 101").matches(Subject(view))


def test_message_view_reads_the_message_as_it_is() -> None:
    message = Message(False, 1, b"hello")
    view = MessageView(message)
    assert (view.from_client, view.opcode, view.length, view.payload) == (False, 1, 5, b"hello")
    assert view.decoded() is None  # no hints: nothing decodes
    message.content = b"changed!"
    assert compile_filter("~bs changed & ~len =8").matches(Subject(None, view))


def test_url_view() -> None:
    assert UrlView("wss://a.test:8443/x").host == "a.test"
    assert UrlView("http://[::1/").host == ""  # a damaged URL: no host, no exception


def test_record_view_length_in_the_clear() -> None:
    plain = RecordView(from_client=True, opcode=1, message_opcode=1, payload=b"ab", length=2)
    squeezed = RecordView(
        from_client=True, opcode=1, message_opcode=1, payload=b"abcdef", length=4, compressed=True
    )
    assert (plain.length, squeezed.length) == (2, 6)


def test_decoding_hook_is_none_until_the_decoders_land() -> None:
    assert decode_for_filter(Hints(), {}, b"42[]", text=True, from_client=True) is None
    view = RecordView(
        from_client=True,
        opcode=1,
        message_opcode=1,
        payload=b"42",
        length=2,
        hints=Hints(),
        state={},
    )
    assert view.decoded() is None and view.decoded() is None


def test_selection_verdicts() -> None:
    assert select(compile_filter("~u chat"), flow()).verdict is True
    assert select(compile_filter("~u nothing & ~b x"), flow()).verdict is False
    chosen = select(compile_filter("~u chat & ~b keep"), flow())
    assert chosen.verdict is None
    assert chosen.keeps(piece(b"keep"), offset=0, more=False, injected=False)
    assert not chosen.keeps(piece(b"drop"), offset=0, more=False, injected=False)


def test_a_frame_in_pieces_follows_its_first_piece() -> None:
    chosen = Selection(compile_filter("~b keep"), FlowView(flow()), Hints())
    assert chosen.keeps(piece(b"keep..."), offset=0, more=True, injected=False)
    assert chosen.keeps(piece(b"no match here"), offset=7, more=True, injected=False)
    # the other direction's frame is its own
    assert not chosen.keeps(piece(b"x", client=False), offset=0, more=False, injected=False)
    assert chosen.keeps(piece(b"nor here"), offset=20, more=False, injected=False)
    assert not chosen.keeps(piece(b"next frame"), offset=0, more=False, injected=False)
    assert not chosen.keeps(piece(b"drop"), offset=0, more=True, injected=False)
    assert not chosen.keeps(piece(b"keep (a later piece)"), offset=4, more=False, injected=False)


def test_hints_only_when_decoding_is_asked() -> None:
    f = flow()
    assert select(compile_filter("~b x"), f).hints is None
    hints = select(compile_filter("~proto socketio"), f).hints
    assert hints == Hints(None, "/chat")
