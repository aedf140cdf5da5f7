"""The plugin chain: every handshake, frame and message passes through the plugins in order.

A plugin is any object with some of these hook methods, each plain or ``async``:

==========================  =================================================================
``handshake_request(flow)``   before the upstream is contacted; change ``flow.request``
                              (URL parts, headers, subprotocols) or ``flow.refuse(403)``
``handshake_response(flow)``  the upstream answered; change ``flow.response.headers`` or refuse
``opened(flow)``              the WebSocket is open on both sides
``frame(flow, frame)``        every frame, data and control, before reassembly (``FrameEvent``)
``message(flow, message)``    every whole message (``Message``): read, change, drop, answer
``closed(flow)``              both sides are closed; close codes and counts are on the flow
``error(flow, error)``        something failed on this flow (a protocol error, an upstream error)
==========================  =================================================================

Options: a plugin declares them as ``options = [Option(name, type, default, help), ...]`` (a
class attribute or a module-level list); the user sets them with ``--set name=value`` and the
plugin gets them in ``configure(options)``, an object with one attribute per option, called
once at load and again whenever they change. ``wsproxy --help-plugins`` lists them.

A plugin dropped a message (or frame): the plugins after it do not see it, except those with
``sees_dropped = True`` (the mitmproxy addon adapter: mitmproxy runs every addon's hook).

A plugin whose ``message`` hook needs the messages of one peer only says so with
``message_directions`` (``{"client"}`` or ``{"server"}``; read when a WebSocket opens): when no
message hook wants a peer's messages, that peer's frames skip the chain and take the proxy's
quiet path (with permessage-deflate, they are then neither inflated for the chain nor held).
A plugin without it gets both.

The chain never lets a plugin take the proxy down: a hook that raises is logged once (per
plugin and hook) with its traceback, whatever it changed is undone, and the item continues
through the rest of the chain unchanged.
"""

from __future__ import annotations

import inspect
import logging
import traceback
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from wsproxy.model import FrameEvent, Message

log = logging.getLogger("wsproxy")


@dataclass(frozen=True)
class Option:
    """An option a plugin declares: set with ``--set name=value`` on the command line.

    ``type`` is one of bool, int, float, str (or ``list`` for a repeatable string option);
    option names are global, so prefix them with the plugin's name (``log_json``).
    """

    name: str
    type: type
    default: Any
    help: str = ""


HOOKS = (
    "handshake_request",
    "handshake_response",
    "opened",
    "frame",
    "message",
    "closed",
    "error",
)

__all__ = ["HOOKS", "Option", "PluginChain", "plugin_name"]


def _sees_dropped(hook: Callable[..., Any]) -> bool:
    """Whether the plugin of this hook method wants items an earlier plugin dropped."""
    return bool(getattr(getattr(hook, "__self__", None), "sees_dropped", False))


_BOTH = frozenset(("client", "server"))


def _message_directions(hook: Callable[..., Any]) -> Collection[str]:
    """The directions the plugin of this message hook reads (``message_directions``)."""
    directions = getattr(getattr(hook, "__self__", None), "message_directions", None)
    return _BOTH if directions is None else directions


def _plain(result: object) -> None:
    """What a plain function hook returned must not be an awaitable (it would never run)."""
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError("a plain function hook returned an awaitable: make it async def")


def plugin_name(plugin: object) -> str:
    name = getattr(plugin, "name", None)
    if isinstance(name, str) and name:
        return name
    if inspect.ismodule(plugin):
        return plugin.__name__.rsplit(".", 1)[-1]
    return type(plugin).__name__


