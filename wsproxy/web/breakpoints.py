"""Breakpoints: hold a matching message or upgrade request until a person decides (issue 15).

``Breakpoints`` is a plugin for the chain. Its ``message`` hook is ``async``: a message a rule
matches is held (the hook awaits) until ``resolve`` says forward, forward edited, drop, or
answer the sender, or until the rule's timeout applies its default. The relay keeps order
behind it (``wsproxy.sansio.hookseam``): later messages from the same peer wait, while pings
and pongs, the other direction and every other connection go on. Its ``handshake_request``
hook holds a client's upgrade request the same way: forward (with edited headers) or refuse
with a status.

Memory stays bounded: at most ``max_pauses`` pauses and ``max_paused_bytes`` of held content
at once (one message per direction per connection, each at most ``--max-message-size``);
a match beyond them is forwarded, with a log line. A connection that ends while something of
it is held cancels the hook: the pause ends as ``gone``.

Everything runs on the proxy's event loop: call ``set_rules``, ``resolve`` and the rest from
it (the UI server does). ``on_event`` gets the UI's push events (``/work/notes/ui-api.md``):
``pause``, ``resume`` and ``breakpoints``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wsproxy.decoders.base import Hints
from wsproxy.filtering import DecodeState, FlowView, MessageView
from wsproxy.filters import Bound, FilterError
from wsproxy.model import Flow, Message
from wsproxy.web.rules import Decision, Rule, handshake_action, message_action, parse_rules
from wsproxy.web.shapes import message_dict

__all__ = ["MAX_PAUSED_BYTES", "MAX_PAUSES", "Breakpoints", "FilterError"]

log = logging.getLogger("wsproxy")

MAX_PAUSED_BYTES = 64 * 1024 * 1024  # content held at breakpoints, all connections together
MAX_PAUSES = 256  # pauses at once: more than a person works through, few enough to list

Event = dict[str, Any]


@dataclass(eq=False)
class _Pause:
    """One held item: the message (or the flow's upgrade request) and how it ends."""

    id: str
    flow: Flow
    rule: Rule
    message: Message | None
    seq: int
    size: int
    deadline: float
    decided: asyncio.Future[Decision]
    timer: asyncio.TimerHandle  # the rule's timeout


@dataclass(eq=False)
class _FlowRules:
    """One flow's message rules bound to its handshake (``Filter.bind``), per rule list."""

    generation: int
    bound: list[tuple[Rule, Bound]]
    hints: Hints
    decoding: bool  # a rule reads decoded values (~proto, ~event ...): decode for it
    state: DecodeState = field(default_factory=dict)  # a decoder's, kept across rule lists
    seen: int = 0  # messages of the flow this plugin saw: a paused MSG's ``seq``


class Breakpoints:
    """The pause engine: rules, the pauses they hold, and the hooks that hold them."""

    name = "breakpoints"

    def __init__(
        self,
        *,
        max_paused_bytes: int = MAX_PAUSED_BYTES,
        max_pauses: int = MAX_PAUSES,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.max_paused_bytes = max_paused_bytes
        self.max_pauses = max_pauses
        self.on_event = on_event
        # The MSG ``seq`` of a paused message: the UI server's own numbering when it sets this.
        self.seq_of: Callable[[Flow, Message], int] | None = None
        self._rules: list[Rule] = []
        self._message_rules: list[Rule] = []
        self._handshake_rules: list[Rule] = []
        self._generation = 0
        self._flows: dict[str, _FlowRules] = {}
        self._pauses: dict[str, _Pause] = {}
        self._paused_bytes = 0
        self._next_pause = 0
        self._full_logged = False  # one line per stretch of being full
        self._event_failed = False

    # -- the API of the UI server --------------------------------------------------------------

    def set_rules(self, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace the whole rule list (all checked first: FilterError or ValueError, and
        nothing changes). Returns the rules as stored, ids assigned. Pauses already held
        keep the timeout and default of the rule that made them."""
        parsed = parse_rules(rules)
        self._rules = parsed
        self._message_rules = [r for r in parsed if r.enabled and r.on == "message"]
        self._handshake_rules = [r for r in parsed if r.enabled and r.on == "handshake"]
        self._generation += 1
        shaped = self.rules()
        self._emit({"type": "breakpoints", "breakpoints": shaped})
        return shaped

    def rules(self) -> list[dict[str, Any]]:
        return [rule.to_dict() for rule in self._rules]

    def pauses(self) -> list[dict[str, Any]]:
        """What is held now, oldest first (PAUSE dicts: full text or base64 of each)."""
        return [self._shape(pause) for pause in self._pauses.values()]

    def resolve(self, pause_id: str, action: dict[str, Any]) -> None:
        """Decide a pause: KeyError for an id not held (any more), ValueError for an action
        that does not fit it (the message says why; the pause stays)."""
        pause = self._pauses.get(pause_id)
        if pause is None:
            raise KeyError(f"no pause {pause_id!r}: resolved, timed out, or its connection ended")
        if pause.message is None:
            decision = handshake_action(action)
        else:
            decision = message_action(action, text_message=pause.message.is_text)
        self._decide(pause, decision, decision.action)

    @property
    def paused_bytes(self) -> int:
        return self._paused_bytes

    # -- hooks ---------------------------------------------------------------------------------

    async def handshake_request(self, flow: Flow) -> None:
        if not self._handshake_rules:
            return
        view = FlowView(flow)
        rule = next((r for r in self._handshake_rules if r.filter.bind(view).verdict), None)
        if rule is None:
            return
        size = sum(len(name) + len(value) + 4 for name, value in flow.request.headers.items())
        pause = self._hold(flow, rule, None, 0, size)
        if pause is None:
            return
        decision = await self._wait(pause)
        if decision.action == "refuse":
            flow.refuse(decision.status, decision.reason)
        elif decision.headers is not None:
            headers = flow.request.headers
            # In place: the proxy keeps this object for the request it sends upstream.
            for name in {name.lower() for name, _ in headers.items()}:
                headers.remove(name)
            for name, value in decision.headers.items():
                headers.add(name, value)

    async def message(self, flow: Flow, message: Message) -> None:
        if message.injected:
            return  # what a plugin (or an answer from here) sends is nobody's to pause
        entry = self._flow_rules(flow)
        entry.seen += 1
        rule = self._match(entry, message)
        if rule is None:
            return
        seq = self.seq_of(flow, message) if self.seq_of is not None else entry.seen
        pause = self._hold(flow, rule, message, seq, len(message.content))
        if pause is None:
            return
        decision = await self._wait(pause)
        if decision.action == "drop":
            message.drop()
        elif decision.action == "answer":
            assert decision.content is not None
            message.drop()
            if not flow.inject(decision.content, to_client=message.from_client):
                log.warning(
                    "[%s] breakpoint %s: the answer was not sent (the %s is closing or "
                    "does not read fast enough)",
                    flow.id,
                    pause.id,
                    message.direction,
                )
        elif decision.content is not None:
            message.content = decision.content  # marks it modified (by "breakpoints")

    def closed(self, flow: Flow) -> None:
        """The flow is over: its bound rules go, and anything still held of it (the hook is
        cancelled first as a rule, this is the safety net) ends as gone."""
        self._flows.pop(flow.id, None)
        for pause in [p for p in self._pauses.values() if p.flow is flow]:
            self._decide(pause, Decision("drop"), "gone")

    # -- matching ------------------------------------------------------------------------------

    def _flow_rules(self, flow: Flow) -> _FlowRules:
        entry = self._flows.get(flow.id)
        if entry is not None and entry.generation == self._generation:
            return entry
        view = FlowView(flow)
        bound = [(rule, rule.filter.bind(view)) for rule in self._message_rules]
        bound = [(rule, b) for rule, b in bound if b.verdict is not False]
        hints = Hints(flow.subprotocol, flow.request.path)
        decoding = any(rule.filter.needs_decoding for rule, _ in bound)
        fresh = _FlowRules(self._generation, bound, hints, decoding)
        if entry is not None:
            fresh.state, fresh.seen = entry.state, entry.seen
        self._flows[flow.id] = fresh
        return fresh

    @staticmethod
    def _match(entry: _FlowRules, message: Message) -> Rule | None:
        view = MessageView(message, entry.hints, entry.state) if entry.decoding else None
        for rule, bound in entry.bound:
            if not rule.applies_to(message.from_client):
                continue
            if bound.verdict:
                return rule
            if view is None:
                view = MessageView(message)
            if bound.matches(view):
                return rule
        return None

    # -- holding -------------------------------------------------------------------------------

    def _hold(
        self, flow: Flow, rule: Rule, message: Message | None, seq: int, size: int
    ) -> _Pause | None:
        """A new pause, or None when the limits are reached (the item goes on, logged)."""
        if len(self._pauses) >= self.max_pauses or (
            self._paused_bytes + size > self.max_paused_bytes
        ):
            if not self._full_logged:
                self._full_logged = True
                log.warning(
                    "[%s] breakpoint %s matched but nothing more is held: %d pauses and %d "
                    "bytes already (limits %d and %d); forwarded, and so are further "
                    "matches until a pause ends (not logged)",
                    flow.id,
                    rule.id,
                    len(self._pauses),
                    self._paused_bytes,
                    self.max_pauses,
                    self.max_paused_bytes,
                )
            return None
        loop = asyncio.get_running_loop()
        self._next_pause += 1
        pause_id = f"p{self._next_pause}"
        pause = _Pause(
            pause_id,
            flow,
            rule,
            message,
            seq,
            size,
            time.time() + rule.timeout,
            loop.create_future(),
            loop.call_later(rule.timeout, self._expire, pause_id),
        )
        self._pauses[pause.id] = pause
        self._paused_bytes += size
        what = f"{message.direction} message" if message is not None else "upgrade request"
        log.info(
            "[%s] breakpoint %s: %s paused as %s (%s in %g s)",
            flow.id,
            rule.id,
            what,
            pause.id,
            rule.default,
            rule.timeout,
        )
        self._emit({"type": "pause", "pause": self._shape(pause)})
        return pause

    async def _wait(self, pause: _Pause) -> Decision:
        try:
            return await pause.decided
        except asyncio.CancelledError:
            self._end(pause, "gone")  # the connection ended (or the proxy is stopping)
            raise

    def _expire(self, pause_id: str) -> None:
        pause = self._pauses.get(pause_id)
        if pause is None:  # decided in the same turn of the loop
            return
        default = pause.rule.default
        if pause.message is not None:
            decision = Decision(default)
        elif default == "forward":
            decision = Decision("forward")
        else:
            decision = Decision("refuse", reason="refused at a breakpoint (nobody answered)")
        log.info("[%s] breakpoint %s: timed out: %s", pause.flow.id, pause.id, default)
        self._decide(pause, decision, f"timeout:{default}")

    def _decide(self, pause: _Pause, decision: Decision, label: str) -> None:
        if pause.decided.done():
            # The hook's task was just cancelled (its connection ended) and has not run yet
            # to say so: it ends as gone, whatever is decided now.
            label = "gone"
        else:
            pause.decided.set_result(decision)
        self._end(pause, label)

    def _end(self, pause: _Pause, label: str) -> None:
        """The pause is over (once): its timer, its bytes and its place go; ``resume``."""
        if self._pauses.pop(pause.id, None) is None:
            return
        pause.timer.cancel()
        self._paused_bytes -= pause.size
        self._full_logged = False
        if label == "gone":
            log.info(
                "[%s] breakpoint %s: the connection ended while paused", pause.flow.id, pause.id
            )
        self._emit({"type": "resume", "pause": pause.id, "action": label})

    # -- shapes and events ---------------------------------------------------------------------

    def _shape(self, pause: _Pause) -> dict[str, Any]:
        """The PAUSE dict of the contract (plus ``rule``: the id of the breakpoint)."""
        message, flow = pause.message, pause.flow
        shape: dict[str, Any] = {
            "id": pause.id,
            "conn": flow.id,
            "rule": pause.rule.id,
            "on": pause.rule.on,
            "from": None,
            "msg": None,
            "text": None,
            "base64": None,
            "request": None,
            "deadline": pause.deadline,
        }
        if message is None:
            request = flow.request
            shape["request"] = {
                "method": "GET",
                "url": request.url,
                "headers": [[name, value] for name, value in request.headers.items()],
            }
            return shape
        shape["from"] = message.direction
        shape["msg"] = message_dict(flow.id, pause.seq, message)
        if message.is_text:
            shape["text"] = message.text
        else:
            shape["base64"] = base64.b64encode(message.content).decode("ascii")
        return shape

    def _emit(self, event: Event) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            if not self._event_failed:  # once: the UI may be broken, the proxy goes on
                self._event_failed = True
                log.exception("breakpoints: the on_event callback failed (later: not logged)")
