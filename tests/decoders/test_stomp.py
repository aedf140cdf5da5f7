"""STOMP frames as the 1.2 specification writes them (its examples, by hand), fed whole,
several to a message, and split across messages; garbage is "not STOMP"."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproxy.decoders.base import Hints
from wsproxy.decoders.preview import REDACTED
from wsproxy.decoders.stomp import MAX_PENDING, StompDecoder, StompFactory

FACTORY = StompFactory()

CONNECT = b"CONNECT\naccept-version:1.2\nhost:stomp.github.org\nlogin:bob\npasscode:hunter2\n\n\0"
CONNECTED = b"CONNECTED\r\nversion:1.2\r\nheart-beat:0,0\r\n\r\n\0"
SEND = b"SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\0"
MESSAGE = (
    b"MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\ncontent-length:5\n\n"
    b"a\0b\0c\0\n\n"
)
SUBSCRIBE = b"SUBSCRIBE\nid:0\ndestination:/queue/foo\nack:client\n\n\0"
ERROR = b"ERROR\nreceipt-id:message-12345\ncontent-type:text/plain\nmessage:malformed\n\nbad\0"


def new(subprotocol: str | None = "v12.stomp") -> StompDecoder:
    decoder = FACTORY.new(Hints(subprotocol=subprotocol))
    assert isinstance(decoder, StompDecoder)
    return decoder


def test_claims_its_three_subprotocols_only() -> None:
    for name in ("v10.stomp", "v11.stomp", "v12.stomp", "V12.STOMP"):
        assert FACTORY.claims(Hints(subprotocol=name))
    assert not FACTORY.claims(Hints(subprotocol="mqtt"))
    assert not FACTORY.claims(Hints())
    assert new("v10.stomp").version == "1.0" and new(None).version == "1.2"


@pytest.mark.parametrize("frame", [CONNECT, CONNECTED, SEND, MESSAGE, SUBSCRIBE, ERROR])
def test_sniffs_whole_frames(frame: bytes) -> None:
    assert FACTORY.sniff(frame, text=True)
    assert FACTORY.sniff(frame, text=False)


@pytest.mark.parametrize(
    "payload",
    [b"", b"\n", b'{"a": 1}', b"SEND\ndestination:/a\n\nno NUL", b"HELLO\n\n\0", b"\x00\x01\x02",
     b"SEND\nno colon\n\n\0", b"SEND\ncontent-length:x\n\n\0"],
)  # fmt: skip
def test_does_not_sniff_what_is_not_stomp(payload: bytes) -> None:
    assert not FACTORY.sniff(payload, text=True)


def test_connect_names_version_and_host_and_never_the_passcode() -> None:
    d = new().decode(CONNECT, text=True, from_client=True)
    assert d is not None
    assert (d.protocol, d.kind, d.topic) == ("stomp", "CONNECT", None)
    assert d.summary == "stomp CONNECT accept-version=1.2 host=stomp.github.org"
    assert ["passcode", REDACTED] in d.fields["headers"]
    assert "hunter2" not in repr(d)


def test_connect_reencodes_with_the_real_passcode() -> None:
    decoder = new()
    d = decoder.decode(CONNECT, text=True, from_client=True)
    assert d is not None
    assert decoder.encode(d) == CONNECT
    d.fields["headers"][2] = ["login", "alice"]
    assert decoder.encode(d) == CONNECT.replace(b"bob", b"alice")


def test_send_summary_topic_and_body() -> None:
    d = new().decode(SEND, text=True, from_client=True)
    assert d is not None
    assert d.summary == "stomp SEND /queue/a 13 B"
    assert (d.kind, d.topic, d.value) == ("SEND", "/queue/a", "hello queue a")


def test_content_length_body_holds_nul_and_trailing_eols_are_kept() -> None:
    decoder = new()
    d = decoder.decode(MESSAGE, text=False, from_client=False)
    assert d is not None
    assert (d.value, d.id, d.topic) == ("a\0b\0c", "007", "/queue/a")
    assert d.fields["trailer"] == "\n\n"
    assert decoder.encode(d) == MESSAGE


def test_crlf_frames_round_trip_and_connected_sets_the_version() -> None:
    decoder = new("v10.stomp")
    d = decoder.decode(CONNECTED, text=True, from_client=False)
    assert d is not None and d.summary == "stomp CONNECTED version=1.2"
    assert decoder.version == "1.2" and decoder.encode(d) == CONNECTED


def test_heart_beats() -> None:
    decoder = new()
    for beat in (b"\n", b"\r\n", b"\n\n"):
        d = decoder.decode(beat, text=True, from_client=True)
        assert d is not None and (d.kind, d.summary) == ("HEARTBEAT", "stomp heart-beat")
        assert decoder.encode(d) == beat


def test_escapes_of_1_2() -> None:
    frame = b"MESSAGE\ndestination:/a\\cb\nx\\\\y:1\\n2\\r3\n\n\0"
    decoder = new()
    d = decoder.decode(frame, text=True, from_client=False)
    assert d is not None
    assert d.topic == "/a:b"
    assert d.fields["headers"][1] == ["x\\y", "1\n2\r3"]
    assert decoder.encode(d) == frame


def test_escapes_by_version() -> None:
    frame = b"SEND\ndestination:/a\\rb\n\n\0"
    assert new("v11.stomp").decode(frame, text=True, from_client=True) is None  # \r undefined
    d = new("v10.stomp").decode(frame, text=True, from_client=True)
    assert d is not None and d.topic == "/a\\rb"  # 1.0 has no escapes
    raw = b"CONNECT\nlogin:a\\b\n\n\0"  # CONNECT never escapes
    d = new().decode(raw, text=True, from_client=True)
    assert d is not None and d.fields["headers"] == [["login", "a\\b"]]


def test_an_undefined_escape_is_not_stomp() -> None:
    assert new().decode(b"SEND\ndestination:/a\\t\n\n\0", text=True, from_client=True) is None


def test_repeated_headers_first_wins_and_all_are_kept() -> None:
    frame = b"MESSAGE\ndestination:/first\ndestination:/second\n\n\0"
    decoder = new()
    d = decoder.decode(frame, text=True, from_client=False)
    assert d is not None and d.topic == "/first"
    assert decoder.encode(d) == frame


def test_raw_colon_in_a_value_is_kept_raw() -> None:
    frame = b"SEND\ndestination:/a:b\n\n\0"
    decoder = new()
    d = decoder.decode(frame, text=True, from_client=True)
    assert d is not None and d.topic == "/a:b" and decoder.encode(d) == frame


def test_several_frames_in_one_message() -> None:
    decoder = new()
    d = decoder.decode(SEND + SUBSCRIBE + b"\n", text=True, from_client=True)
    assert d is not None and d.kind == "SEND"
    assert [m.kind for m in d.fields["more"]] == ["SUBSCRIBE"]
    assert d.summary == "stomp SEND /queue/a 13 B (+1 frames)"
    assert decoder.encode(d) == SEND + SUBSCRIBE + b"\n"


def test_a_frame_split_over_messages_is_joined_and_not_reencoded() -> None:
    decoder = new()
    assert decoder.decode(SEND[:10], text=True, from_client=True) is None
    assert decoder.decode(SEND[10:20], text=True, from_client=True) is None
    other = decoder.decode(SUBSCRIBE, text=True, from_client=False)  # the other direction
    assert other is not None and other.kind == "SUBSCRIBE"
    d = decoder.decode(SEND[20:], text=True, from_client=True)
    assert d is not None and d.value == "hello queue a" and d.fields["joined"]
    assert decoder.encode(d) is None


def test_byte_at_a_time() -> None:
    decoder = new()
    stream = CONNECT + SEND + MESSAGE
    seen = []
    for i in range(len(stream)):
        d = decoder.decode(stream[i : i + 1], text=False, from_client=True)
        if d is not None:
            seen.append(d.kind)
    # The EOLs after the last NUL come alone: heart-beats, as the specification reads them.
    assert seen == ["CONNECT", "SEND", "MESSAGE", "HEARTBEAT", "HEARTBEAT"]


def test_garbage_after_a_pending_start_does_not_stick() -> None:
    decoder = new()
    assert decoder.decode(b"SEND\ndestination:/x\n", text=True, from_client=True) is None
    d = decoder.decode(SUBSCRIBE, text=True, from_client=True)  # the start was no frame's
    assert d is not None and d.kind == "SUBSCRIBE"
    assert decoder.decode(b'{"json": true}', text=True, from_client=True) is None


def test_pending_is_bounded() -> None:
    decoder = new()
    big = b"SEND\ndestination:/a\n\n" + b"x" * (MAX_PENDING + 1)
    assert decoder.decode(big, text=False, from_client=True) is None
    assert decoder._pending[True] == b""


def test_binary_body() -> None:
    frame = b"SEND\ndestination:/b\ncontent-length:3\n\n\xff\x00\xfe\0"
    decoder = new()
    d = decoder.decode(frame, text=False, from_client=True)
    assert d is not None and d.value == b"\xff\x00\xfe"
    assert decoder.encode(d) == frame


def test_an_edited_body_gets_its_content_length() -> None:
    decoder = new()
    d = decoder.decode(SEND, text=True, from_client=True)
    assert d is not None
    d.value = "with\0nul"
    assert decoder.encode(d) == (
        b"SEND\ndestination:/queue/a\ncontent-type:text/plain\ncontent-length:8\n\nwith\0nul\0"
    )
    d.topic = "/queue/b"
    reencoded = decoder.encode(d)
    assert reencoded is not None and b"destination:/queue/b\n" in reencoded


def test_summaries() -> None:
    decoder = new()
    summaries = [decoder.decode(f, text=True, from_client=True) for f in (SUBSCRIBE, ERROR)]
    assert [s.summary for s in summaries if s] == [
        "stomp SUBSCRIBE /queue/foo id=0",
        "stomp ERROR message=malformed 3 B",
    ]


def test_an_edit_that_is_no_frame_is_not_encoded() -> None:
    decoder = new()
    d = decoder.decode(SEND, text=True, from_client=True)
    assert d is not None
    d.kind = "NOT A COMMAND"
    assert decoder.encode(d) is None
    d.kind, d.value = "SEND", 42
    assert decoder.encode(d) is None


frames = st.builds(
    lambda command, headers, body, crlf, trailer: (
        (command + ("\r\n" if crlf else "\n")).encode()
        + b"".join(f"{k}:{v}{chr(13) if crlf else ''}\n".encode() for k, v in headers)
        + (b"\r\n" if crlf else b"\n")
        + body
        + b"\0"
        + trailer
    ),
    st.sampled_from(["SEND", "MESSAGE", "SUBSCRIBE", "ACK", "RECEIPT"]),
    st.lists(
        st.tuples(
            st.text("abcxyz-", min_size=1, max_size=8),
            st.text("abc/ÿé 123", max_size=12),
        ),
        max_size=4,
    ),
    st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"")),
    st.booleans(),
    st.sampled_from([b"", b"\n", b"\r\n\n"]),
)


@given(frames)
def test_decode_then_encode_gives_the_same_bytes(frame: bytes) -> None:
    decoder = new()
    d = decoder.decode(frame, text=False, from_client=True)
    assert d is not None
    assert decoder.encode(d) == frame
    assert FACTORY.sniff(frame, text=False)


@given(st.lists(st.binary(max_size=64), max_size=6), st.booleans())
def test_no_input_crashes(chunks: list[bytes], text: bool) -> None:
    decoder = new()
    FACTORY.sniff(b"".join(chunks), text=text)
    for chunk in chunks:
        d = decoder.decode(chunk, text=text, from_client=True)
        if d is not None:
            decoder.encode(d)


@given(st.lists(st.sampled_from([CONNECT, SEND, MESSAGE, SUBSCRIBE, b"\n", b"SE", b"ND\n"])))
def test_no_sequence_of_pieces_crashes(pieces: list[bytes]) -> None:
    decoder = new()
    for piece in pieces:
        d = decoder.decode(piece, text=True, from_client=False)
        if d is not None:
            decoder.encode(d)


def test_escapes_of_1_1_round_trip() -> None:
    # 1.1 has \n, \c and \\ (not \r): all three read and written back.
    frame = b"SEND\ndestination:/a\\cb\nnote:x\\ny\\\\z\n\n\0"
    decoder = new("v11.stomp")
    d = decoder.decode(frame, text=True, from_client=True)
    assert d is not None and d.fields["headers"] == [["destination", "/a:b"], ["note", "x\ny\\z"]]
    assert decoder.encode(d) == frame


def test_1_0_writes_header_values_as_they_are() -> None:
    frame = b"SEND\ndestination:/a\\b:c\n\n\0"
    decoder = new("v10.stomp")
    d = decoder.decode(frame, text=True, from_client=True)
    assert d is not None and d.topic == "/a\\b:c"
    assert decoder.encode(d) == frame
    d.topic = "/x\\y"
    assert decoder.encode(d) == b"SEND\ndestination:/x\\y\n\n\0"  # no escape in 1.0


@pytest.mark.parametrize(
    "frame",
    [
        b"SEND\ndestination:/\xff\n\n\0",  # a header that is not UTF-8
        b"SEND\ncontent-length:1\n\nab\0",  # the byte after content-length's count is no NUL
        b"SEND\ncontent-length:\xef\xbc\x91\n\nab\0",  # a full-width digit is no number
    ],
)
def test_malformed_frames_are_not_stomp(frame: bytes) -> None:
    decoder = new()
    assert decoder.decode(frame, text=False, from_client=True) is None
    assert decoder._pending[True] == b""  # nothing of it waits for more
    assert not FACTORY.sniff(frame, text=False)


def test_a_body_edited_to_none_is_empty() -> None:
    decoder = new()
    d = decoder.decode(SEND, text=True, from_client=True)
    assert d is not None
    d.value = None
    assert decoder.encode(d) == b"SEND\ndestination:/queue/a\ncontent-type:text/plain\n\n\0"
