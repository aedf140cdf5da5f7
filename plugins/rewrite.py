"""rewrite: change messages on the fly by rules from a YAML or JSON file.

Options (``--set NAME=VALUE``)::

    rewrite_rules=PATH    the rules file: ``.json`` is read as JSON, anything else as YAML

Example: ``wsproxy -s rewrite --set rewrite_rules=rules.yaml``. YAML is read with PyYAML, a
dependency of wsproxy (an environment without it gets an error naming the fix); a JSON file
needs nothing.

The file holds a list of rules (or a mapping with a ``rules`` list). Each message goes through
every rule in order, each rule seeing what the previous ones made of it::

    rules:
      - name: mask-token              # used in the hit counts (default: "rule N")
        host: 'api\\.example\\.com$'  # regex searched in the upstream host name
        path: '^/socket'              # regex searched in the request path (with the query)
        direction: client             # who sent it: client, server or both (default)
        match: 'token=\\w+'           # regex searched in the text
        replace: 'token=***'          # re.sub replacement: \\1, \\g<name> work

      - name: anonymous
        direction: server
        json_path: $.user.name        # the message is JSON text and this path exists
        set: anonymous                # its new value: any YAML/JSON value

      - name: mask-json-field
        json_path: 'items[0].secret'  # with match/replace: the string at the path changes
        match: '.'
        replace: '*'

      - name: ping-to-pong
        match: '^ping$'
        content: pong                 # replace the whole message

      - name: quiet-typing
        filter: '~u chat & ~from client & ~json type=typing'   # a filter expression
        content: '{"type": "noop"}'

      - name: louder-chat             # a Socket.IO event's first argument
        event: '^chat$'               # regex searched in the decoded event name
        value_path: '[0]'             # a path into the decoded value (here: the arguments)
        set: HELLO

      - name: other-room              # a GraphQL subscription's variable
        operation: '^OnMessage$'      # the operation's name (GraphQL) or method (JSON-RPC)
        value_path: variables.room
        set: lobby

Decoded fields (see the README's "Decoders"): ``protocol`` (``socketio``, ``graphql``,
``jsonrpc``, ``json``...), ``event``, ``operation`` and ``topic`` are regexes searched in the
message's decoded fields (a message no decoder knows, or without that field, does not match).
``value_path`` (same syntax as ``json_path``) points into the decoded value: a Socket.IO
event's arguments, a GraphQL message's payload, a JSON-RPC call's params. With ``set`` the
value there is replaced (without ``value_path``: the whole value), with ``match``/``replace``
the string there is edited; the message is then encoded again in its own protocol
(``message.decoded = ...``). ``content`` replaces the whole message as before.

Matching: every field given must match. ``filter`` is a filter expression (the README's
"Filter expressions": ``~u``, ``~d``, ``~hq``, ``~b``, ``~from``, ``~len``, ``~json``,
``~event`` ...) the flow and the message must match. ``host`` and ``path`` are regexes searched (not
anchored) in ``flow.request.host`` and ``flow.request.path``. ``opcode`` is ``text`` (the
default), ``binary`` or ``any``; with ``binary`` or ``any``, ``match``/``replace`` also work on
binary messages, as regexes over the bytes (pattern and replacement encoded as UTF-8).
``json_path`` is a dotted path with ``[index]`` (``$.a.b[2].c``, the ``$.`` optional; quote a
key with dots as ``["a.b"]``); it matches a text message that parses as JSON and has that path.
With ``match`` too, the regex is searched in the value at the path (a string, or else its JSON
form).

Actions, exactly one per rule: ``replace`` (with ``match``: a substitution, on the value at
``json_path`` when given, else on the whole message), ``set`` (with ``json_path``: the new
value), ``content`` (the whole new message, as text). A message changed by a ``set`` is
re-serialized: same key order, compact unless the original had a space after its colons.

Hits: a rule hits once per message it matched. Each flow's hits are logged when it closes
(``rewrite: [c1] rule 'mask-token' hit 3 times``), and every rule's total when the proxy stops
(``done``). An invalid file (unreadable, bad YAML/JSON, unknown key, bad regex or path, no or
two actions) stops the proxy at start with ``ConfigError`` naming the file, the rule and the
problem.

Cost: the plugin asks for messages only when rules are loaded (the ``message`` hook reads as
``None`` otherwise), and only from the peers its rules name (``message_directions``): with
client rules alone, the server's messages take the proxy's quiet path unless another plugin
reads them. A changed message in a compressed stream makes the proxy recompress that
direction from then on (with context takeover).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsproxy.exceptions import ConfigError
from wsproxy.filtering import MessageView, Selection, select
from wsproxy.filters import Filter, FilterError, compile_filter
from wsproxy.model import Flow, Message
from wsproxy.plugins import Option
from wsproxy.sansio.frames import Opcode

log = logging.getLogger("wsproxy")

DECODED_KEYS = ("protocol", "event", "operation", "topic")
KEYS = {"name", "host", "path", "direction", "opcode", "match", "json_path", "value_path", "filter"}
KEYS |= set(DECODED_KEYS)
ACTIONS = ("replace", "set", "content")
_PATH_PART = re.compile(r"""\.?([^.\[\]"]+)|\[\s*(-?\d+)\s*\]|\[\s*"([^"]*)"\s*\]""")

PathPart = str | int


class RuleError(ValueError):
    """One rule's problem; the plugin adds the file and rule to it."""


@dataclass
class Rule:
    name: str
    host: re.Pattern[str] | None
    path: re.Pattern[str] | None
    direction: str
    opcodes: tuple[int, ...]
    match: re.Pattern[str] | None
    match_bytes: re.Pattern[bytes] | None
    json_path: list[PathPart] | None
    action: str
    replace: str
    value: Any
    filter: Filter | None = None
    # Regexes on the decoded message's fields (DECODED_KEYS), and a path into its value.
    decoded: tuple[tuple[str, re.Pattern[str]], ...] = ()
    value_path: list[PathPart] | None = None
    # A regex replace on text messages and nothing else: the rule most files hold, which
    # ``Rewrite`` runs itself (one ``subn``) rather than through ``apply``.
    plain: bool = field(init=False)

    def __post_init__(self) -> None:
        self.plain = (
            self.action == "replace"
            and self.match is not None
            and self.opcodes == (int(Opcode.TEXT),)
            and self.json_path is None
            and not self.decoded
            and self.value_path is None
        )

    def applies_to(self, flow: Flow) -> bool:
        return (self.host is None or bool(self.host.search(flow.request.host))) and (
            self.path is None or bool(self.path.search(flow.request.path))
        )

    def selection(self, flow: Flow) -> Selection | None:
        """The ``filter``'s answer for ``flow``; None without a filter."""
        return None if self.filter is None else select(self.filter, flow)

    def apply(self, message: Message) -> bool:
        """Change ``message`` if this rule matches it; returns whether it matched."""
        if self.direction != "both" and message.direction != self.direction:
            return False
        if message.opcode not in self.opcodes:
            return False
        if self.decoded or self.value_path is not None:
            return self._apply_decoded(message)
        if self.json_path is not None:
            return self._apply_json(message, self.json_path)
        if not message.is_text:
            return self._apply_bytes(message)
        text = message.text
        if self.action == "replace":
            assert self.match is not None
            # One pass: subn counts the matches search would have looked for first.
            changed, count = self.match.subn(self.replace, text)
            if not count:
                return False
            message.text = changed
            return True
        if self.match is not None and not self.match.search(text):
            return False
        message.text = self.value
        return True

    def _apply_decoded(self, message: Message) -> bool:
        decoded = message.decoded
        if decoded is None:
            return False
        for key, pattern in self.decoded:
            field_value = getattr(decoded, key)
            if field_value is None or not pattern.search(field_value):
                return False
        if self.action == "content":
            if self.match is not None and not self.match.search(message.text):
                return False
            message.text = self.value
            return True
        if self.action == "replace" and self.value_path is None:
            return self._apply_text(message)
        try:
            self._edit(decoded)
            message.decoded = decoded
        except _NoMatch:
            return False
        except (KeyError, IndexError, TypeError, ValueError) as error:
            log.info(
                "rewrite: rule %r: %s message not changed: %s", self.name, decoded.protocol, error
            )
            return False
        return True

    def _edit(self, decoded: Any) -> None:
        """Change ``decoded.value`` as the rule says; ``_NoMatch`` when ``match`` does not."""
        if self.value_path is None:
            decoded.value = self.value
            return
        parent, key = _walk(decoded.value, self.value_path)
        current = parent[key]
        if self.match is not None:
            subject = current if isinstance(current, str) else json.dumps(current)
            if not self.match.search(subject):
                raise _NoMatch
            if self.action == "replace":
                parent[key] = self.match.sub(self.replace, subject)
                return
        parent[key] = self.value

    def _apply_text(self, message: Message) -> bool:
        text = message.text
        assert self.match is not None
        if not self.match.search(text):
            return False
        message.text = self.match.sub(self.replace, text)
        return True

    def _apply_bytes(self, message: Message) -> bool:
        data = message.content
        if self.match_bytes is not None and not self.match_bytes.search(data):
            return False
        if self.action == "replace":
            assert self.match_bytes is not None
            message.content = self.match_bytes.sub(self.replace.encode("utf-8"), data)
        else:
            message.content = str(self.value).encode("utf-8")
        return True

    def _apply_json(self, message: Message, path: list[PathPart]) -> bool:
        text = message.text
        try:
            document = json.loads(text)
        except ValueError:
            return False
        try:
            parent, key = _walk(document, path)
            current = parent[key]
        except (KeyError, IndexError, TypeError):
            return False
        if self.match is not None:
            subject = current if isinstance(current, str) else json.dumps(current)
            if not self.match.search(subject):
                return False
        if self.action == "content":
            message.text = self.value
            return True
        if self.action == "set":
            parent[key] = self.value
        else:
            assert self.match is not None
            subject = current if isinstance(current, str) else json.dumps(current)
            parent[key] = self.match.sub(self.replace, subject)
        separators = (", ", ": ") if '": ' in text else (",", ":")
        message.text = json.dumps(document, ensure_ascii=False, separators=separators)
        return True


class _NoMatch(Exception):
    """The value at a rule's path does not match its regex."""


def _walk(document: Any, path: list[PathPart]) -> tuple[Any, PathPart]:
    """The container holding the last part of ``path``, and that part."""
    node = document
    for part in path[:-1]:
        node = node[part]
    last = path[-1]
    if isinstance(last, int) != isinstance(node, list):
        raise TypeError("path does not fit the document")
    return node, last


def parse_json_path(text: str) -> list[PathPart]:
    """``$.a.b[0]["c.d"]`` -> ``["a", "b", 0, "c.d"]``."""
    rest = text.strip()
    if rest.startswith("$"):
        rest = rest[1:]
    parts: list[PathPart] = []
    position = 0
    while position < len(rest):
        found = _PATH_PART.match(rest, position)
        if found is None or found.end() == position:
            raise RuleError(f"json_path {text!r}: cannot parse at {rest[position:]!r}")
        key, index, quoted = found.groups()
        parts.append(int(index) if index is not None else key if key is not None else quoted)
        position = found.end()
    if not parts:
        raise RuleError(f"json_path {text!r} names no key")
    return parts


def _regex(raw: dict[str, Any], key: str) -> re.Pattern[str] | None:
    if key not in raw:
        return None
    pattern = raw[key]
    if not isinstance(pattern, str):
        raise RuleError(f"{key} must be a string (a regex), not {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as error:
        raise RuleError(f"{key}: invalid regex {pattern!r}: {error}") from None


def _action(raw: Any) -> str:
    """The one action of a rule, after checking that it is a mapping of known keys."""
    if not isinstance(raw, dict):
        raise RuleError(f"a rule is a mapping of keys, not {raw!r}")
    unknown = set(raw) - KEYS - set(ACTIONS)
    if unknown:
        allowed = ", ".join(sorted(KEYS | set(ACTIONS)))
        raise RuleError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))} ({allowed})")
    actions = [action for action in ACTIONS if action in raw]
    if len(actions) != 1:
        raise RuleError(f"a rule needs exactly one of replace, set, content (got {actions})")
    return actions[0]


def _replacement(raw: dict[str, Any], action: str, match: re.Pattern[str] | None) -> str:
    """The ``replace`` template, checked against ``match`` when the action is replace."""
    replace = raw.get("replace", "")
    if not isinstance(replace, str):
        raise RuleError(f"replace must be a string, not {replace!r}")
    if action == "replace":
        assert match is not None
        try:  # re parses the template even with nothing to replace: bad groups show now
            match.sub(replace, "")
        except (re.error, IndexError) as error:
            raise RuleError(f"replace {replace!r}: {error}") from None
    return replace


def _rule_filter(raw: Any) -> Filter | None:
    """A rule's ``filter`` expression, compiled (None without one)."""
    if "filter" not in raw:
        return None
    if not isinstance(raw["filter"], str):
        raise RuleError(f"filter must be a string (an expression), not {raw['filter']!r}")
    try:
        return compile_filter(raw["filter"])
    except FilterError as error:
        raise RuleError(f"filter {error}") from None


def parse_rule(raw: Any, number: int) -> Rule:
    action = _action(raw)
    direction = raw.get("direction", "both")
    if direction not in ("client", "server", "both"):
        raise RuleError(f"direction is client, server or both, not {direction!r}")
    opcode = raw.get("opcode", "text")
    # Plain ints: a message's opcode is looked up in them for every message.
    opcodes = {
        "text": (int(Opcode.TEXT),),
        "binary": (int(Opcode.BINARY),),
        "any": tuple(int(opcode) for opcode in Opcode),
    }
    if opcode not in opcodes:
        raise RuleError(f"opcode is text, binary or any, not {opcode!r}")
    match = _regex(raw, "match")
    match_bytes = None
    if match is not None and opcode != "text":
        match_bytes = re.compile(match.pattern.encode("utf-8"))
    json_path = None
    if "json_path" in raw:
        if not isinstance(raw["json_path"], str):
            raise RuleError(f"json_path must be a string, not {raw['json_path']!r}")
        json_path = parse_json_path(raw["json_path"])
        if opcode != "text":
            raise RuleError("json_path works on text messages only (opcode: text)")
    decoded = tuple(
        (key, pattern) for key in DECODED_KEYS if (pattern := _regex(raw, key)) is not None
    )
    value_path = None
    if "value_path" in raw:
        if not isinstance(raw["value_path"], str):
            raise RuleError(f"value_path must be a string, not {raw['value_path']!r}")
        value_path = parse_json_path(raw["value_path"])
    if json_path is not None and (decoded or value_path is not None):
        raise RuleError("json_path is for plain JSON text: with decoded fields use value_path")
    if action == "replace" and match is None:
        raise RuleError("replace needs a match regex")
    if action == "set" and json_path is None and not decoded and value_path is None:
        raise RuleError("set needs a json_path (or a decoded field: event, operation, ...)")
    replace = _replacement(raw, action, match)
    value = raw.get(action) if action != "replace" else None
    if action == "content" and not isinstance(value, str):
        raise RuleError(f"content must be a string, not {value!r}")
    name = raw.get("name", f"rule {number}")
    return Rule(
        name=str(name),
        host=_regex(raw, "host"),
        path=_regex(raw, "path"),
        direction=direction,
        opcodes=opcodes[opcode],
        match=match,
        match_bytes=match_bytes,
        json_path=json_path,
        action=action,
        replace=replace,
        value=value,
        filter=_rule_filter(raw),
        decoded=decoded,
        value_path=value_path,
    )


def load_rules(path: str) -> list[Rule]:
    """The rules of ``path``; ConfigError naming the file (and rule) on any problem."""
    where = f"rewrite_rules {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{where}: cannot read it: {error}") from None
    if path.lower().endswith(".json"):
        try:
            document = json.loads(text)
        except ValueError as error:
            raise ConfigError(f"{where}: invalid JSON: {error}") from None
    else:
        try:
            import yaml  # only when a YAML file is given: JSON rules need no PyYAML
        except ImportError:
            # wsproxy depends on PyYAML; this is an environment that lost it (or a copy of
            # plugins/ run elsewhere): name the Python that lacks it, so the fix is exact.
            raise ConfigError(
                f"{where}: reading YAML needs PyYAML, which is not installed for "
                f"{sys.executable}: run `{sys.executable} -m pip install pyyaml`, or write the "
                "rules as JSON (a .json file)"
            ) from None
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"{where}: invalid YAML: {error}") from None
    if isinstance(document, dict) and set(document) == {"rules"}:
        document = document["rules"]
    if not isinstance(document, list):
        raise ConfigError(f"{where}: expected a list of rules (or a mapping with 'rules')")
    rules = []
    for number, raw in enumerate(document, 1):
        try:
            rules.append(parse_rule(raw, number))
        except RuleError as error:
            name = raw.get("name") if isinstance(raw, dict) else None
            label = f"rule {number}" + (f" ({name!r})" if name else "")
            raise ConfigError(f"{where}: {label}: {error}") from None
    names = [rule.name for rule in rules]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{where}: two rules named {duplicates[0]!r}")
    return rules


