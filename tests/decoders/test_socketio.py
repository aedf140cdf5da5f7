"""Socket.IO and Engine.IO: packets as python-socketio and the JavaScript client write them."""

from __future__ import annotations

import pytest

from wsproxy.decoders.base import Decoded, Hints
from wsproxy.decoders.engineio import Packet, parse, serialize
from wsproxy.decoders.socketio import SocketIoDecoder, SocketIoFactory, parse_packet


def decode(payload: bytes, text: bool = True, from_client: bool = True) -> Decoded:
    decoded = SocketIoDecoder().decode(payload, text=text, from_client=from_client)
    assert decoded is not None
    return decoded


@pytest.mark.parametrize(
    ("payload", "kind", "event", "value", "ident", "namespace", "summary"),
    [
        (
            b'42["chat","hi",{"a":1}]',
            "EVENT",
            "chat",
            ["hi", {"a": 1}],
            None,
            "/",
            'socket.io EVENT "chat" ["hi", {…}]',
        ),
        (
            b'42/admin,17["kick","bob"]',
            "EVENT",
            "kick",
            ["bob"],
            "17",
            "/admin",
            'socket.io EVENT /admin "kick" id=17 ["bob"]',
        ),
        (b'4317["ok"]', "ACK", None, ["ok"], "17", "/", 'socket.io ACK id=17 ["ok"]'),
        (b"40", "CONNECT", None, None, None, "/", "socket.io CONNECT"),
        (
            b'40{"token":"t"}',
            "CONNECT",
            None,
            {"token": "t"},
            None,
            "/",
            'socket.io CONNECT {"token": "t"}',
        ),
        (
            b'40/chat,{"sid":"q"}',
            "CONNECT",
            None,
            {"sid": "q"},
            None,
            "/chat",
            'socket.io CONNECT /chat {"sid": "q"}',
        ),
        (b"41/chat,", "DISCONNECT", None, None, None, "/chat", "socket.io DISCONNECT /chat"),
        (
            b'44{"message":"no"}',
            "CONNECT_ERROR",
            None,
            {"message": "no"},
            None,
            "/",
            'socket.io CONNECT_ERROR {"message": "no"}',
        ),
        (
            b'44"Invalid namespace"',
            "CONNECT_ERROR",
            None,
            "Invalid namespace",
            None,
            "/",
            'socket.io CONNECT_ERROR "Invalid namespace"',
        ),
    ],
)
def test_packets(
    payload: bytes,
    kind: str,
    event: str | None,
    value: object,
    ident: str | None,
    namespace: str,
    summary: str,
) -> None:
    decoded = decode(payload)
    assert (decoded.protocol, decoded.kind, decoded.event, decoded.value, decoded.id) == (
        "socketio",
        kind,
        event,
        value,
        ident,
    )
    assert decoded.fields["namespace"] == namespace
    assert decoded.layers == ("engineio",)
    assert decoded.summary == summary
    assert SocketIoDecoder().encode(decoded) == payload


@pytest.mark.parametrize(
    ("payload", "kind", "value", "summary"),
    [
        (
            b'0{"sid":"x","pingInterval":25000}',
            "open",
            {"sid": "x", "pingInterval": 25000},
            'engine.io open {"sid": "x", "pingInterval": 25000}',
        ),
        (b"2", "ping", "", "engine.io ping"),
        (b"3probe", "pong", "probe", 'engine.io pong "probe"'),
        (b"1", "close", "", "engine.io close"),
        (b"5", "upgrade", "", "engine.io upgrade"),
        (b"6", "noop", "", "engine.io noop"),
        (b"4hello", "message", "hello", 'engine.io message "hello"'),  # not Socket.IO
        (b"0{bad", "open", "{bad", 'engine.io open "{bad"'),
    ],
)
def test_engineio_packets(payload: bytes, kind: str, value: object, summary: str) -> None:
    decoded = decode(payload)
    assert (decoded.protocol, decoded.kind, decoded.value, decoded.summary) == (
        "engineio",
        kind,
        value,
        summary,
    )
    if kind != "message":
        assert SocketIoDecoder().encode(decoded) == payload


