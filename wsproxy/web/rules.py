"""Breakpoint rules and the actions that resolve a pause: checked here, before anything acts.

Pure: no asyncio, no clock, no proxy objects. ``parse_rules`` turns the web UI's BP dicts
(``/work/notes/ui-api.md``, ``PUT /api/breakpoints``) into ``Rule`` values, and
``message_action`` / ``handshake_action`` turn a ``POST /api/pauses/{id}`` body into a
``Decision``. Every refusal is a ``ValueError`` whose message says which field is wrong and
why; a filter that does not compile raises the filter language's own ``FilterError`` (a
``ValueError`` too) with its column.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wsproxy.filters import Filter, compile_filter
from wsproxy.sansio.http11 import Headers

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_RULES",
    "MAX_TIMEOUT",
    "Decision",
    "Rule",
    "handshake_action",
    "message_action",
    "parse_rules",
]

DEFAULT_TIMEOUT = 60.0  # seconds a pause waits for a person before the rule's default acts
MAX_TIMEOUT = 24 * 3600.0  # a day: a forgotten pause still ends, and what it holds with it
MAX_RULES = 200  # a rule list for a person to read; each message is matched against all
MAX_FILTER = 4096  # characters of one filter expression
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_RULE_KEYS = frozenset({"id", "filter", "direction", "on", "timeout", "default", "enabled"})
DIRECTIONS = ("client", "server", "both")
TARGETS = ("message", "handshake")
DEFAULTS = ("forward", "drop")


@dataclass(frozen=True)
class Rule:
    """One breakpoint: pause what ``filter`` matches, from ``direction``, at ``on``."""

    id: str
    filter: Filter
    direction: str = "both"
    on: str = "message"
    timeout: float = DEFAULT_TIMEOUT
    default: str = "forward"
    enabled: bool = True

    def applies_to(self, from_client: bool) -> bool:
        return self.direction == "both" or (self.direction == "client") == from_client

    def to_dict(self) -> dict[str, Any]:
        """The BP dict of the contract (the timeout as an int when it is whole)."""
        timeout: float | int = int(self.timeout) if self.timeout.is_integer() else self.timeout
        return {
            "id": self.id,
            "filter": self.filter.text,
            "direction": self.direction,
            "on": self.on,
            "timeout": timeout,
            "default": self.default,
            "enabled": self.enabled,
        }


@dataclass(frozen=True)
class Decision:
    """What to do with a paused item: ``action`` is forward, drop, answer or refuse.

    ``content`` is the edited content (forward) or the answer (answer), None for unchanged;
    bytes (from base64) make an answer a binary message, str a text one. ``headers`` replace
    a paused handshake's request headers; ``status`` and ``reason`` are a refusal's.
    """

    action: str
    content: bytes | str | None = None
    headers: Headers | None = None
    status: int = 403
    reason: str = "refused at a breakpoint"


def parse_rules(items: object) -> list[Rule]:
    """The rule list of a ``PUT /api/breakpoints`` body's ``breakpoints``, all or nothing."""
    if not isinstance(items, list):
        raise ValueError("breakpoints: expected a list of breakpoint objects")
    if len(items) > MAX_RULES:
        raise ValueError(f"breakpoints: {len(items)} rules, at most {MAX_RULES}")
    taken = {item.get("id") for item in items if isinstance(item, Mapping)}
    rules: list[Rule] = []
    seen: set[str] = set()
    counter = 0
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"breakpoint {index + 1}: expected an object, got {_kind(item)}")
        rule_id = item.get("id")
        if rule_id is None:
            # A new rule from the page: the first free b1, b2, ...
            while True:
                counter += 1
                rule_id = f"b{counter}"
                if rule_id not in taken and rule_id not in seen:
                    break
        rule = parse_rule(item, str(rule_id) if isinstance(rule_id, str) else rule_id, index)
        if rule.id in seen:
            raise ValueError(f"breakpoint {rule.id}: the id is used twice")
        seen.add(rule.id)
        rules.append(rule)
    return rules


def parse_rule(item: Mapping[str, Any], rule_id: object, index: int = 0) -> Rule:
    """One BP dict; ``rule_id`` is its id (assigned when the dict had none)."""
    where = f"breakpoint {index + 1}"
    if not isinstance(rule_id, str) or not _ID.fullmatch(rule_id):
        raise ValueError(f"{where}: id {rule_id!r}: 1 to 64 letters, digits, '_', '-' or '.'")
    where = f"breakpoint {rule_id}"
    unknown = sorted(set(item) - _RULE_KEYS)
    if unknown:
        known = ", ".join(sorted(_RULE_KEYS))
        raise ValueError(f"{where}: unknown field {unknown[0]!r} (known: {known})")
    text = item.get("filter")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: filter: a filter expression is required (~all for every one)")
    if len(text) > MAX_FILTER:
        raise ValueError(f"{where}: filter: {len(text)} characters, at most {MAX_FILTER}")
    compiled = compile_filter(text)  # FilterError, with its column, for the caller to show
    direction = _choice(item, "direction", DIRECTIONS, "both", where)
    on = _choice(item, "on", TARGETS, "message", where)
    default = _choice(item, "default", DEFAULTS, "forward", where)
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"{where}: enabled: true or false, got {enabled!r}")
    timeout = _timeout(item.get("timeout", DEFAULT_TIMEOUT), where)
    if on == "handshake":
        if direction == "server":
            raise ValueError(
                f"{where}: a handshake breakpoint pauses the client's upgrade request: "
                "direction client or both"
            )
        if compiled.needs_message:
            raise ValueError(
                f"{where}: filter {text!r} looks at messages (~b, ~from, ~opcode ...), which "
                "a handshake has none of: use the handshake's operators (~u, ~d, ~h, ~hq)"
            )
    return Rule(rule_id, compiled, direction, on, timeout, default, enabled)


