"""One mitmproxy-style addon as a wsproxy plugin: native hooks in, mitmproxy events out.

==============================  ====================================================
wsproxy hook                    mitmproxy events called, in order
==============================  ====================================================
``handshake_request(flow)``     ``requestheaders(flow)``, ``request(flow)``
``handshake_response(flow)``    ``responseheaders(flow)``, ``response(flow)``
``opened(flow)``                ``websocket_start(flow)``
``message(flow, message)``      ``websocket_message(flow)`` (the message is
                                ``flow.websocket.messages[-1]``), also for
                                injected messages and ones an earlier addon dropped
``closed(flow)``                ``websocket_end(flow)``
``error(flow, error)``          ``error(flow)`` (``flow.error.msg`` says what failed)
``configure(options)``          ``configure(updated)``: the set of option names
``running()`` / ``done()``      ``running()`` / ``done()``
==============================  ====================================================

The wrapper exposes only the hooks the addon needs, so an addon without ``websocket_message``
or ``websocket_end`` (which may read ``flow.websocket.messages``) does not make the relay
reassemble messages; ``closed`` is always there, to end every addon's view of the flow.
Hooks may be plain or ``async``. An exception in a hook reaches the chain, which logs it once
and undoes the item's changes.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any

from wsproxy.mitmcompat.flow import HTTPFlow
from wsproxy.model import Flow, Message
from wsproxy.plugins import HOOKS, Option

MITM_EVENTS = (
    "requestheaders",
    "request",
    "responseheaders",
    "response",
    "websocket_start",
    "websocket_message",
    "websocket_end",
)


def _has(obj: object, name: str) -> bool:
    return callable(getattr(obj, name, None))


def is_native(obj: object) -> bool:
    """Has one of wsproxy's own hooks (``wsproxy.plugins.HOOKS``)."""
    return any(_has(obj, hook) for hook in HOOKS)


def is_mitm_style(obj: object) -> bool:
    """Has a mitmproxy event hook or a ``load(loader)`` method, and no wsproxy hook (but
    ``error``, a hook of both: mitmproxy's takes only the flow)."""
    if any(_has(obj, hook) for hook in HOOKS if hook != "error"):
        return False
    return any(_has(obj, name) for name in (*MITM_EVENTS, "load"))


def option_type(typespec: Any) -> type:
    """mitmproxy's typespec as an ``Option`` type: ``Optional[X]`` is X, a sequence is list."""
    if typespec in (bool, int, float, str):
        return typing.cast(type, typespec)
    origin = typing.get_origin(typespec)
    args = [a for a in typing.get_args(typespec) if a is not type(None)]
    if origin is typing.Union and len(args) == 1:
        return option_type(args[0])
    if origin is not None and isinstance(origin, type) and issubclass(origin, Sequence):
        return list
    if typespec in (list, tuple):
        return list
    return str


class Loader:
    """What ``load(loader)`` gets: ``add_option`` declares an option (``--set`` sets it)."""

    def __init__(self, addon: MitmAddon) -> None:
        self._addon = addon

    def add_option(
        self,
        name: str,
        typespec: Any,
        default: Any,
        help: str,
        choices: Sequence[str] | None = None,
    ) -> None:
        kind = option_type(typespec)
        if kind is list and default is not None:
            default = list(default)
        text = help if not choices else f"{help} (one of: {', '.join(choices)})"
        self._addon.options.append(Option(name, kind, default, text))

    def add_command(self, path: str, func: Callable[..., Any]) -> None:
        """Accepted and ignored: wsproxy has no command line of its own to call it from."""


async def _run(fn: Callable[..., Any], *args: Any) -> None:
    result = fn(*args)
    if inspect.isawaitable(result):
        await result


class MitmAddon:
    """A wsproxy plugin that runs one mitmproxy-style addon object (or script module)."""

    def __init__(self, addon: object, name: str) -> None:
        self.addon = addon
        self.name = name
        self.options: list[Option] = []
        load = getattr(addon, "load", None)
        if callable(load):
            load(Loader(self))
        self._events = {n: getattr(addon, n) for n in (*MITM_EVENTS, "error") if _has(addon, n)}
        events = self._events
        # Only the hooks the addon handles: the chain (and the relay) pay for no others.
        if "requestheaders" in events or "request" in events:
            self.handshake_request = self._handshake_request
        if "responseheaders" in events or "response" in events:
            self.handshake_response = self._handshake_response
        if "websocket_start" in events:
            self.opened = self._opened
        # Messages are kept in flow.websocket.messages for an addon that reads them (as they
        # come, or all at the end); a plain function runs inline, as native hooks do.
        on_message = events.get("websocket_message")
        self.message: Callable[[Flow, Message], Any]
        if inspect.iscoroutinefunction(on_message):
            self.message = self._message_async
        elif on_message is not None or "websocket_end" in events:
            self.message = self._message
        if "error" in events:
            self.error = self._error

    # mitmproxy calls every addon's websocket_message, also for a message an earlier one
    # dropped (``message.dropped`` says so): the chain does the same for this wrapper.
    sees_dropped = True

    def __repr__(self) -> str:
        return f"<mitmproxy addon {self.name}>"

    # -- lifecycle ---------------------------------------------------------------------------

    def configure(self, options: object) -> None:
        fn = getattr(self.addon, "configure", None)
        if callable(fn):
            names = options if isinstance(options, typing.Iterable) else ()
            fn({str(name) for name in names})

    def running(self) -> Any:
        fn = getattr(self.addon, "running", None)
        return fn() if callable(fn) else None

    def done(self) -> Any:
        fn = getattr(self.addon, "done", None)
        return fn() if callable(fn) else None

    # -- hooks -------------------------------------------------------------------------------

    async def _handshake_request(self, flow: Flow) -> None:
        adapter = HTTPFlow.of(flow)
        for event in ("requestheaders", "request"):
            if event in self._events and flow.refused is None:
                await _run(self._events[event], adapter)

    async def _handshake_response(self, flow: Flow) -> None:
        adapter = HTTPFlow.of(flow)
        adapter._set_response()
        adapter._websocket()
        for event in ("responseheaders", "response"):
            if event in self._events and flow.refused is None:
                await _run(self._events[event], adapter)

    async def _opened(self, flow: Flow) -> None:
        adapter = HTTPFlow.of(flow)
        adapter._open = True
        adapter._set_response()
        adapter._websocket()
        await _run(self._events["websocket_start"], adapter)

    def _message(self, flow: Flow, message: Message) -> None:
        adapter = HTTPFlow.of(flow)
        adapter._open = True
        adapter._websocket()._push(message)
        on_message = self._events.get("websocket_message")
        if on_message is not None:
            on_message(adapter)

    async def _message_async(self, flow: Flow, message: Message) -> None:
        adapter = HTTPFlow.of(flow)
        adapter._open = True
        adapter._websocket()._push(message)
        await self._events["websocket_message"](adapter)

    async def _error(self, flow: Flow, error: str) -> None:
        await _run(self._events["error"], HTTPFlow.of(flow))

    async def closed(self, flow: Flow) -> None:
        """Every addon's flow ends (``live``, ``websocket.timestamp_end`` and the close
        fields), so a task an addon started can see it, whether or not it has
        ``websocket_end``."""
        adapter = HTTPFlow.of(flow)
        adapter._end()
        if "websocket_end" in self._events:
            await _run(self._events["websocket_end"], adapter)
