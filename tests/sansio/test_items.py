"""items.py: what plugins read and change, and how a change or a drop is attributed."""

from __future__ import annotations

import pytest

from wsproxy.sansio.frames import RSV1, Opcode
from wsproxy.sansio.items import FrameEvent, Message, whole_compressed_message, whole_message

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG


def test_a_message_as_built() -> None:
    message = Message(True, TEXT, "héllo".encode())
    assert (message.direction, message.is_text, message.text) == ("client", True, "héllo")
    assert message.fragment_sizes == [6] and message.wire_frames == []
    assert (message.timestamp, message.injected, message.compressed) == (0.0, False, False)
    assert not (message.modified or message.dropped)
    assert repr(message) == "Message(client, TEXT, b'h\\xc3\\xa9llo')"
    server = Message(False, BINARY, b"\x00", fragment_sizes=[0, 1], timestamp=2.5, injected=True)
    assert (server.direction, server.is_text, server.fragment_sizes) == ("server", False, [0, 1])
    assert (server.timestamp, server.injected) == (2.5, True)


@pytest.mark.parametrize(("from_client", "opcode"), [(True, TEXT), (False, BINARY)])
def test_a_whole_message_is_what_the_constructor_builds(from_client: bool, opcode: int) -> None:
    """``whole_message`` writes ``__init__`` out: every slot as the constructor sets it."""
    content, frame = b"hello", b"\x81\x05hello"
    built = Message(from_client, opcode, content, wire_frames=[(True, 0, b"")])
    built._unchanged_frame = frame
    whole = whole_message(from_client, opcode, content, frame)
    slots = [*Message.__slots__, "_actor", "dropped_by", "modified_by"]
    assert {name: getattr(whole, name) for name in slots} == {
        name: getattr(built, name) for name in slots
    }
    assert whole.fragment_sizes is not built.fragment_sizes  # each message its own lists
    whole.text = "changed"
    assert (whole.modified_by, whole.original_content) == ("plugin", content)


@pytest.mark.parametrize(("from_client", "opcode"), [(True, TEXT), (False, BINARY)])
def test_a_whole_compressed_message_is_what_the_constructor_builds(
    from_client: bool, opcode: int
) -> None:
    content, wire, frame = b"hello", b"\xcaH\xcd\xc9\xc9\x07\x00", b"\xc1\x07..."
    built = Message(from_client, opcode, content, compressed=True, wire_frames=[(True, RSV1, wire)])
    built._unchanged_frame = frame
    whole = whole_compressed_message(from_client, opcode, content, wire, frame)
    slots = [*Message.__slots__, "_actor", "dropped_by", "modified_by"]
    assert {name: getattr(whole, name) for name in slots} == {
        name: getattr(built, name) for name in slots
    }
    whole.text = "changed"
    assert (whole.modified_by, whole.content, whole.original_content) == (
        "plugin",
        b"changed",
        content,
    )


def test_setting_the_same_content_changes_nothing() -> None:
    message = Message(False, BINARY, b"abc")
    message.content = b"abc"
    message.text = "abc"
    message.opcode = BINARY
    assert not message.modified


def test_a_change_is_attributed_to_the_plugin_running_and_the_original_kept() -> None:
    message = Message(True, TEXT, b"hi")
    message._actor = "first"
    message.text = "hé"
    message._actor = "second"
    message.content = b"ho"
    assert message.modified_by == "first"  # the first to change it
    assert message.content == b"ho"
    assert (message.original_content, message.original_opcode) == (b"hi", TEXT)
    message.content = "str is UTF-8"
    assert message.content == b"str is UTF-8"


def test_without_an_actor_the_change_is_the_plugins() -> None:
    message = Message(True, BINARY, b"x")
    message.opcode = TEXT
    assert (message.opcode, message.modified_by) == (TEXT, "plugin")
    message.drop()
    assert (message.dropped, message.dropped_by) == (True, "plugin")


@pytest.mark.parametrize("opcode", [CONT, CLOSE, PING, PONG, 3])
def test_a_message_is_text_or_binary(opcode: int) -> None:
    message = Message(True, TEXT, b"x")
    with pytest.raises(ValueError, match="TEXT"):
        message.opcode = opcode
    assert (message.opcode, message.modified) == (TEXT, False)


def test_text_of_invalid_utf8_is_replaced() -> None:
    assert Message(False, BINARY, b"\xff").text == "\ufffd"


def test_drop_names_the_plugin() -> None:
    message = Message(True, TEXT, b"x")
    message._actor = "block"
    message.drop()
    assert (message.dropped_by, message.modified) == ("block", False)


def test_a_frame_event_as_built() -> None:
    frame = FrameEvent(False, CONT, b"lo", fin=True, rsv=0, message_opcode=TEXT)
    assert (frame.direction, frame.is_control, frame.message_opcode) == ("server", False, TEXT)
    assert (frame.wire, frame.original_payload, frame.timestamp) == (b"lo", b"lo", 0.0)
    assert repr(frame) == "FrameEvent(server, CONTINUATION, fin=True, b'lo')"
    ping = FrameEvent(True, PING, b"p")
    assert (ping.direction, ping.is_control, ping.message_opcode) == ("client", True, PING)
    compressed = FrameEvent(True, TEXT, b"Hello", compressed=True, wire=b"\xf2H")
    assert (compressed.payload, compressed.wire) == (b"Hello", b"\xf2H")


def test_a_frames_payload_change_and_drop() -> None:
    frame = FrameEvent(True, PING, b"p")
    frame.payload = b"p"
    assert not frame.modified
    frame._actor = "edit"
    frame.payload = "q" * 125
    assert (frame.payload, frame.modified_by, frame.original_payload) == (b"q" * 125, "edit", b"p")
    with pytest.raises(ValueError, match="at most 125"):
        frame.payload = bytes(126)
    frame.drop()
    assert frame.dropped_by == "edit"


def test_a_data_frame_may_carry_more_than_125_bytes() -> None:
    frame = FrameEvent(False, BINARY, b"")
    frame.payload = bytes(1000)
    assert len(frame.payload) == 1000 and frame.modified_by == "plugin"


def test_a_close_frame_is_neither_changed_nor_dropped() -> None:
    frame = FrameEvent(True, CLOSE, b"\x03\xe8")
    with pytest.raises(ValueError, match="cannot be changed"):
        frame.payload = b"\x03\xe8"  # not even to the same bytes
    with pytest.raises(ValueError, match="cannot be dropped"):
        frame.drop()
    assert not (frame.modified or frame.dropped)


def test_decoded_is_lazy_cached_and_encodes_back() -> None:
    from wsproxy.decoders.base import Hints
    from wsproxy.decoders.connection import ConnectionDecoding

    message = Message(True, Opcode.TEXT, b'42["chat","hi"]')
    assert message.decoded is None  # no decoder given: nothing to decode with
    with pytest.raises(ValueError, match="no decoder"):
        message.decoded = None
    codec = ConnectionDecoding(Hints(path="/socket.io/?EIO=4"))
    message = Message(True, Opcode.TEXT, b'42["chat","hi"]')
    message._codec = codec
    decoded = message.decoded
    assert decoded.event == "chat" and message.decoded is decoded  # decoded once
    decoded.value = ["bye"]
    message.decoded = decoded
    assert message.content == b'42["chat","bye"]' and message.modified
    assert message.decoded is decoded
    message.text = '42["chat","again"]'
    assert message.decoded.value == ["again"]  # new content, decoded anew
    decoded.event = None
    with pytest.raises(ValueError, match="socketio EVENT message cannot be encoded"):
        message.decoded = decoded