@dataclass
class FlowState:
    """Per flow, in ``flow.metadata["rewrite"]``: the rules for its host and path, and hits."""

    rules: list[Rule]
    hits: Counter[str] = field(default_factory=Counter)
    # Rules whose filter asks each message (its flow part answered "it depends"), by name.
    selections: dict[str, Selection] = field(default_factory=dict)
    # ``rules`` that can apply to a message from the client, from the server: most rules
    # name one direction, so the other's messages go through none (asked for every message).
    client_rules: tuple[Rule, ...] = ()
    server_rules: tuple[Rule, ...] = ()

    @classmethod
    def of(cls, flow: Flow, rules: list[Rule]) -> FlowState:
        state = cls([])
        for rule in rules:
            if not rule.applies_to(flow):
                continue
            selection = rule.selection(flow)
            if selection is not None and selection.verdict is False:
                continue
            if selection is not None and selection.verdict is None:
                state.selections[rule.name] = selection
            state.rules.append(rule)
        state.client_rules = tuple(r for r in state.rules if r.direction != "server")
        state.server_rules = tuple(r for r in state.rules if r.direction != "client")
        return state

    def selects(self, rule: Rule, message: Message) -> bool:
        selection = self.selections.get(rule.name)
        if selection is None:
            return True
        return selection.bound.matches(MessageView(message, selection.hints, selection.state))


