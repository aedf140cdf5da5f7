"""The STOMP, MQTT, msgpack, CBOR and protobuf decoders on traffic real peers sent through a
real ``python -m wsproxy`` (reverse mode, ``-w capture.jsonl``): paho-mqtt against Debian's
mosquitto with a websockets listener (MQTT 3.1.1 and 5), stomp.py's WebSocket client against
a small STOMP broker in this file, and msgpack/CBOR/protobuf payloads from a websockets
client. The capture is read back and decoded as the proxy chooses: by subprotocol, else by
sniffing the first message."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
import msgpack
import paho.mqtt.client as mqtt
import pytest
import stomp
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection

from tests.harness import HOST, StartProxy, StartWsEcho, WsUpstream, free_port, wait_accepting
from tests.integration.decoded import DecodedMessage, decode_capture

MOSQUITTO = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
PASSWORD = "s3cret-Pa55"


async def captured(start_proxy: StartProxy, upstream: str, tmp_path: Path) -> Any:
    capture = tmp_path / "capture.jsonl"
    proxy = await start_proxy("--mode", f"reverse:{upstream}", "-w", str(capture))
    return proxy, capture


async def finish(proxy: Any, capture: Path, connections: int) -> dict[str, list[DecodedMessage]]:
    """Once every WebSocket closed, stop the proxy (the capture is complete) and decode it."""
    await proxy.wait_log(lambda text: text.count("WebSocket closed") >= connections, timeout=20)
    assert await proxy.stop() == 0
    return decode_capture(capture)


def assert_round_trips(messages: list[DecodedMessage]) -> None:
    for m in messages:
        assert m.decoded is not None, m.message
        if not m.decoded.fields.get("joined"):
            assert m.reencoded() == m.message.content, m.decoded.summary


# -- MQTT: paho-mqtt and mosquitto ------------------------------------------------------------


@pytest.fixture
async def mosquitto(tmp_path: Path) -> AsyncIterator[int]:
    """Debian's mosquitto with a websockets listener (and the plain one that 2.0.11 needs
    beside it to start at all); yields the websockets port."""
    if MOSQUITTO is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto is not installed (tests/run.sh installs it)")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    ws_port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        f"listener {free_port()} {HOST}\nlistener {ws_port} {HOST}\nprotocol websockets\n"
        "allow_anonymous true\npersistence false\nlog_dest stderr\n"
    )
    config.chmod(0o644)
    with open(tmp_path / "mosquitto.log", "wb") as log:
        proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(config)], stdout=log, stderr=log, start_new_session=True
        )
    try:
        await wait_accepting(ws_port, proc, 10)
        yield ws_port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_paho(port: int, version: int) -> list[tuple[str, bytes]]:
    """A paho client over WebSocket: subscribe, publish at QoS 0, 1 and 2, get the three
    back, unsubscribe, disconnect. Blocking (paho's own thread): run it in a thread."""
    received: list[tuple[str, bytes]] = []
    events = {name: threading.Event() for name in ("connected", "subscribed", "got3", "unsub")}
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"wsproxy-test-{version}",
        transport="websockets", protocol=version,
    )  # fmt: skip
    client.ws_set_options(path="/mqtt")
    client.username_pw_set("tester", PASSWORD)

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        received.append((msg.topic, msg.payload))
        if len(received) == 3:
            events["got3"].set()

    client.on_connect = lambda *a: events["connected"].set()
    client.on_subscribe = lambda *a: events["subscribed"].set()
    client.on_unsubscribe = lambda *a: events["unsub"].set()
    client.on_message = on_message
    client.connect(HOST, port, keepalive=30)
    client.loop_start()
    try:
        assert events["connected"].wait(10), "no CONNACK"
        client.subscribe("sensors/#", qos=2)
        assert events["subscribed"].wait(10), "no SUBACK"
        properties = None
        if version == mqtt.MQTTv5:
            properties = Properties(PacketTypes.PUBLISH)
            properties.ContentType = "text/plain"
            properties.UserProperty = [("origin", "wsproxy")]
        for qos in (0, 1, 2):
            client.publish(f"sensors/{qos}", f"reading {qos}!".encode() * (qos + 1), qos=qos,
                           properties=properties)  # fmt: skip
        assert events["got3"].wait(10), f"got {received}"
        client.unsubscribe("sensors/#")
        assert events["unsub"].wait(10), "no UNSUBACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return received


