"""Socket.IO v4 and v5 (https://github.com/socketio/socket.io-protocol) over Engine.IO.

A Socket.IO packet is the data of an Engine.IO message packet: its type as a digit, then for
binary packets the number of attachments and ``-``, the namespace when it is not ``/`` (and a
comma when more follows), the ack id, and the JSON data::

    42["chat","hi",{"from":"ann"}]          EVENT "chat" with two arguments
    42/admin,17["kick","bob"]               EVENT in namespace /admin, ack id 17
    4317["ok"]                              ACK 17
    451-["upload",{"_placeholder":true,"num":0}]   BINARY_EVENT, then one binary message

A binary event (or ack) is a text head whose arguments hold ``{"_placeholder": true, "num":
N}`` for each attachment, then one binary WebSocket message per attachment. The decoder keeps
the head per direction: the head decodes as the event (``fields["attachments"]`` says how
many follow), each attachment as a part of it (kind ``BINARY_EVENT``, the same event name,
``fields["part"]`` its number), and the last one as the whole event, placeholders replaced by
the bytes (``fields["complete"]``). So a rule on the event's name catches every message that
carries it.

``value`` is the arguments (a list, the event name left out: it is ``event``) of an event or
ack, the payload of the others. Re-encoding writes the packet back as it came: the comma
after a namespace as it was, compact JSON, non-ASCII escaped when the original had none (as
python-socketio's json.dumps does) and kept otherwise (JavaScript's JSON.stringify), so an
unchanged packet from either library gives the same bytes. An attachment re-encodes as its
bytes (``fields["data"]``): the head it belongs to has already gone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from wsproxy.decoders import engineio
from wsproxy.decoders.base import Decoded, Hints
from wsproxy.decoders.brief import brief, quoted

__all__ = ["SocketIoDecoder", "SocketIoFactory"]

KINDS = ("CONNECT", "DISCONNECT", "EVENT", "ACK", "CONNECT_ERROR", "BINARY_EVENT", "BINARY_ACK")
_EVENTS = (2, 5)  # EVENT, BINARY_EVENT: the first argument is the event's name
_BINARY = (5, 6)
MAX_ATTACHMENTS = 1000  # more in one packet is not a client: decoded as the head alone
_HEAD = re.compile(r"([0-6])(?:(\d{1,9})-)?(/[^,]*)?(,)?(\d{1,19})?(.*)", re.DOTALL)
_EIO3 = re.compile(r"(?:^|[?&])EIO=3(?:&|$)")


@dataclass(slots=True)
class Packet:
    """A Socket.IO packet, as parsed (see the module's docstring)."""

    type: int
    namespace: str = "/"
    id: str | None = None
    data: Any = None
    has_data: bool = False
    attachments: int = 0
    comma: bool = False  # a comma followed the namespace
    ascii: bool = True  # the JSON had only printable ASCII (json.dumps escapes the rest)


@dataclass(slots=True)
class _Pending:
    """A binary packet's head waiting for its attachments (one per direction)."""

    head: Decoded
    packet: Packet
    parts: list[bytes] = field(default_factory=list)


def parse_packet(data: str) -> Packet | None:
    if len(data) > 1 and data[1] in "[{" and data[0] in "01234":
        # The usual packet (an event or connect in "/" without ack id): no head to parse.
        try:
            value = json.loads(data[1:])
        except (ValueError, RecursionError):
            return None
        packet = Packet(int(data[0]), data=value, has_data=True, ascii=_escaped(data))
        return packet if _shape_ok(packet) else None
    found = _HEAD.fullmatch(data)
    if found is None:
        return None
    kind, attachments, namespace, comma, ident, rest = found.groups()
    packet = Packet(
        int(kind),
        namespace or "/",
        ident,
        attachments=int(attachments or 0),
        comma=comma is not None,
        ascii=_escaped(rest),
    )
    if (attachments is None) == (packet.type in _BINARY):
        return None
    if comma is not None and namespace is None:
        return None
    if rest:
        try:
            packet.data = json.loads(rest)
        except (ValueError, RecursionError):
            return None
        packet.has_data = True
    return packet if _shape_ok(packet) else None


_PRINTABLE_ASCII = re.compile(r"[ -~]*")


def _escaped(text: str) -> bool:
    """Whether ``text`` looks written with json.dumps' ``ensure_ascii``: it escapes every
    character outside printable ASCII (DEL too), JavaScript's JSON.stringify none of them."""
    return _PRINTABLE_ASCII.fullmatch(text) is not None


def _shape_ok(packet: Packet) -> bool:
    data = packet.data
    if packet.type in _EVENTS:
        return isinstance(data, list) and bool(data) and isinstance(data[0], str)
    if packet.type in (3, 6):  # ACK, BINARY_ACK
        return isinstance(data, list) and packet.id is not None
    if packet.type == 1:  # DISCONNECT
        return not packet.has_data
    return True  # CONNECT (v5: an auth object, v4: none), CONNECT_ERROR (object or string)


def serialize_packet(packet: Packet) -> str:
    head = str(packet.type)
    if packet.type in _BINARY:
        head += f"{packet.attachments}-"
    if packet.namespace != "/":
        head += packet.namespace
        if packet.comma or packet.id is not None or packet.has_data:
            head += ","
    if packet.id is not None:
        head += packet.id
    if packet.has_data:
        head += json.dumps(packet.data, ensure_ascii=packet.ascii, separators=(",", ":"))
    return head


def _fill(value: Any, parts: list[bytes]) -> Any:
    """``value`` with every attachment placeholder replaced by its bytes."""
    if isinstance(value, dict):
        num = value.get("num")
        if value.get("_placeholder") is True and isinstance(num, int) and 0 <= num < len(parts):
            return parts[num]
        return {key: _fill(item, parts) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, parts) for item in value]
    return value


