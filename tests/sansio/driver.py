"""A relay with a shell made of lists: every command it returns is carried out on plain data.

``Driven`` feeds events and keeps what the commands said: the bytes each peer got (read
with ``data_to_send``), records, notes, which transports were closed or aborted, the timers
armed and the items handed to hooks. Tests read as playbooks: feed this, expect that.
"""

from __future__ import annotations

from typing import Any

from wsproxy.sansio.commands import (
    AbortTransport,
    CloseTransport,
    Command,
    Finished,
    Note,
    PauseReading,
    Record,
    ResumeReading,
    RunHooks,
    Send,
    StartTimer,
    Timer,
)
from wsproxy.sansio.items import FrameEvent, Message
from wsproxy.sansio.records import FrameRecord
from wsproxy.sansio.relay import Relay, RelayConfig, Side

CLOSE_TIMER = {Side.CLIENT: Timer.CLOSE_CLIENT, Side.SERVER: Timer.CLOSE_SERVER}


class Driven:
    """A ``Relay`` and the effects of its commands."""

    def __init__(self, config: RelayConfig) -> None:
        self.relay = Relay(config)
        self.sent: dict[Side, bytearray] = {Side.CLIENT: bytearray(), Side.SERVER: bytearray()}
        self.records: list[FrameRecord] = []
        self.notes: list[tuple[Side, str]] = []
        self.transports: dict[Side, str] = {}  # "closed", "lingered" or "aborted"
        self.timers: list[tuple[Timer, float]] = []
        self.hooks: list[tuple[Side, FrameEvent | Message]] = []
        self.paused: set[Side] = set()
        self.finished_commands = 0
        self.log: list[Command] = []

    def run(self, commands: list[Command]) -> None:
        for command in commands:
            self.log.append(command)
            if isinstance(command, Send):
                self.sent[command.side] += b"".join(command.chunks)
            elif isinstance(command, Record):
                self.records.append(command.record)
            elif isinstance(command, Note):
                self.notes.append((command.side, command.text))
            elif isinstance(command, CloseTransport):
                assert command.side not in self.transports, f"{command.side} disposed twice"
                self.transports[command.side] = "lingered" if command.linger else "closed"
            elif isinstance(command, AbortTransport):
                assert command.side not in self.transports, f"{command.side} disposed twice"
                self.transports[command.side] = "aborted"
            elif isinstance(command, StartTimer):
                self.timers.append((command.timer, command.seconds))
            elif isinstance(command, RunHooks):
                self.hooks.append((command.side, command.item))
            elif isinstance(command, PauseReading):
                self.paused.add(command.side)
            elif isinstance(command, ResumeReading):
                self.paused.discard(command.side)
            else:
                assert isinstance(command, Finished)
                self.finished_commands += 1
                assert self.finished_commands == 1, "Finished twice"

    # -- the relay's entry points, commands carried out ---------------------------------------

    def receive(self, side: Side, data: bytes) -> None:
        self.run(self.relay.receive(side, data))

    def receive_eof(self, side: Side, reason: str = "") -> None:
        self.run(self.relay.receive_eof(side, reason))

    def fire(self, timer: Timer) -> None:
        self.run(self.relay.timer_fired(timer))

    def send_deferred_close(self, side: Side) -> None:
        assert side is Side.SERVER, "only the upstream's close waits for the grace"
        self.fire(Timer.GRACE)

    def close_timeout(self, side: Side) -> None:
        self.fire(CLOSE_TIMER[side])

    def close_both(self, code: int, reason: str) -> None:
        self.run(self.relay.close(None, code, reason))

    def close_side(self, side: Side | None, code: int, reason: str) -> None:
        self.run(self.relay.close(side, code, reason))

    def inject(self, side: Side, opcode: int, payload: bytes) -> bool:
        can = self.relay.leg(side).can_send
        self.run(self.relay.inject(side, opcode, payload))
        return can

    def resolve(self, side: Side) -> None:
        self.run(self.relay.hooks_done(side))

    def abort(self) -> None:
        self.run(self.relay.abort())

    def data_to_send(self, side: Side) -> bytes:
        data = bytes(self.sent[side])
        self.sent[side].clear()
        return data

    def closed(self, side: Side) -> bool:
        """Whether the shell was told to close ``side``'s transport (at once or lingering)."""
        return self.transports.get(side) in ("closed", "lingered")

    def aborted(self, side: Side) -> bool:
        return self.transports.get(side) == "aborted"

    def __getattr__(self, name: str) -> Any:  # client, server, leg, finished, closed_by
        return getattr(self.relay, name)
