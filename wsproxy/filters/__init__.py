"""Filter expressions: one language for ``--view-filter``, ``--capture-filter``, ``show
--filter`` and the block and rewrite plugins (the README's "Filter expressions").

Pure like ``wsproxy.sansio``: only the standard library and ``wsproxy.decoders.base`` (a
test checks it). ``compile_filter(text)`` gives a ``Filter``; the caller adapts what it has to
``FlowFacts``/``MessageFacts`` (``wsproxy.filtering`` does for the proxy and captures).

    >>> f = compile_filter("~u chat & ~from client & ~b hello")
    >>> flow = FlowInfo("ws://example.com/chat")
    >>> f.evaluate(Subject(flow)) is None  # depends on each message
    True
    >>> f.matches(Subject(flow, MessageInfo(True, 1, b"hello there")))
    True
"""

from wsproxy.filters.compiled import Bound, Filter, compile_filter, compile_url_filter
from wsproxy.filters.errors import FilterError
from wsproxy.filters.operators import OPERATORS, PROTOCOLS
from wsproxy.filters.subject import FlowFacts, FlowInfo, MessageFacts, MessageInfo, Subject

__all__ = [
    "OPERATORS",
    "PROTOCOLS",
    "Bound",
    "Filter",
    "FilterError",
    "FlowFacts",
    "FlowInfo",
    "MessageFacts",
    "MessageInfo",
    "Subject",
    "compile_filter",
    "compile_url_filter",
]