class SocketIoDecoder:
    protocol = "socketio"

    def __init__(self, version: int = 4) -> None:
        self.version = version  # Engine.IO's: 3 (Socket.IO v4 servers... v2) or 4
        self._pending: dict[bool, _Pending] = {}  # by from_client

    def decode(self, payload: bytes, *, text: bool, from_client: bool) -> Decoded | None:
        packet = engineio.parse(payload, text=text, version=self.version)
        if packet is None:
            return None
        if isinstance(packet.data, bytes):
            return self._attachment(packet.data, from_client)
        if packet.type != engineio.MESSAGE:
            return self._engineio(packet)
        sio = parse_packet(packet.data)
        if sio is None:
            return Decoded(
                "engineio",
                "message",
                packet.data,
                summary=f"engine.io message {brief(packet.data)}",
            )
        decoded = self._decoded(sio)
        if sio.type in _BINARY and 0 < sio.attachments <= MAX_ATTACHMENTS:
            self._pending[from_client] = _Pending(decoded, sio)
        return decoded

    def _engineio(self, packet: engineio.Packet) -> Decoded:
        value: Any = packet.data
        if packet.name == "open":
            try:
                value = json.loads(packet.data)
            except (ValueError, RecursionError):
                value = packet.data
        shown = f" {brief(value)}" if value != "" else ""
        return Decoded(
            "engineio",
            packet.name,
            value,
            fields={"raw": packet.data},
            summary=f"engine.io {packet.name}{shown}",
        )

    def _decoded(self, sio: Packet) -> Decoded:
        kind = KINDS[sio.type]
        event = None
        value = sio.data
        if sio.type in _EVENTS:
            event, value = str(sio.data[0]), sio.data[1:]
        fields: dict[str, Any] = {"namespace": sio.namespace, "packet": sio}
        parts = ["socket.io", kind]
        if sio.namespace != "/":
            parts.append(sio.namespace)
        if event is not None:
            parts.append(quoted(event))
        if sio.id is not None:
            parts.append(f"id={sio.id}")
        if sio.has_data:
            parts.append(brief(value))
        if sio.type in _BINARY:
            fields["attachments"] = sio.attachments
            parts.append(f"+{sio.attachments} attachment{'s' if sio.attachments != 1 else ''}")
        return Decoded(
            "socketio",
            kind,
            value,
            event=event,
            topic=None,
            id=sio.id,
            fields=fields,
            layers=("engineio",),
            summary=" ".join(parts),
        )

    def _attachment(self, data: bytes, from_client: bool) -> Decoded:
        pending = self._pending.get(from_client)
        if pending is None:
            return Decoded(
                "engineio",
                "message",
                data,
                fields={"data": data},
                summary=f"engine.io message <{len(data)} B>",
            )
        pending.parts.append(data)
        head, sio = pending.head, pending.packet
        number = len(pending.parts)
        complete = number >= sio.attachments
        fields: dict[str, Any] = {
            "namespace": sio.namespace,
            "attachments": sio.attachments,
            "part": number,
            "data": data,
            "complete": complete,
        }
        value = None
        where = f"attachment {number}/{sio.attachments} <{len(data)} B>"
        if complete:
            del self._pending[from_client]
            value = _fill(head.value, pending.parts)
            plural = "s" if sio.attachments != 1 else ""
            where = f"{brief(value)} (joined: {sio.attachments} attachment{plural})"
        name = f" {quoted(head.event)}" if head.event is not None else ""
        shown = f" id={head.id}" if head.id is not None else ""
        return Decoded(
            "socketio",
            head.kind,
            value,
            event=head.event,
            id=head.id,
            fields=fields,
            layers=("engineio",),
            summary=f"socket.io {head.kind}{name}{shown} {where}",
        )

    def encode(self, decoded: Decoded) -> bytes | None:
        if "data" in decoded.fields:  # an attachment, or a binary Engine.IO message
            data = decoded.fields["data"]
            if not isinstance(data, bytes):
                return None
            return engineio.serialize(engineio.Packet(engineio.MESSAGE, data), version=self.version)
        try:
            if decoded.protocol == "engineio":
                return self._encode_engineio(decoded)
            return self._encode_socketio(decoded)
        except (KeyError, TypeError, ValueError):
            return None

    def _encode_engineio(self, decoded: Decoded) -> bytes:
        kind = engineio.TYPES.index(decoded.kind)
        value = decoded.value
        if isinstance(value, str):
            data = value
        elif kind == 0 and value is not None:
            data = json.dumps(value, separators=(",", ":"))
        else:
            data = decoded.fields.get("raw", "")
        return engineio.serialize(engineio.Packet(kind, data), version=self.version)

    def _encode_socketio(self, decoded: Decoded) -> bytes:
        original: Packet = decoded.fields["packet"]
        packet = Packet(
            KINDS.index(decoded.kind),
            str(decoded.fields.get("namespace", original.namespace)),
            decoded.id,
            decoded.value,
            original.has_data or decoded.value is not None,
            original.attachments,
            original.comma,
            original.ascii,
        )
        if packet.type in _EVENTS:
            if decoded.event is None or not isinstance(decoded.value, list | tuple):
                raise ValueError("an event needs a name and a list of arguments")
            packet.data = [decoded.event, *decoded.value]
            packet.has_data = True
        data = serialize_packet(packet)
        return engineio.serialize(engineio.Packet(engineio.MESSAGE, data), version=self.version)


class SocketIoFactory:
    protocol = "socketio"

    def claims(self, hints: Hints) -> bool:
        path = hints.path
        return "/socket.io/" in path or "EIO=" in path

    def sniff(self, payload: bytes, *, text: bool) -> bool:
        if not text:
            return False
        # The server's first message is Engine.IO's open packet (0{"sid":...}); a client
        # upgrading from polling starts with the probe.
        if payload.startswith(b'0{"sid"') or payload == b"2probe":
            return True
        return payload[:2] == b"40" and (len(payload) == 2 or payload[2:3] in (b"{", b"/"))

    def new(self, hints: Hints) -> SocketIoDecoder:
        return SocketIoDecoder(3 if _EIO3.search(hints.path.partition("?")[2]) else 4)
