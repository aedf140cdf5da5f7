"""Tests of wsproxy.logformat: the one frame-line format of the log, the log plugin and show."""

from __future__ import annotations

import pytest

from wsproxy.logformat import (
    frame_flags,
    frame_line,
    message_counts,
    negotiated,
    opcode_name,
    payload_kind,
    preview,
    preview_bytes,
)
from wsproxy.sansio.frames import Opcode


def test_opcode_name() -> None:
    assert opcode_name(1) == "TEXT"
    assert opcode_name(0) == "CONTINUATION"
    assert opcode_name(0xA) == "PONG"
    assert opcode_name(3) == "0x3"


@pytest.mark.parametrize(
    ("fin", "rsv", "compressed", "expected"),
    [
        (True, 0x40, True, "F1z"),
        (False, 0, False, "-"),
        (True, 0, True, "Fz"),
        (False, 0x40, False, "1"),
    ],
)
def test_frame_flags(fin: bool, rsv: int, compressed: bool, expected: str) -> None:
    assert frame_flags(fin=fin, rsv=rsv, compressed=compressed) == expected


def test_a_continuation_reads_as_its_message() -> None:
    assert payload_kind(Opcode.CONTINUATION, Opcode.TEXT) == Opcode.TEXT
    assert payload_kind(Opcode.PING, Opcode.TEXT) == Opcode.PING


@pytest.mark.parametrize(
    ("data", "kind", "width", "partial", "expected"),
    [
        (b"hello", Opcode.TEXT, 40, False, "'hello'"),
        (b"x" * 41, Opcode.TEXT, 40, False, repr("x" * 40 + "…")),
        (b"x" * 41, Opcode.TEXT, 0, False, repr("x" * 41)),
        (b"abc", Opcode.TEXT, 40, True, repr("abc…")),
        (b"ping", Opcode.PING, 40, False, "'ping'"),
        (b"\x03\xe8bye", Opcode.CLOSE, 40, False, "code=1000 'bye'"),
        (b"\x03", Opcode.CLOSE, 40, False, "03"),
        (bytes(range(3)), Opcode.BINARY, 40, False, "00 01 02"),
        (
            bytes(range(21)),
            Opcode.BINARY,
            40,
            False,
            " ".join(f"{i:02x}" for i in range(20)) + " …",
        ),
        (bytes(range(21)), Opcode.BINARY, 0, False, " ".join(f"{i:02x}" for i in range(21))),
        (b"\xff", Opcode.TEXT, 40, False, repr("\ufffd")),
    ],
)
def test_preview(data: bytes, kind: int, width: int, partial: bool, expected: str) -> None:
    assert preview(data, kind, width, partial=partial) == expected


def test_frame_line() -> None:
    line = frame_line(from_client=False, opcode=Opcode.TEXT, flags="Fz", length=5, shown="'hi'")
    assert line == "server -> client TEXT Fz len=5 'hi'"


def test_preview_bytes_hold_width_characters_of_utf8() -> None:
    assert preview_bytes(0) == 0
    assert preview_bytes(10) == 64  # never less than the relay's usual preview
    assert preview_bytes(40) == 160
    text = "€" * 40  # three bytes each
    assert preview(text.encode()[: preview_bytes(40)], Opcode.TEXT, 40) == repr(text)


@pytest.mark.parametrize(
    ("subprotocol", "extensions", "expected"),
    [
        (None, [], ""),
        ("graphql-transport-ws", [], " subprotocol=graphql-transport-ws"),
        (
            None,
            ["permessage-deflate; client_max_window_bits"],
            " extensions=permessage-deflate; client_max_window_bits",
        ),
        ("chat", ["a", "b"], " subprotocol=chat extensions=a, b"),
        ("Bearer.abc", [], " subprotocol=<hidden, 10 characters>"),
        ("v1." + "x" * 70, [], " subprotocol=<hidden, 73 characters>"),
    ],
)
def test_negotiated(subprotocol: str | None, extensions: list[str], expected: str) -> None:
    assert negotiated(subprotocol, extensions) == expected


def test_message_counts() -> None:
    assert message_counts(3, 2) == "data messages: 3 from the client, 2 from the server"
    assert message_counts(1, 0) == "data messages: 1 from the client, 0 from the server"
