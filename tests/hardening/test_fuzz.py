"""Hostile input: arbitrary bytes through the sans-I/O parsers, and garbage at a real proxy.

tests/sansio already feeds arbitrary bytes to ``HeadParser`` (small limits) and to a lone
``FrameReader`` (default deflate parameters). These properties add what was missing:

* ``HeadParser`` and the handshake checks on *near-valid* requests (a real upgrade request
  with bytes inserted, dropped or replaced, cut anywhere), with the proxy's default limits;
* ``FrameReader`` with an ``Inflater`` on frames whose headers are valid and whose payloads are
  corrupt or truncated deflate data, under every negotiable parameter set, so the inflater
  itself (not only the header checks) meets garbage;
* the ``Relay`` fed arbitrary bytes on both legs, interleaved with everything the shell may do
  (EOF, close timeouts, shutdown, the deferred close, injections): it never raises, and what it
  sends each peer is always a valid frame stream for that peer;
* and a real proxy process hit by many connections of garbage, truncated handshakes and random
  frames after a valid handshake: it stays up, serves a valid client afterwards, and never
  prints a traceback (the ``start_proxy`` fixture checks that at teardown).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from tests.harness import (
    HOST,
    StartProxy,
    WsUpstream,
)
from tests.integration import wsraw
from tests.sansio.conftest import split
from tests.sansio.driver import Driven
from wsproxy.exceptions import HttpError
from wsproxy.sansio.bodies import body_framing
from wsproxy.sansio.commands import Timer
from wsproxy.sansio.deflate import DeflateParams, Inflater
from wsproxy.sansio.endpoint import FrameReader
from wsproxy.sansio.events import ControlFrame, DataChunk, Event, Violation
from wsproxy.sansio.frames import Opcode
from wsproxy.sansio.handshake import check_client_request, is_upgrade_request
from wsproxy.sansio.http11 import HeadParser, Limits, Request
from wsproxy.sansio.relay import RelayConfig, Side
from wsproxy.sansio.targets import check_request, parse_target

CLIENT, SERVER = Side.CLIENT, Side.SERVER
# WSPROXY_FUZZ_SCALE=20 runs twenty times as many examples (by hand, for a deeper search).
SCALE = int(os.environ.get("WSPROXY_FUZZ_SCALE", "1"))
HTTP_STATUSES = {400, 414, 431, 501, 502, 505}

# -- HTTP heads ------------------------------------------------------------------------------

VALID_UPGRADE = (
    b"GET ws://example.test:9000/chat?x=1 HTTP/1.1\r\n"
    b"Host: example.test:9000\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

_INTERESTING = [b"\r\n", b"\n", b"\r", b":", b" ", b"\t", b"\x00", b"\xff", b"\x7f", b"%", b"["]


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` with a few bytes inserted, dropped or replaced."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "repeat"]))
        piece = draw(st.one_of(st.sampled_from(_INTERESTING), st.binary(min_size=1, max_size=8)))
        if kind == "insert":
            data[at:at] = piece
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "replace":
            data[at : at + len(piece)] = piece
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 40))] * draw(st.integers(2, 30))
    return bytes(data)


def feed_head(parser: HeadParser, pieces: list[bytes]) -> Request | None:
    for piece in pieces:
        head = parser.feed(piece)
        if head is not None:
            assert isinstance(head, Request)
            return head
    return None


@settings(max_examples=400 * SCALE, deadline=None)
@given(data=mutated(VALID_UPGRADE), cuts=st.lists(st.integers(0, 600), max_size=8))
def test_near_valid_upgrade_requests_only_raise_http_error(data: bytes, cuts: list[int]) -> None:
    """Default and tight limits alike: a head, or an HttpError with a status we document."""
    for limits in (Limits(), Limits(max_line=48, max_head_size=256, max_headers=5)):
        whole: Request | HttpError | None
        try:
            whole = feed_head(HeadParser(limits), [data])
        except HttpError as error:
            assert error.status in HTTP_STATUSES, error
            whole = error
        try:
            pieces = feed_head(HeadParser(limits), split(data, cuts))
        except HttpError as error:
            assert error.status in HTTP_STATUSES, error
            assert isinstance(whole, HttpError), "refused only when split"
            continue
        # Cutting the bytes anywhere never changes the outcome.
        assert pieces == whole
        if pieces is None:
            continue
        try:
            check_request(pieces)
            body_framing(pieces)
            parse_target(pieces)
            if is_upgrade_request(pieces):
                check_client_request(pieces)
        except HttpError as error:
            assert error.status in {*HTTP_STATUSES, 426}, error


@settings(max_examples=200 * SCALE, deadline=None)
@given(data=st.binary(min_size=1, max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_arbitrary_bytes_with_default_limits_only_raise_http_error(
    data: bytes, cuts: list[int]
) -> None:
    try:
        feed_head(HeadParser(Limits()), split(data, cuts))
    except HttpError as error:
        assert error.status in HTTP_STATUSES, error


# -- frames with permessage-deflate ----------------------------------------------------------

DEFLATE_PARAMS = st.builds(
    DeflateParams,
    server_no_context_takeover=st.booleans(),
    client_no_context_takeover=st.booleans(),
    server_max_window_bits=st.integers(8, 15),
    client_max_window_bits=st.integers(8, 15),
)


def frame_header(opcode: int, length: int, *, fin: bool, rsv1: bool, masked: bool) -> bytes:
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    bit = 0x80 if masked else 0
    if length < 126:
        head = bytes([first, bit | length])
    elif length < 1 << 16:
        head = bytes([first, bit | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first, bit | 127]) + length.to_bytes(8, "big")
    return head + (b"\x00\x00\x00\x00" if masked else b"")  # a zero mask: payload as is


@st.composite
def deflate_payloads(draw: st.DrawFn) -> bytes:
    """Compressed data that is valid, truncated, corrupted, a bomb, or plain noise."""
    kind = draw(st.sampled_from(["valid", "truncated", "flipped", "bomb", "bfinal", "noise"]))
    if kind == "noise":
        return draw(st.binary(max_size=200))
    plain = draw(st.binary(max_size=300)) if kind != "bomb" else b"\x00" * 200_000
    encoder = zlib.compressobj(wbits=-draw(st.integers(9, 15)))
    flush = zlib.Z_FINISH if kind == "bfinal" else zlib.Z_SYNC_FLUSH
    payload = encoder.compress(plain) + encoder.flush(flush)
    if flush == zlib.Z_SYNC_FLUSH:
        payload = payload[:-4]
    if kind == "truncated" and payload:
        payload = payload[: draw(st.integers(0, len(payload) - 1))]
    elif kind == "flipped" and payload:
        at = draw(st.integers(0, len(payload) - 1))
        payload = (
            payload[:at] + bytes([payload[at] ^ draw(st.integers(1, 255))]) + payload[at + 1 :]
        )
    return payload


@st.composite
def deflate_streams(draw: st.DrawFn, masked: bool) -> bytes:
    """Frames with valid headers (mostly RSV1) around hostile compressed payloads."""
    out = b""
    for _ in range(draw(st.integers(1, 6))):
        payload = draw(deflate_payloads())
        opcode = draw(st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION]))
        fin = draw(st.booleans())
        rsv1 = draw(st.integers(0, 4)) > 0
        if draw(st.integers(0, 5)) == 0:
            payload = payload[:100]
            opcode, fin, rsv1 = draw(st.sampled_from([Opcode.PING, Opcode.PONG])), True, False
        out += frame_header(opcode, len(payload), fin=fin, rsv1=rsv1, masked=masked) + payload
    return out


@settings(max_examples=300 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), masked=st.booleans(), params=DEFLATE_PARAMS)
def test_inflating_reader_on_hostile_compressed_frames_emits_only_events(
    data: st.DataObject, masked: bool, params: DeflateParams
) -> None:
    wire = data.draw(deflate_streams(masked))
    if data.draw(st.booleans()):
        wire += data.draw(st.binary(max_size=50))
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    limit = data.draw(st.sampled_from([100, 10_000, 1 << 20]))
    reader = FrameReader(masked=masked, max_frame_size=1 << 20, max_message_size=limit)
    reader.inflater = Inflater(params, masked, limit)
    events: list[Event] = []
    for piece in split(wire, cuts):
        events += reader.receive_data(piece)
    assert all(isinstance(e, (DataChunk, ControlFrame, Violation)) for e in events)
    violations = [e for e in events if isinstance(e, Violation)]
    assert len(violations) <= 1
    if violations:
        assert events[-1] is violations[0] is reader.failed
        assert violations[0].code in (1002, 1007, 1009)
    inflated = 0
    for event in events:
        if isinstance(event, DataChunk):
            inflated = 0 if event.frame_start and event.opcode != Opcode.CONTINUATION else inflated
            inflated += len(event.content)
            assert inflated <= limit + 1  # never more than the budget, whatever the ratio


# -- the relay -------------------------------------------------------------------------------

ACTIONS = st.sampled_from(
    ["client", "server", "client", "server", "eof", "timeout", "deferred", "inject", "shutdown"]
)


def stream_reader(masked: bool, params: DeflateParams | None) -> FrameReader:
    reader = FrameReader(masked=masked, max_frame_size=1 << 30, max_message_size=1 << 30)
    if params is not None:
        reader.inflater = Inflater(params, masked, None)
    return reader


@st.composite
def hostile_bytes(draw: st.DrawFn, masked: bool) -> bytes:
    """Noise, or frames with valid headers (and hostile payloads), or both."""
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return draw(st.binary(max_size=300))
    out = draw(deflate_streams(masked))
    if choice == 2:
        out += draw(st.binary(max_size=100))
    return out


@settings(max_examples=250 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), deflate=st.booleans(), params=DEFLATE_PARAMS)
def test_relay_on_arbitrary_bytes_from_both_sides(
    data: st.DataObject, deflate: bool, params: DeflateParams
) -> None:
    """Whatever the peers send and whatever the shell does meanwhile, the relay never raises,
    and each peer only ever receives a valid frame stream (it may end mid-frame when that
    peer's transport is aborted)."""
    negotiated = params if deflate else None
    limit = data.draw(st.sampled_from([200, 70_000]))
    relay = Driven(RelayConfig(max_frame_size=limit, max_message_size=limit, deflate=negotiated))
    for leg in (relay.client, relay.server):
        leg.reader.keep_binary_masked = data.draw(st.booleans())
    wire = {CLIENT: data.draw(hostile_bytes(True)), SERVER: data.draw(hostile_bytes(False))}
    pieces = {
        side: iter(split(blob, data.draw(st.lists(st.integers(0, len(blob)), max_size=6))))
        for side, blob in wire.items()
    }
    # What each peer receives, parsed as that peer would: the client reads unmasked frames.
    receivers = {CLIENT: stream_reader(False, negotiated), SERVER: stream_reader(True, negotiated)}
    received: dict[Side, list[Event]] = {CLIENT: [], SERVER: []}
    for action in data.draw(st.lists(ACTIONS, max_size=20)):
        side = data.draw(st.sampled_from([CLIENT, SERVER]))
        if action in ("client", "server"):
            side = CLIENT if action == "client" else SERVER
            piece = next(pieces[side], None)
            if piece is not None:
                relay.receive(side, piece)
        elif action == "eof":
            relay.receive_eof(side, "fuzz")
        elif action == "timeout":
            relay.close_timeout(side)
        elif action == "deferred":
            relay.fire(Timer.GRACE)
        elif action == "inject":
            relay.inject(side, Opcode.TEXT, b"injected")
        else:
            relay.close_both(1001, "shutdown")
        for to in (CLIENT, SERVER):
            out = relay.data_to_send(to)
            if out:
                received[to] += receivers[to].receive_data(out)
    for to in (CLIENT, SERVER):
        bad = [e for e in received[to] if isinstance(e, Violation)]
        assert not bad, f"the proxy sent the {to.value} an invalid stream: {bad}"
        closes = [e for e in received[to] if isinstance(e, ControlFrame) and e.opcode == 8]
        assert len(closes) <= 1, f"the {to.value} got {len(closes)} close frames"


# -- a real proxy ----------------------------------------------------------------------------

FUZZ_SEED = int(os.environ.get("WSPROXY_FUZZ_SEED", "0")) or random.randrange(1 << 32)
FUZZ_CONNECTIONS = 60


async def one_hostile_connection(rng: random.Random, port: int, upstream: str) -> None:
    kind = rng.choice(["garbage", "truncated", "frames", "frames", "bigheader", "tls"])
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        if kind == "garbage":
            writer.write(rng.randbytes(rng.randint(1, 4000)))
        elif kind == "truncated":
            request = wsraw.upgrade_request(f"ws://{upstream}/fuzz", upstream)
            writer.write(request[: rng.randint(0, len(request) - 1)])
        elif kind == "bigheader":
            writer.write(b"GET ws://" + upstream.encode() + b"/ HTTP/1.1\r\nX: ")
            writer.write(rng.randbytes(70_000))
        elif kind == "tls":
            writer.write(b"\x16\x03\x01" + rng.randbytes(rng.randint(0, 600)))
        else:
            key = wsraw.new_key()
            writer.write(wsraw.upgrade_request(f"ws://{upstream}/fuzz", upstream, key=key))
            head = await asyncio.wait_for(wsraw.read_head(reader), 10)
            assert head.status == 101, head
            for _ in range(rng.randint(1, 8)):
                if rng.random() < 0.5:
                    payload = rng.randbytes(rng.randint(0, 300))
                    opcode = rng.choice([0, 1, 2, 3, 8, 9, 10, 11])
                    writer.write(
                        wsraw.encode_frame(
                            opcode,
                            payload,
                            fin=rng.random() < 0.8,
                            mask=rng.random() < 0.9,
                            rsv=rng.choice([0, 0, 0, 0x40, 0x20]),
                        )
                    )
                else:
                    writer.write(rng.randbytes(rng.randint(1, 200)))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        if rng.random() < 0.5:
            # Read whatever the proxy answers, for a moment.
            with contextlib.suppress(TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                await asyncio.wait_for(reader.read(1 << 20), rng.uniform(0.05, 0.5))
    finally:
        if rng.random() < 0.3:
            writer.transport.abort()
        else:
            writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


@pytest.mark.timeout(60)
async def test_real_proxy_survives_garbage(start_proxy: StartProxy, ws_echo: WsUpstream) -> None:
    """Seed in the failure message; rerun one with WSPROXY_FUZZ_SEED=N."""
    rng = random.Random(FUZZ_SEED)
    proxy = await start_proxy("--handshake-timeout", "2", "--close-timeout", "1")
    upstream = f"{HOST}:{ws_echo.port}"
    seeds = [rng.randrange(1 << 32) for _ in range(FUZZ_CONNECTIONS)]
    results = await asyncio.gather(
        *(one_hostile_connection(random.Random(s), proxy.port, upstream) for s in seeds),
        return_exceptions=True,
    )
    unexpected = [r for r in results if isinstance(r, BaseException)]
    assert not unexpected, f"seed {FUZZ_SEED}: {unexpected[:3]!r}"
    assert proxy.returncode is None, f"seed {FUZZ_SEED}: the proxy died\n{proxy.describe()}"
    async with connect(
        f"ws://{upstream}/after", proxy=proxy.url, open_timeout=10, ping_interval=None
    ) as ws:
        await ws.send("still here")
        assert await asyncio.wait_for(ws.recv(), 10) == "still here"
    assert "Traceback" not in proxy.stderr(), f"seed {FUZZ_SEED}\n{proxy.describe()}"
    assert "internal error" not in proxy.stderr(), f"seed {FUZZ_SEED}\n{proxy.describe()}"