@pytest.mark.parametrize("version", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["3.1.1", "5"])
async def test_mqtt_paho_and_mosquitto(
    mosquitto: int, start_proxy: StartProxy, tmp_path: Path, version: int
) -> None:
    proxy, capture = await captured(start_proxy, f"ws://{HOST}:{mosquitto}", tmp_path)
    received = await asyncio.to_thread(run_paho, proxy.port, version)
    assert sorted(topic for topic, _ in received) == ["sensors/0", "sensors/1", "sensors/2"]
    (messages,) = (await finish(proxy, capture, 1)).values()
    assert_round_trips(messages)
    packets = [
        (m.from_client, p)
        for m in messages
        for p in [m.decoded, *m.decoded.fields.get("more", [])]  # type: ignore[union-attr]
    ]
    kinds = [(c, p.kind) for c, p in packets]
    level = 5 if version == mqtt.MQTTv5 else 4
    connect = packets[0][1]
    assert connect.kind == "CONNECT" and connect.fields["level"] == level
    assert connect.fields["client_id"] == f"wsproxy-test-{version}"
    assert connect.fields["username"] == "tester"
    assert connect.summary == f"mqtt CONNECT client=wsproxy-test-{version} level={level} " + (
        "keepalive=30 user=tester"
    )
    for client_side, kind in [(False, "CONNACK"), (True, "SUBSCRIBE"), (False, "SUBACK"),
                              (True, "PUBACK"), (False, "PUBREC"), (True, "PUBREL"),
                              (False, "PUBCOMP"), (True, "UNSUBSCRIBE"), (False, "UNSUBACK"),
                              (True, "DISCONNECT")]:  # fmt: skip
        assert (client_side, kind) in kinds
    published = [p for c, p in packets if c and p.kind == "PUBLISH"]
    assert [p.summary.partition(" id=")[0] for p in published] == [
        "mqtt PUBLISH sensors/0 qos=0 10 B",
        "mqtt PUBLISH sensors/1 qos=1 20 B",
        "mqtt PUBLISH sensors/2 qos=2 30 B",
    ]
    assert [p.id is not None for p in published] == [False, True, True]  # paho numbers them
    assert [p.value for p in published][2] == "reading 2!" * 3
    delivered = [p for c, p in packets if not c and p.kind == "PUBLISH"]
    assert sorted(p.topic or "" for p in delivered) == ["sensors/0", "sensors/1", "sensors/2"]
    if level == 5:
        assert ["content_type", "text/plain"] in published[0].fields["properties"]
        assert ["user_property", ["origin", "wsproxy"]] in delivered[0].fields["properties"]
    subscribe = next(p for c, p in packets if p.kind == "SUBSCRIBE")
    assert subscribe.topic == "sensors/#" and subscribe.value[0]["qos"] == 2
    everything = " ".join(f"{p.summary} {p.fields!r}" for _, p in packets)
    assert PASSWORD not in everything


# -- STOMP: stomp.py's WebSocket client, a small broker ---------------------------------------


def stomp_frames(data: bytes) -> list[tuple[str, dict[str, str], bytes]]:
    """The broker's own reading of frames (no content-length bodies with NULs here): kept
    apart from the decoder under test."""
    frames = []
    for raw in data.split(b"\0"):
        raw = raw.lstrip(b"\r\n")
        if raw:
            head, _, body = raw.partition(b"\n\n")
            command, *lines = head.decode().split("\n")
            frames.append((command, dict(line.split(":", 1) for line in lines), body))
    return frames


async def stomp_broker(ws: ServerConnection, up: WsUpstream) -> None:
    """CONNECT -> CONNECTED (and a heart-beat), SUBSCRIBE, SEND -> MESSAGE to the subscriber,
    a RECEIPT for every ``receipt`` header."""
    subscriptions: dict[str, str] = {}
    sent = 0
    async for message in ws:
        up.received.append(message)
        data = message.encode() if isinstance(message, str) else message
        for command, headers, body in stomp_frames(data):
            if command in ("CONNECT", "STOMP"):
                await ws.send("CONNECTED\nversion:1.2\nserver:test-broker\nheart-beat:0,0\n\n\0")
                await ws.send("\n")
            elif command == "SUBSCRIBE":
                subscriptions[headers["destination"]] = headers["id"]
            elif command == "SEND" and headers["destination"] in subscriptions:
                sent += 1
                destination = headers["destination"]
                await ws.send(
                    f"MESSAGE\nsubscription:{subscriptions[destination]}\nmessage-id:m{sent}\n"
                    f"destination:{destination}\ncontent-length:{len(body)}\n\n".encode()
                    + body
                    + b"\0"
                )
            if "receipt" in headers:
                await ws.send(f"RECEIPT\nreceipt-id:{headers['receipt']}\n\n\0")


