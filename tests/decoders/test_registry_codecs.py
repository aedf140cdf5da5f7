"""The registry chooses STOMP, MQTT, msgpack, CBOR and protobuf by hint, then by sniffing;
and wsproxy.decoders stays pure (no I/O, no layers above it), codec libraries allowed."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import cbor2
import msgpack
import pytest

import wsproxy.decoders
from wsproxy.decoders.base import Hints
from wsproxy.decoders.registry import FACTORIES, choose

CONNECT = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd"
PROTOBUF = bytes.fromhex("089601120774657374696e67")


@pytest.mark.parametrize(
    ("subprotocol", "protocol"),
    [("v12.stomp", "stomp"), ("mqtt", "mqtt"), ("wamp.2.msgpack", "msgpack"),
     ("wamp.2.cbor", "cbor"), ("protobuf", "protobuf")],
)  # fmt: skip
def test_a_subprotocol_chooses_without_sniffing(subprotocol: str, protocol: str) -> None:
    factory = choose(Hints(subprotocol=subprotocol), b"anything", False)
    assert factory is not None and factory.protocol == protocol


@pytest.mark.parametrize(
    ("payload", "text", "protocol"),
    [
        (b"SEND\ndestination:/a\n\nx\0", True, "stomp"),
        (CONNECT, False, "mqtt"),
        (msgpack.packb({"type": 2, "data": ["chat"]}), False, "msgpack"),
        (cbor2.dumps({"type": 2, "data": ["chat"]}), False, "cbor"),
        (PROTOBUF, False, "protobuf"),
        (b'{"json": "plain"}', True, "json"),
        (b"\x00\x9f\x13\xee\x01\x77", False, None),
    ],
)
def test_sniffing_chooses_by_the_first_message(
    payload: bytes, text: bool, protocol: str | None
) -> None:
    factory = choose(Hints(), payload, text)
    assert (factory.protocol if factory else None) == protocol


def test_each_protocol_once() -> None:
    names = [f.protocol for f in FACTORIES]
    assert len(names) == len(set(names))
    assert {"stomp", "mqtt", "msgpack", "cbor", "protobuf"} <= set(names)


DECODERS = Path(wsproxy.decoders.__file__).parent
CODECS = {"msgpack", "cbor2"}


@pytest.mark.parametrize("path", sorted(DECODERS.glob("*.py")), ids=lambda p: p.name)
def test_decoders_import_only_themselves_the_stdlib_and_codecs(path: Path) -> None:
    outside = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module is not None
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if name.startswith("wsproxy.decoders") or top in CODECS:
                continue
            if top in sys.stdlib_module_names and top not in {"asyncio", "socket", "ssl", "time"}:
                continue
            outside.add(name)
    assert outside == set()


def test_the_readme_example_prints_what_it_says(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Messaging and binary protocols", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    expected = [line.removeprefix("# ") for line in code.splitlines() if line.startswith("# ")]
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.splitlines() == expected
