"""block: refuse WebSocket handshakes by host, path or origin; drop or close on messages.

Options (``--set NAME=VALUE``; the list options take one regex each time they are given)::

    block_hosts=REGEX          refuse when the upstream host matches (repeatable)
    block_paths=REGEX          refuse when the request path (with its query) matches (repeatable)
    block_origins=REGEX        refuse when the Origin header matches (repeatable; a request
                               without Origin never matches)
    block_status=403           the HTTP status of a refusal
    block_messages=REGEX       act on messages that match (repeatable): text messages are
                               searched as text, binary ones as bytes (the regex as UTF-8)
    block_filter=EXPR          a filter expression (README: "Filter expressions"): a handshake
                               it matches from the request alone is refused, and a message it
                               matches is acted on like block_messages (``~b``, ``~from``,
                               ``~json``, ``~event`` ...); alongside the options above
    block_events=REGEX         act on messages whose decoded event name matches (a Socket.IO
                               event; repeatable; see the README's "Decoders")
    block_operations=REGEX     ... whose operation matches (a GraphQL operation's name, also
                               on its answers; a JSON-RPC method)
    block_topics=REGEX         ... whose topic matches (an MQTT topic, a STOMP destination)
    block_direction=both       whose messages are checked: client, server or both
    block_action=drop          drop: the message is not forwarded (recorded as dropped by
                               ``block``); close: the WebSocket is closed, both sides
    block_close_code=1008      the close code of block_action=close (1008: policy violation,
                               RFC 6455 7.4.1)
    block_close_reason="blocked by policy"

Examples::

    wsproxy -s block --set block_hosts='(^|\\.)ads\\.example$' --set block_status=451
    wsproxy -s block --set block_origins='^https?://evil\\.' --set block_paths='^/admin'
    wsproxy -s block --set block_messages='"op":\\s*"delete"' --set block_action=close
    wsproxy -s block --set block_filter='~d ads\\.example | ~u chat & ~bq "(?i)password"'
    wsproxy -s block --set block_events='^admin:' --set block_operations='^DeleteUser$'

Regexes are searched, not anchored (``re.search``). The client of a refused handshake gets an
HTTP answer with ``block_status`` and a reason naming the rule; the upstream is never
contacted. With ``block_action=close`` the offending message is dropped too, and both peers get
``block_close_code`` and ``block_close_reason``.

A Socket.IO binary event's attachments carry its name too, so blocking the event drops them
all. Cost: the plugin asks the chain for messages only when ``block_messages`` or a
``block_events``/``block_operations``/``block_topics`` is set, or ``block_filter`` has
message operators (the
``message`` hook reads as ``None`` otherwise), so blocking handshakes alone leaves the relay
streaming frames untouched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from wsproxy.exceptions import ConfigError
from wsproxy.filtering import FlowView, MessageView, Selection, option_filter, select
from wsproxy.filters import Filter
from wsproxy.model import Flow, Message
from wsproxy.plugins import Option
from wsproxy.sansio.frames import is_valid_close_code

log = logging.getLogger("wsproxy")


class Block:
    name = "block"
    options = [
        Option("block_hosts", list, [], "refuse handshakes to hosts matching this regex"),
        Option("block_paths", list, [], "refuse handshakes for paths matching this regex"),
        Option("block_origins", list, [], "refuse handshakes whose Origin matches this regex"),
        Option("block_status", int, 403, "HTTP status of a refused handshake"),
        Option("block_messages", list, [], "drop or close on messages matching this regex"),
        Option("block_filter", str, "", "refuse handshakes, drop or close on messages it matches"),
        Option("block_events", list, [], "drop or close on decoded events matching this"),
        Option("block_operations", list, [], "... on decoded operations matching this"),
        Option("block_topics", list, [], "... on decoded topics matching this"),
        Option("block_direction", str, "both", "messages checked: client, server or both"),
        Option("block_action", str, "drop", "drop or close, for block_messages"),
        Option("block_close_code", int, 1008, "close code of block_action=close"),
        Option("block_close_reason", str, "blocked by policy", "close reason of it"),
    ]

    def __init__(self) -> None:
        self.hosts: list[re.Pattern[str]] = []
        self.paths: list[re.Pattern[str]] = []
        self.origins: list[re.Pattern[str]] = []
        self.status = 403
        self.texts: list[re.Pattern[str]] = []
        self.binaries: list[re.Pattern[bytes]] = []
        self.filter: Filter | None = None
        self.decoded: list[tuple[str, re.Pattern[str]]] = []  # (Decoded field, regex)
        self.direction = "both"
        self.action = "drop"
        self.close_code = 1008
        self.close_reason = "blocked by policy"

    def configure(self, options: object) -> None:
        defaults = {option.name: option.default for option in self.options}

        def get(name: str) -> Any:
            return getattr(options, name, defaults[name])

        self.hosts = _patterns(get("block_hosts"), "block_hosts")
        self.paths = _patterns(get("block_paths"), "block_paths")
        self.origins = _patterns(get("block_origins"), "block_origins")
        self.texts = _patterns(get("block_messages"), "block_messages")
        self.binaries = [re.compile(p.pattern.encode("utf-8")) for p in self.texts]
        text = str(get("block_filter") or "")
        self.filter = option_filter("block_filter", text) if text else None
        self.decoded = [
            (field, pattern)
            for field, option in (
                ("event", "block_events"),
                ("operation", "block_operations"),
                ("topic", "block_topics"),
            )
            for pattern in _patterns(get(option), option)
        ]
        self.status = int(get("block_status"))
        if not 400 <= self.status <= 599:
            raise ConfigError(f"block_status={self.status}: a refusal is a 4xx or 5xx status")
        self.direction = str(get("block_direction"))
        if self.direction not in ("client", "server", "both"):
            raise ConfigError(f"block_direction={self.direction!r}: client, server or both")
        self.action = str(get("block_action"))
        if self.action not in ("drop", "close"):
            raise ConfigError(f"block_action={self.action!r}: drop or close")
        self.close_code = int(get("block_close_code"))
        # RFC 6455 7.4: only the defined codes and 3000-4999 may go on the wire.
        if not is_valid_close_code(self.close_code):
            raise ConfigError(f"block_close_code={self.close_code}: not a code to send")
        self.close_reason = str(get("block_close_reason"))
        if len(self.close_reason.encode("utf-8")) > 123:
            raise ConfigError("block_close_reason: at most 123 bytes fit in a close frame")

    def handshake_request(self, flow: Flow) -> None:
        request = flow.request
        origin = request.headers.get("Origin")
        for what, patterns, value in (
            ("host", self.hosts, request.host),
            ("path", self.paths, request.path),
            ("origin", self.origins, origin),
        ):
            if value is None:
                continue
            for pattern in patterns:
                if pattern.search(value):
                    log.info("block: [%s] refused %s: %s %r", flow.id, request.url, what, value)
                    flow.refuse(self.status, f"blocked by policy ({what})")
                    return
        if self.filter is not None and self.filter.bind(FlowView(flow)).verdict is True:
            log.info("block: [%s] refused %s: block_filter matched", flow.id, request.url)
            flow.refuse(self.status, "blocked by policy (filter)")

    @property
    def message(self) -> Callable[[Flow, Message], None] | None:
        wanted = (
            self.texts or self.decoded or (self.filter is not None and self.filter.needs_message)
        )
        return self._message if wanted else None

    def _message(self, flow: Flow, message: Message) -> None:
        if self.direction != "both" and message.direction != self.direction:
            return
        if not self.texts:
            hit = False
        elif message.is_text:
            text = message.text
            hit = any(pattern.search(text) for pattern in self.texts)
        else:
            data = message.content
            hit = any(pattern.search(data) for pattern in self.binaries)
        if not hit and self.decoded:
            hit = self._decoded_hit(message.decoded)
        if not hit and not self._filtered(flow, message):
            return
        message.drop()
        if self.action == "close":
            log.info("block: [%s] %s message matched: closing", flow.id, message.direction)
            flow.close(self.close_code, self.close_reason)

    def _filtered(self, flow: Flow, message: Message) -> bool:
        """Whether ``block_filter`` matches ``message``; its flow part is answered once per
        flow, at its first message (the response is known by then)."""
        if self.filter is None:
            return False
        selection = flow.metadata.get("block")
        if not isinstance(selection, Selection):
            selection = flow.metadata["block"] = select(self.filter, flow)
        if selection.verdict is not None:
            return selection.verdict
        view = MessageView(message, selection.hints, selection.state)
        return selection.bound.matches(view)

    def _decoded_hit(self, decoded: Any) -> bool:
        if decoded is None:
            return False
        for field, pattern in self.decoded:
            value = getattr(decoded, field)
            if value is not None and pattern.search(value):
                return True
        return False


def _patterns(values: Any, option: str) -> list[re.Pattern[str]]:
    """Compile a list option's regexes (a single string counts as a list of one)."""
    if isinstance(values, str):
        values = [values] if values else []
    patterns = []
    for value in values:
        try:
            patterns.append(re.compile(value))
        except re.error as error:
            raise ConfigError(f"{option}={value!r}: invalid regex: {error}") from None
    return patterns


plugins = [Block()]
