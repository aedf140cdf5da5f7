"""fault: make a WebSocket misbehave on purpose, to see how clients cope.

Options (``--set NAME=VALUE``)::

    fault_delay_ms=0               hold each message this long before forwarding it
    fault_drop_rate=0              the share of messages dropped, 0 to 1
    fault_cut_after_messages=0     end the WebSocket once this many messages went through
    fault_cut_after_bytes=0        end it once this many message bytes went through
    fault_direction=both           whose messages: client, server or both
    fault_seed=-1                  the seed of the drops; -1 picks one and logs it

Examples::

    wsproxy -s fault --set fault_delay_ms=250 --set fault_direction=server
    wsproxy -s fault --set fault_drop_rate=0.1 --set fault_seed=42
    wsproxy -s fault --set fault_cut_after_messages=10 --set fault_direction=client

Delays: one ``asyncio.sleep`` per message, so a direction's messages stay in order and queue
up behind each other (the proxy stops reading from that peer meanwhile; TCP pushes back on
it); the other direction is not held.

Drops: each message has a ``fault_drop_rate`` chance of being dropped (recorded as dropped by
``fault``). The choice is repeatable: each flow, numbered in the order flows open since the
plugin was configured, has one ``random.Random`` per direction seeded from (seed, flow number,
direction); so the same seed and the same traffic drop the same messages, however the two
directions interleave. Without a seed one is picked and logged (``fault: seed 1234``).

Cuts: the first message past ``fault_cut_after_messages`` messages or ``fault_cut_after_bytes``
bytes (counted over the messages forwarded in ``fault_direction``) is dropped, and the WebSocket
is closed on both sides with 1011 "fault injected" (a clean close frame); with
``--set fault_cut_abort=true`` both TCP connections are cut instead, without close frames, as a
real network failure would (the client sees 1006).

Cost: the plugin asks the chain for messages only when one of the faults is set (the
``message`` hook reads as ``None`` otherwise).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from wsproxy.exceptions import ConfigError
from wsproxy.model import Flow, Message
from wsproxy.plugins import Option

log = logging.getLogger("wsproxy")

CUT_CODE = 1011  # RFC 6455 7.4.1: an unexpected condition prevented fulfilling the request
CUT_REASON = "fault injected"


@dataclass
class FlowState:
    """Per flow, in ``flow.metadata["fault"]``."""

    number: int
    rngs: dict[str, random.Random] = field(default_factory=dict)
    messages: int = 0
    bytes: int = 0
    cut: bool = False


class Fault:
    name = "fault"
    options = [
        Option("fault_delay_ms", float, 0.0, "delay each message by this many milliseconds"),
        Option("fault_drop_rate", float, 0.0, "share of messages dropped (0..1)"),
        Option("fault_cut_after_messages", int, 0, "close with 1011 after this many messages"),
        Option("fault_cut_after_bytes", int, 0, "close with 1011 after this many bytes"),
        Option("fault_cut_abort", bool, False, "cut TCP instead of closing with 1011"),
        Option("fault_direction", str, "both", "messages affected: client, server or both"),
        Option("fault_seed", int, -1, "seed for repeatable drops (-1: pick one and log it)"),
    ]

    def __init__(self) -> None:
        self.delay = 0.0
        self.drop_rate = 0.0
        self.cut_messages = 0
        self.cut_bytes = 0
        self.cut_abort = False
        self.direction = "both"
        self.seed = 0
        self._flows = 0

    def configure(self, options: object) -> None:
        defaults = {option.name: option.default for option in self.options}

        def get(name: str) -> Any:
            return getattr(options, name, defaults[name])

        self.delay = float(get("fault_delay_ms")) / 1000
        self.drop_rate = float(get("fault_drop_rate"))
        self.cut_messages = int(get("fault_cut_after_messages"))
        self.cut_bytes = int(get("fault_cut_after_bytes"))
        self.cut_abort = bool(get("fault_cut_abort"))
        self.direction = str(get("fault_direction"))
        if self.delay < 0 or self.cut_messages < 0 or self.cut_bytes < 0:
            raise ConfigError("fault_delay_ms and fault_cut_after_*: 0 (off) or more")
        if not 0 <= self.drop_rate <= 1:
            raise ConfigError(f"fault_drop_rate={self.drop_rate}: a share, from 0 to 1")
        if self.direction not in ("client", "server", "both"):
            raise ConfigError(f"fault_direction={self.direction!r}: client, server or both")
        seed = int(get("fault_seed"))
        if seed < 0:
            seed = random.SystemRandom().randrange(2**32)
            if self.drop_rate:
                log.info("fault: seed %d (repeat with --set fault_seed=%d)", seed, seed)
        self.seed = seed
        self._flows = 0  # flows are numbered from here: a new run repeats the old one

    @property
    def active(self) -> bool:
        return bool(self.delay or self.drop_rate or self.cut_messages or self.cut_bytes)

    @property
    def message(self) -> Callable[[Flow, Message], Awaitable[None]] | None:
        return self._message if self.active else None

    def opened(self, flow: Flow) -> None:
        self._state(flow)

    def _state(self, flow: Flow) -> FlowState:
        state = flow.metadata.get("fault")
        if not isinstance(state, FlowState):
            self._flows += 1
            state = flow.metadata["fault"] = FlowState(self._flows)
        return state

    async def _message(self, flow: Flow, message: Message) -> None:
        if self.direction != "both" and message.direction != self.direction:
            return
        state = self._state(flow)
        if state.cut:
            message.drop()
            return
        size = len(message.content)
        if (self.cut_messages and state.messages >= self.cut_messages) or (
            self.cut_bytes and state.bytes + size > self.cut_bytes
        ):
            state.cut = True
            message.drop()
            log.info(
                "fault: [%s] cut after %d messages, %d bytes: closing with %d",
                flow.id,
                state.messages,
                state.bytes,
                CUT_CODE,
            )
            if self.cut_abort:
                flow.abort()
            else:
                flow.close(CUT_CODE, CUT_REASON)
            return
        if self.drop_rate:
            rng = state.rngs.get(message.direction)
            if rng is None:
                # str seeds hash with SHA-512 (random.seed, version 2): stable across runs.
                rng = random.Random(f"{self.seed}/{state.number}/{message.direction}")
                state.rngs[message.direction] = rng
            if rng.random() < self.drop_rate:
                message.drop()
                return
        state.messages += 1
        state.bytes += size
        if self.delay:
            await asyncio.sleep(self.delay)


plugins = [Fault()]