class Rewrite:
    name = "rewrite"
    options = [Option("rewrite_rules", str, "", "a YAML or JSON file of rewrite rules")]

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.hits: Counter[str] = Counter()

    def configure(self, options: object) -> None:
        path = str(getattr(options, "rewrite_rules", "") or "")
        self.rules = load_rules(path) if path else []

    @property
    def message(self) -> Callable[[Flow, Message], None] | None:
        return self._message if self.rules else None

    @property
    def message_directions(self) -> frozenset[str]:
        """The peers whose messages a rule can change (``PluginChain``: the other peer's
        frames then skip the chain)."""
        sides = {"client", "server"}
        return frozenset(
            side for side in sides if any(rule.direction in (side, "both") for rule in self.rules)
        )

    def _message(self, flow: Flow, message: Message) -> None:
        state = flow.metadata.get("rewrite")
        if not isinstance(state, FlowState):
            # host and path are known for good once the first message comes
            state = FlowState.of(flow, self.rules)
            flow.metadata["rewrite"] = state
        rules = state.client_rules if message.from_client else state.server_rules
        if not state.selections:
            for rule in rules:
                if rule.plain:
                    # Rule.apply for a plain rule, written out (this runs for every message):
                    # ``rules`` holds only the rules for this direction.
                    if not message.is_text:
                        continue
                    match = rule.match
                    assert match is not None
                    changed, count = match.subn(rule.replace, message.text)
                    if not count:
                        continue
                    message.text = changed
                elif not rule.apply(message):
                    continue
                state.hits[rule.name] += 1
                self.hits[rule.name] += 1
            return
        for rule in rules:
            if state.selects(rule, message) and rule.apply(message):
                state.hits[rule.name] += 1
                self.hits[rule.name] += 1

    def closed(self, flow: Flow) -> None:
        state = flow.metadata.get("rewrite")
        if not isinstance(state, FlowState):
            return
        for name, count in state.hits.items():
            log.info("rewrite: [%s] rule %r hit %s", flow.id, name, _times(count))

    def done(self) -> None:
        for rule in self.rules:
            log.info("rewrite: rule %r hit %s in total", rule.name, _times(self.hits[rule.name]))


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


plugins = [Rewrite()]