def test_edit_event_arguments() -> None:
    decoder = SocketIoDecoder()
    decoded = decoder.decode(b'42["chat","hi"]', text=True, from_client=True)
    assert decoded is not None
    decoded.value = ["bye", {"n": 2}]
    assert decoder.encode(decoded) == b'42["chat","bye",{"n":2}]'
    decoded.event = "shout"
    assert decoder.encode(decoded) == b'42["shout","bye",{"n":2}]'
    decoded.event = None
    assert decoder.encode(decoded) is None  # an event without a name cannot be written


def test_non_ascii_kept_as_each_library_writes_it() -> None:
    js = '42["chat","héllo"]'.encode()
    python = b'42["chat","h\\u00e9llo"]'
    for payload in (js, python):
        decoded = decode(payload)
        assert decoded.value == ["héllo"]
        assert SocketIoDecoder().encode(decoded) == payload
    decoded = decode(python)
    decoded.value = ["ç"]
    assert SocketIoDecoder().encode(decoded) == b'42["chat","\\u00e7"]'


def test_delete_character_kept_as_each_library_writes_it() -> None:
    # DEL is ASCII, but json.dumps escapes it with the rest; JSON.stringify keeps it.
    for payload in (b'42["\x7f",1]', b'42["\\u007f",1]', b'42/admin,7["\x7f"]'):
        decoded = decode(payload)
        assert decoded.event == "\x7f"
        assert SocketIoDecoder().encode(decoded) == payload


def test_namespace_comma_as_it_came() -> None:
    for payload in (b"40/chat,", b"40/chat"):
        assert SocketIoDecoder().encode(decode(payload)) == payload


def test_binary_event_joins_its_attachments_per_direction() -> None:
    decoder = SocketIoDecoder()
    head = decoder.decode(
        b'452-["up",{"_placeholder":true,"num":0},{"b":{"_placeholder":true,"num":1}}]',
        text=True,
        from_client=True,
    )
    assert head is not None
    assert (head.kind, head.event, head.fields["attachments"]) == ("BINARY_EVENT", "up", 2)
    assert head.summary == 'socket.io BINARY_EVENT "up" [{…}, {…}] +2 attachments'
    # The server's messages meanwhile are their own.
    other = decoder.decode(b"\x09", text=False, from_client=False)
    assert other is not None and (other.protocol, other.value) == ("engineio", b"\x09")
    first = decoder.decode(b"\x01\x02", text=False, from_client=True)
    assert first is not None
    assert (first.kind, first.event, first.value, first.fields["part"]) == (
        "BINARY_EVENT",
        "up",
        None,
        1,
    )
    assert first.summary == 'socket.io BINARY_EVENT "up" attachment 1/2 <2 B>'
    assert not first.fields["complete"]
    last = decoder.decode(b"\x03", text=False, from_client=True)
    assert last is not None and last.fields["complete"]
    assert last.value == [b"\x01\x02", {"b": b"\x03"}]
    assert last.summary == 'socket.io BINARY_EVENT "up" [<2 B>, {…}] (joined: 2 attachments)'
    assert decoder.encode(last) == b"\x03"
    last.fields["data"] = b"\x04"
    assert decoder.encode(last) == b"\x04"
    after = decoder.decode(b"\x05", text=False, from_client=True)
    assert after is not None and after.protocol == "engineio"  # the event was complete


def test_binary_event_scalars_stay_and_a_placeholder_out_of_range_is_kept() -> None:
    decoder = SocketIoDecoder()
    head = decoder.decode(
        b'451-["up","name",3,{"_placeholder":true,"num":0},{"_placeholder":true,"num":5}]',
        text=True,
        from_client=True,
    )
    assert head is not None and head.fields["attachments"] == 1
    last = decoder.decode(b"\x07", text=False, from_client=True)
    assert last is not None and last.fields["complete"]
    # Only a placeholder naming an attachment that came is replaced; the rest is as sent.
    assert last.value == ["name", 3, b"\x07", {"_placeholder": True, "num": 5}]


def test_binary_event_head_edited_keeps_its_attachment_count() -> None:
    decoder = SocketIoDecoder()
    original = b'451-/files,["up",{"_placeholder":true,"num":0}]'
    head = decoder.decode(original, text=True, from_client=True)
    assert head is not None and decoder.encode(head) == original
    head.event = "upload"
    assert decoder.encode(head) == b'451-/files,["upload",{"_placeholder":true,"num":0}]'


