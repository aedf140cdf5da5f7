"""A compiled filter: the tree, the text it came from, and what evaluating it needs."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from wsproxy.filters.nodes import Const, Node
from wsproxy.filters.operators import Url
from wsproxy.filters.parser import parse
from wsproxy.filters.subject import FlowFacts, MessageFacts, Subject

__all__ = ["Bound", "Filter", "compile_filter", "compile_url_filter"]


@dataclass(frozen=True)
class Bound:
    """A filter bound to one flow (``Filter.bind``): its flow operators answered.

    ``verdict`` is True when every message of the flow matches, False when none does, and
    None when it depends on each message (``matches`` then asks the message part only).
    """

    node: Node

    @property
    def verdict(self) -> bool | None:
        return self.node.value if isinstance(self.node, Const) else None

    @property
    def needs_payload(self) -> bool:
        """Whether what is left to ask reads whole payloads (``~b``, ``~json`` ...)."""
        return "payload" in self.node.requirements()

    def matches(self, message: MessageFacts) -> bool:
        return self.node.matches(Subject(None, message))


@dataclass(frozen=True)
class Filter:
    """``compile_filter(text)``: evaluate with ``matches``/``evaluate``, or ``bind`` a flow."""

    text: str
    root: Node

    @functools.cached_property
    def _needs(self) -> frozenset[str]:
        return self.root.requirements()

    @property
    def needs_message(self) -> bool:
        """Whether any operator looks at messages (else the flow alone decides)."""
        return "message" in self._needs

    @property
    def needs_payload(self) -> bool:
        """Whether an operator reads whole payloads (``~b``, ``~json``, decoded ones), not
        just the preview the log keeps."""
        return "payload" in self._needs

    @property
    def needs_decoding(self) -> bool:
        """Whether an operator asks for ``decoded()`` (``~proto ~event ~op ~topic ~json``)."""
        return "decoding" in self._needs

    def evaluate(self, subject: Subject) -> bool | None:
        """True, False, or None: a flow-only subject and the answer depends on messages."""
        return self.root.evaluate(subject)

    def matches(self, subject: Subject) -> bool:
        return self.root.evaluate(subject) is True

    def bind(self, flow: FlowFacts) -> Bound:
        return Bound(self.root.bind(flow))

    def __str__(self) -> str:
        return str(self.root)


@functools.lru_cache(maxsize=64)
def compile_filter(text: str) -> Filter:
    """The filter of ``text``; ``FilterError`` (a ``ValueError``) when it is not one."""
    return Filter(text, parse(text))


def compile_url_filter(text: str) -> Filter:
    """``--capture-filter``'s reading: a value that is one word with no ``~`` and no leading
    ``!`` is, as before expressions existed, a regex searched in the URL as a whole (so
    ``^/(chat|feed)$`` keeps its parentheses); anything else is an expression."""
    stripped = text.strip()
    if stripped and not any(c.isspace() or c in "~'\"" for c in stripped) and stripped[0] != "!":
        try:
            return Filter(text, Url(stripped))
        except ValueError:
            pass  # not a regex either: the expression's error says more
    return compile_filter(text)