class PluginChain:
    """The ordered plugins of a proxy run; swapped in place when a script reloads."""

    def __init__(self, plugins: Sequence[object] = ()) -> None:
        self._reported: set[tuple[str, str]] = set()
        self.plugins: list[object] = []
        self._hooks: dict[str, list[tuple[str, Callable[..., Any]]]] = {}
        self.set_plugins(plugins)

    def set_plugins(self, plugins: Sequence[object]) -> None:
        self.plugins = list(plugins)
        self._hooks = {
            hook: [
                (plugin_name(p), getattr(p, hook))
                for p in self.plugins
                if callable(getattr(p, hook, None))
            ]
            for hook in HOOKS
        }
        # Hooks that are all plain functions run inline, with no task switch per item.
        self._inline = {
            hook: all(not inspect.iscoroutinefunction(fn) for _, fn in hooks)
            for hook, hooks in self._hooks.items()
        }
        # inline("message") as a plain attribute: the shell asks it for every message.
        self.messages_inline = self._inline["message"]

    @property
    def wants_frames(self) -> bool:
        return bool(self._hooks["frame"])

    @property
    def wants_messages(self) -> bool:
        return bool(self._hooks["message"])

    def wants_messages_from(self, direction: str) -> bool:
        """Whether a message hook reads the messages ``direction`` (``client`` or ``server``)
        sends: one whose plugin has no ``message_directions``, or one that names it."""
        return any(direction in _message_directions(hook) for _, hook in self._hooks["message"])

    def has(self, hook: str) -> bool:
        return bool(self._hooks.get(hook))

    # -- hooks -------------------------------------------------------------------------------

    async def handshake_request(self, flow: Any) -> None:
        for name, hook in self._hooks["handshake_request"]:
            await self._call(name, "handshake_request", hook, flow)
            if flow.refused is not None:
                return

    async def handshake_response(self, flow: Any) -> None:
        for name, hook in self._hooks["handshake_response"]:
            await self._call(name, "handshake_response", hook, flow)
            if flow.refused is not None:
                return

    async def opened(self, flow: Any) -> None:
        for name, hook in self._hooks["opened"]:
            await self._call(name, "opened", hook, flow)

    async def closed(self, flow: Any) -> None:
        for name, hook in self._hooks["closed"]:
            await self._call(name, "closed", hook, flow)

    async def error(self, flow: Any, error: str) -> None:
        for name, hook in self._hooks["error"]:
            await self._call(name, "error", hook, flow, error)

    def inline(self, hook: str) -> bool:
        """Whether every ``hook`` is a plain function, so the chain can run without awaiting."""
        return self._inline.get(hook, False)

    def frame_inline(self, flow: Any, frame: FrameEvent) -> None:
        """``frame`` for chains whose frame hooks are all plain functions."""
        for name, hook in self._hooks["frame"]:
            if frame.dropped and not _sees_dropped(hook):
                continue
            saved = (frame.payload, frame.modified_by, frame.dropped_by)
            frame._actor = name
            if not self._call_inline(name, "frame", hook, flow, frame):
                frame._payload, frame.modified_by, frame.dropped_by = saved
        frame._actor = None

    def message_inline(self, flow: Any, message: Message) -> None:
        """``message`` for chains whose message hooks are all plain functions (it runs for
        every message, so ``_call_inline`` is written out here)."""
        for name, hook in self._hooks["message"]:
            if message.dropped_by is not None and not _sees_dropped(hook):
                continue
            saved = (message._content, message._opcode, message.modified_by, message.dropped_by)
            message._actor = name
            try:
                result = hook(flow, message)
                if result is not None:
                    _plain(result)
            except Exception as error:
                self._report(name, "message", error)
                (message._content, message._opcode, message.modified_by, message.dropped_by) = saved
        message._actor = None

    async def frame(self, flow: Any, frame: FrameEvent) -> None:
        for name, hook in self._hooks["frame"]:
            if frame.dropped and not _sees_dropped(hook):
                continue
            saved = (frame.payload, frame.modified_by, frame.dropped_by)
            frame._actor = name
            if not await self._call(name, "frame", hook, flow, frame):
                frame._payload, frame.modified_by, frame.dropped_by = saved
        frame._actor = None

    async def message(self, flow: Any, message: Message) -> None:
        for name, hook in self._hooks["message"]:
            if message.dropped and not _sees_dropped(hook):
                continue
            saved = (message.content, message.opcode, message.modified_by, message.dropped_by)
            message._actor = name
            if not await self._call(name, "message", hook, flow, message):
                (message._content, message._opcode, message.modified_by, message.dropped_by) = saved
        message._actor = None

    async def _call(self, name: str, hook: str, fn: Callable[..., Any], *args: Any) -> bool:
        """Run one hook; False when it raised (logged once per plugin and hook)."""
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                await result
        except Exception as error:
            self._report(name, hook, error)
            return False
        return True

    def _call_inline(self, name: str, hook: str, fn: Callable[..., Any], *args: Any) -> bool:
        try:
            result = fn(*args)
            if result is not None:
                _plain(result)
        except Exception as error:
            self._report(name, hook, error)
            return False
        return True

    def _report(self, name: str, hook: str, error: Exception) -> None:
        key = (name, hook)
        if key not in self._reported:
            self._reported.add(key)
            log.error(
                "plugin %s failed in %s (the item goes on unchanged; later failures of "
                "this hook are counted, not logged): %s\n%s",
                name,
                hook,
                error,
                "".join(traceback.format_exception(error)).rstrip(),
            )