def test_binary_ack_and_eio3_binary_prefix() -> None:
    decoder = SocketIoDecoder(version=3)
    head = decoder.decode(b'461-5[{"_placeholder":true,"num":0}]', text=True, from_client=False)
    assert head is not None and (head.kind, head.id) == ("BINARY_ACK", "5")
    assert decoder.decode(b"\x00raw", text=False, from_client=False) is None  # no type byte
    last = decoder.decode(b"\x04raw", text=False, from_client=False)
    assert last is not None and last.value == [b"raw"]
    assert last.summary == "socket.io BINARY_ACK id=5 [<3 B>] (joined: 1 attachment)"
    assert decoder.encode(last) == b"\x04raw"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"7",
        b"x",
        b"\xff",
        b"4\xff",
    ],
)
def test_not_engineio(payload: bytes) -> None:
    assert SocketIoDecoder().decode(payload, text=True, from_client=True) is None


@pytest.mark.parametrize(
    "data",
    [
        "2",  # an event without data
        '2["a"',  # bad JSON
        '2/chat,["a"',  # bad JSON after a namespace
        "2[]",  # no event name
        "2[1]",  # a name that is not a string
        '3["a"]',  # an ack without id
        '21-["a"]',  # attachments on a non-binary packet
        '5["a"]',  # a binary packet without the count
        "1{}",  # a disconnect with data
        ",",  # a comma without namespace
        '2,["a"]',  # a comma without namespace after the type
        "8",
    ],
)
def test_not_socketio(data: str) -> None:
    assert parse_packet(data) is None
    decoded = decode(b"4" + data.encode())
    assert (decoded.protocol, decoded.kind, decoded.value) == ("engineio", "message", data)


def test_encode_refusals() -> None:
    decoder = SocketIoDecoder()
    assert decoder.encode(Decoded("socketio", "NOPE", fields={"packet": None})) is None
    assert decoder.encode(Decoded("socketio", "EVENT", ["a"], event="e")) is None  # no packet
    assert decoder.encode(Decoded("socketio", "BINARY_EVENT", fields={"data": "s"})) is None
    open_ = Decoded("engineio", "open", {"sid": "x"})
    assert decoder.encode(open_) == b'0{"sid":"x"}'
    assert decoder.encode(Decoded("engineio", "ping", None, fields={"raw": "p"})) == b"2p"
    assert decoder.encode(Decoded("engineio", "bogus")) is None


def test_engineio_layer() -> None:
    assert parse(b"abc", text=False) == Packet(4, b"abc")
    assert parse(b"\x04abc", text=False, version=3) == Packet(4, b"abc")
    assert serialize(Packet(4, b"abc"), version=3) == b"\x04abc"
    assert serialize(Packet(2, "probe")) == b"2probe"
    assert Packet(0, "").name == "open"


@pytest.mark.parametrize(
    ("path", "claimed"),
    [
        ("/socket.io/?EIO=4&transport=websocket", True),
        ("/ws?EIO=3&transport=websocket", True),
        ("/chat", False),
    ],
)
def test_claims(path: str, claimed: bool) -> None:
    assert SocketIoFactory().claims(Hints(path=path)) is claimed


@pytest.mark.parametrize(
    ("payload", "text", "sniffed"),
    [
        (b'0{"sid":"abc","upgrades":[]}', True, True),
        (b"2probe", True, True),
        (b"40", True, True),
        (b'40{"sid":"x"}', True, True),
        (b"40/chat,", True, True),
        (b"401", True, False),
        (b'{"a":1}', True, False),
        (b"40", False, False),
    ],
)
def test_sniff(payload: bytes, text: bool, sniffed: bool) -> None:
    assert SocketIoFactory().sniff(payload, text=text) is sniffed


def test_version_from_the_url() -> None:
    factory = SocketIoFactory()
    assert factory.new(Hints(path="/socket.io/?EIO=3&transport=websocket")).version == 3
    assert factory.new(Hints(path="/socket.io/?EIO=4&transport=websocket")).version == 4
    assert factory.new(Hints(path="/socket.io/?x=EIO=3")).version == 4
