"""The compiled expression: a tree of small nodes, each answering true, false or unknown.

Unknown (``None``) is what a message operator answers when there is no message (the question
asked at handshake time) and what a flow operator answers without a flow. ``!``, ``&`` and
``|`` follow Kleene's three-valued logic, so an answer that is not unknown holds whatever the
unknown parts turn out to be: ``~u chat | ~from client`` is true for every message of a flow
whose URL matches, and depends on each message otherwise.

``bind(flow)`` evaluates the flow operators once and returns the rest (the message operators,
simplified), so per-message evaluation costs only what the message part asks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from wsproxy.filters.subject import FlowFacts, MessageFacts, Subject

__all__ = ["FALSE", "TRUE", "And", "Const", "FlowTest", "MessageTest", "Node", "Not", "Or"]

Truth = bool | None


class Node(ABC):
    """One part of an expression."""

    # What answering needs, beyond the flow: "message", "payload" (all of it, not a preview),
    # "decoding" (a Decoded value).
    needs: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def evaluate(self, subject: Subject) -> Truth:
        """True, False, or None when the answer depends on what the subject lacks."""

    def matches(self, subject: Subject) -> bool:
        """Whether the subject surely matches (unknown is not a match)."""
        return self.evaluate(subject) is True

    @abstractmethod
    def bind(self, flow: FlowFacts) -> Node:
        """This node with every flow operator replaced by its answer for ``flow``."""

    def requirements(self) -> frozenset[str]:
        return self.needs


@dataclass(frozen=True)
class Const(Node):
    """A flow operator's answer once bound (``TRUE``/``FALSE``); prints as ``~all``/``!~all``."""

    value: bool

    def evaluate(self, subject: Subject) -> Truth:
        return self.value

    def bind(self, flow: FlowFacts) -> Node:
        return self

    def __str__(self) -> str:
        return "~all" if self.value else "!~all"


TRUE = Const(True)
FALSE = Const(False)


@dataclass(frozen=True)
class Not(Node):
    child: Node

    def evaluate(self, subject: Subject) -> Truth:
        answer = self.child.evaluate(subject)
        return None if answer is None else not answer

    def bind(self, flow: FlowFacts) -> Node:
        child = self.child.bind(flow)
        if isinstance(child, Const):
            return FALSE if child.value else TRUE
        return Not(child)

    def requirements(self) -> frozenset[str]:
        return self.child.requirements()

    def __str__(self) -> str:
        inner = str(self.child)
        return f"!{inner}" if isinstance(self.child, Leaf | Not) else f"!({inner})"


@dataclass(frozen=True)
class _Group(Node):
    children: tuple[Node, ...]
    symbol: ClassVar[str]
    absorbing: ClassVar[bool]  # the answer that decides the group: False for &, True for |

    def evaluate(self, subject: Subject) -> Truth:
        unknown = False
        for child in self.children:
            answer = child.evaluate(subject)
            if answer is self.absorbing:
                return self.absorbing
            if answer is None:
                unknown = True
        return None if unknown else not self.absorbing

    def bind(self, flow: FlowFacts) -> Node:
        kept: list[Node] = []
        for child in self.children:
            bound = child.bind(flow)
            if isinstance(bound, Const):
                if bound.value is self.absorbing:
                    return bound
                continue  # the neutral answer: drop it
            kept.append(bound)
        if not kept:
            return Const(not self.absorbing)
        return kept[0] if len(kept) == 1 else type(self)(tuple(kept))

    def requirements(self) -> frozenset[str]:
        return frozenset().union(*(child.requirements() for child in self.children))

    def _part(self, child: Node) -> str:
        return f"({child})" if isinstance(child, _Group) else str(child)

    def __str__(self) -> str:
        return f" {self.symbol} ".join(self._part(child) for child in self.children)


class And(_Group):
    symbol = "&"
    absorbing = False


class Or(_Group):
    symbol = "|"
    absorbing = True

    def _part(self, child: Node) -> str:
        return f"({child})" if isinstance(child, Or) else str(child)


class Leaf(Node):
    """An operator with its argument (see ``operators``)."""

    code: ClassVar[str]  # the name after ``~``
    metavar: ClassVar[str | None] = None  # what its argument is, None when it takes none
    help: ClassVar[str] = ""


class FlowTest(Leaf):
    """An operator on the handshake: known from the flow alone."""

    @abstractmethod
    def test_flow(self, flow: FlowFacts) -> bool: ...

    def evaluate(self, subject: Subject) -> Truth:
        return None if subject.flow is None else self.test_flow(subject.flow)

    def bind(self, flow: FlowFacts) -> Node:
        return TRUE if self.test_flow(flow) else FALSE


class MessageTest(Leaf):
    """An operator on one message: unknown without one."""

    needs = frozenset({"message"})

    @abstractmethod
    def test_message(self, message: MessageFacts) -> bool: ...

    def evaluate(self, subject: Subject) -> Truth:
        return None if subject.message is None else self.test_message(subject.message)

    def bind(self, flow: FlowFacts) -> Node:
        return self