class Received(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.got = threading.Event()

    def on_message(self, frame: Any) -> None:
        self.bodies.append(frame.body)
        self.got.set()


def run_stomp(port: int, subprotocol: str | None) -> list[str]:
    """stomp.py over WebSocket: connect with a passcode, subscribe, send, get it back,
    disconnect (with a receipt). Blocking: run it in a thread."""
    header = {"Sec-WebSocket-Protocol": subprotocol} if subprotocol else None
    conn = stomp.WSStompConnection([(HOST, port)], ws_path="/stomp", header=header, timeout=10)
    listener = Received()
    conn.set_listener("test", listener)
    conn.connect("guest", PASSWORD, wait=True)
    try:
        conn.subscribe("/queue/a", id="sub-1", ack="auto")
        conn.send("/queue/a", "hello queue a", content_type="text/plain")
        assert listener.got.wait(10), "no MESSAGE"
    finally:
        conn.disconnect()  # with a receipt, waited for
    return listener.bodies


@pytest.mark.parametrize("subprotocol", ["v12.stomp", None], ids=["subprotocol", "sniffed"])
async def test_stomp_py_over_websocket(
    start_proxy: StartProxy, start_ws_echo: StartWsEcho, tmp_path: Path, subprotocol: str | None
) -> None:
    broker = await start_ws_echo(stomp_broker, subprotocols=[subprotocol] if subprotocol else None)
    proxy, capture = await captured(start_proxy, broker.url, tmp_path)
    bodies = await asyncio.to_thread(run_stomp, proxy.port, subprotocol)
    assert bodies == ["hello queue a"]
    (messages,) = (await finish(proxy, capture, 1)).values()
    assert_round_trips(messages)
    seen = [(m.from_client, m.decoded.summary) for m in messages if m.decoded]
    assert (True, "stomp STOMP accept-version=1.2 host=127.0.0.1") in seen
    assert (False, "stomp CONNECTED version=1.2") in seen
    assert (False, "stomp heart-beat") in seen
    assert (True, "stomp SUBSCRIBE /queue/a id=sub-1") in seen
    assert (True, "stomp SEND /queue/a 13 B") in seen
    assert (False, "stomp MESSAGE /queue/a 13 B") in seen
    assert any(client and summary.startswith("stomp DISCONNECT") for client, summary in seen)
    assert any(summary.startswith("stomp RECEIPT receipt-id=") for _, summary in seen)
    message = next(m.decoded for m in messages if m.decoded and m.decoded.kind == "MESSAGE")
    assert (message.topic, message.id, message.value) == ("/queue/a", "m1", "hello queue a")
    assert all(PASSWORD not in repr(m.decoded) for m in messages)


# -- msgpack, CBOR, protobuf from a websockets client -------------------------------------------

PROTOBUF = bytes.fromhex("089601120774657374696e671a03089601")


SOCKETIO = {"type": 2, "data": ["chat", b"\x00\xff"], "nsp": "/"}
SIGNALR = [1, {}, "7", "Send", ["hi", 2.5]]
READING = {"temp": 21.5, "unit": "C", "raw": b"\x01"}


@pytest.mark.parametrize(
    ("protocol", "payloads", "values"),
    [
        ("msgpack", [msgpack.packb(SOCKETIO), msgpack.packb(SIGNALR)], [SOCKETIO, SIGNALR]),
        ("cbor", [cbor2.dumps(READING), cbor2.dumps(["a", 1])], [READING, ["a", 1]]),
        ("protobuf", [PROTOBUF, PROTOBUF[:3] + PROTOBUF[12:]], None),
    ],
)
async def test_binary_codecs_through_the_proxy(
    ws_echo: WsUpstream,
    start_proxy: StartProxy,
    tmp_path: Path,
    protocol: str,
    payloads: list[bytes],
    values: list[Any] | None,
) -> None:
    proxy, capture = await captured(start_proxy, ws_echo.url, tmp_path)
    async with connect(f"ws://{HOST}:{proxy.port}/data") as ws:
        for payload in payloads:
            await ws.send(payload)
            assert await ws.recv() == payload
    (messages,) = (await finish(proxy, capture, 1)).values()
    assert len(messages) == 2 * len(payloads)
    assert_round_trips(messages)
    assert {m.decoded.protocol for m in messages if m.decoded} == {protocol}
    if values is not None:
        assert [m.decoded.value for m in messages if m.decoded] == [
            v for v in values for _ in (0, 1)
        ]
    else:
        first = messages[0].decoded
        assert first is not None
        assert first.summary == 'protobuf 1=150 2="testing" 3={1=150} (17 B)'