def _choice(
    item: Mapping[str, Any], key: str, allowed: Sequence[str], default: str, where: str
) -> str:
    value = item.get(key, default)
    if value not in allowed:
        raise ValueError(f"{where}: {key}: {' or '.join(allowed)}, got {value!r}")
    return str(value)


def _timeout(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: timeout: a number of seconds, got {value!r}")
    seconds = float(value)
    if not 0 < seconds <= MAX_TIMEOUT:  # also refuses NaN
        raise ValueError(
            f"{where}: timeout: {value!r} s; more than 0 and at most {MAX_TIMEOUT:g} (a day)"
        )
    return seconds


def _kind(value: object) -> str:
    return type(value).__name__


def _keys(action: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    unknown = sorted(set(action) - allowed)
    if unknown:
        raise ValueError(f"{what}: unexpected field {unknown[0]!r}")


def _content(action: Mapping[str, Any], what: str, *, text_message: bool) -> bytes | str | None:
    """The ``text`` or ``base64`` of an action (at most one), None when it has neither."""
    text, data = action.get("text"), action.get("base64")
    if text is not None and data is not None:
        raise ValueError(f"{what}: give text or base64, not both")
    if text is not None:
        if not isinstance(text, str):
            raise ValueError(f"{what}: text: a string, got {_kind(text)}")
        return text
    if data is None:
        return None
    if not isinstance(data, str):
        raise ValueError(f"{what}: base64: a string, got {_kind(data)}")
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error as error:
        raise ValueError(f"{what}: base64: not valid base64 ({error})") from None
    if text_message:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as error:
            # RFC 6455 5.6: a text message is UTF-8; the receiver would fail the connection.
            raise ValueError(
                f"{what}: base64: a text message must stay UTF-8 (byte {error.start} is not)"
            ) from None
    return raw


def message_action(action: object, *, text_message: bool) -> Decision:
    """A paused message's action: forward (maybe edited), drop, or answer the sender."""
    if not isinstance(action, Mapping):
        raise ValueError(f"action: expected an object, got {_kind(action)}")
    name = action.get("action")
    what = f"action {name!r}"
    if name == "forward":
        _keys(action, frozenset({"action", "text", "base64"}), what)
        return Decision("forward", _content(action, what, text_message=text_message))
    if name == "drop":
        _keys(action, frozenset({"action"}), what)
        return Decision("drop")
    if name == "answer":
        _keys(action, frozenset({"action", "text", "base64"}), what)
        answer = _content(action, what, text_message=False)
        if answer is None:
            raise ValueError(f"{what}: the text (or base64) to send back to the sender")
        return Decision("answer", answer)
    if name == "refuse":
        raise ValueError(
            "action 'refuse' is for a paused handshake; a message: forward, drop or answer"
        )
    raise ValueError(f"action: forward, drop or answer, got {name!r}")


def handshake_action(action: object) -> Decision:
    """A paused upgrade request's action: forward (maybe with new headers) or refuse."""
    if not isinstance(action, Mapping):
        raise ValueError(f"action: expected an object, got {_kind(action)}")
    name = action.get("action")
    what = f"action {name!r}"
    if name == "forward":
        _keys(action, frozenset({"action", "headers"}), what)
        raw = action.get("headers")
        return Decision("forward", headers=None if raw is None else _headers(raw, what))
    if name == "refuse":
        _keys(action, frozenset({"action", "status", "reason"}), what)
        status = action.get("status", 403)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"{what}: status: a 4xx or 5xx HTTP status, got {status!r}")
        reason = action.get("reason", "refused at a breakpoint")
        if not isinstance(reason, str) or not re.fullmatch(r"[\t\x20-\x7e]{0,200}", reason):
            raise ValueError(f"{what}: reason: at most 200 printable ASCII characters")
        return Decision("refuse", status=status, reason=reason)
    if name in ("drop", "answer"):
        raise ValueError(f"action {name!r} is for a paused message; a handshake: forward or refuse")
    raise ValueError(f"action: forward or refuse, got {name!r}")


def _headers(raw: object, what: str) -> Headers:
    if not isinstance(raw, list):
        raise ValueError(f"{what}: headers: a list of [name, value] pairs")
    headers = Headers()
    for pair in raw:
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or not all(isinstance(part, str) for part in pair)
        ):
            raise ValueError(
                f"{what}: headers: each one a [name, value] pair of strings, got {pair!r}"
            )
        try:
            headers.add(pair[0], pair[1])  # refuses non-token names, CR/LF/NUL in values
        except ValueError as error:
            raise ValueError(f"{what}: headers: {error}") from None
    if headers.get("Host") is None:
        raise ValueError(f"{what}: headers: the request needs its Host header")
    return headers
