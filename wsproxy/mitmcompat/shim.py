"""``from mitmproxy import ctx, http, websocket`` for addon scripts, with or without mitmproxy.

Without mitmproxy installed, ``install()`` puts a small package into ``sys.modules``:
``mitmproxy``, ``mitmproxy.http`` (``HTTPFlow``, ``Request``, ``Response``, ``Headers``: the
adapter classes, so type hints and ``isinstance`` work), ``mitmproxy.websocket``
(``WebSocketMessage``, ``WebSocketData``), ``mitmproxy.ctx`` and ``mitmproxy.addonmanager``
(``Loader``). Any other ``mitmproxy`` submodule is missing, and importing it fails.

With mitmproxy installed, scripts import the real modules. No mitmproxy ``Master`` runs in a
wsproxy process, so the real ``mitmproxy.ctx`` has no ``master``, ``options`` or ``log`` of its
own: ``install()`` sets them, for the life of the process, to wsproxy's stand-ins below (a
temporary swap around each hook would buy nothing, as nothing else uses them). Our adapter
classes are also registered as virtual subclasses of the real ``http.HTTPFlow``, ``Request``,
``Response``, ``Headers``, ``websocket.WebSocketMessage`` and ``WebSocketData`` (they are ABCs),
so ``isinstance(flow, http.HTTPFlow)`` holds in either case.

The stand-ins:

* ``ctx.log.debug/info/warn/warning/error/alert(text)``: the ``wsproxy.script`` logger.
* ``ctx.options.NAME``: the current value of any declared option (``--set``); assignable.
* ``ctx.master.commands.call("inject.websocket", flow, to_client, message, is_text=True)``:
  sends ``message`` (bytes) to the client (``to_client=True``) or the server. Any other command
  raises ``CommandError``. ``ctx.master.options`` is ``ctx.options``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types
from collections.abc import Iterator
from typing import Any

from wsproxy.mitmcompat import flow as flows
from wsproxy.mitmcompat.addon import Loader
from wsproxy.model import Flow

script_log = logging.getLogger("wsproxy.script")


class CommandError(Exception):
    """A command wsproxy does not have (``mitmproxy.exceptions.CommandError``)."""


class Log:
    """``ctx.log``: mitmproxy's deprecated logger, onto ``logging``."""

    def debug(self, text: object) -> None:
        script_log.debug("%s", text)

    def info(self, text: object) -> None:
        script_log.info("%s", text)

    def alert(self, text: object) -> None:
        script_log.info("%s", text)

    def warn(self, text: object) -> None:
        script_log.warning("%s", text)

    def warning(self, text: object) -> None:
        script_log.warning("%s", text)

    def error(self, text: object) -> None:
        script_log.error("%s", text)


class OptionsView:
    """``ctx.options``: attribute access to the option values of the running proxy."""

    def __init__(self) -> None:
        object.__setattr__(self, "_values", None)

    def _bind(self, values: object) -> None:
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if values is None:
            raise AttributeError(f"no option {name!r}: no script is loaded")
        return getattr(values, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_values"), name, value)

    def __contains__(self, name: object) -> bool:
        return name in (object.__getattribute__(self, "_values") or ())

    def __iter__(self) -> Iterator[str]:
        return iter(object.__getattribute__(self, "_values") or ())


def inject_websocket(
    flow: Any, to_client: bool, message: bytes | str, is_text: bool = True
) -> None:
    """mitmproxy's ``inject.websocket`` command: queue a message to one side of the flow."""
    native = flow._flow if isinstance(flow, flows.HTTPFlow) else flow
    if not isinstance(native, Flow):
        script_log.warning("inject.websocket: not a WebSocket flow: %r", flow)
        return
    data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
    content: bytes | str = data.decode("utf-8", "replace") if is_text else data
    if native._injector is None:
        script_log.warning("inject.websocket: flow %s is not open", native.id)
    else:
        native.inject(content, to_client=bool(to_client))  # a refusal is logged by the proxy


class Commands:
    def call(self, command: str, *args: Any) -> Any:
        if command == "inject.websocket":
            return inject_websocket(*args)
        raise CommandError(f"wsproxy runs only the inject.websocket command, not {command!r}")


class Master:
    """``ctx.master``: just enough of mitmproxy's for addons (``commands``, ``options``)."""

    def __init__(self, options: OptionsView, log: Log) -> None:
        self.commands = Commands()
        self.options = options
        self.log = log


LOG = Log()
OPTIONS = OptionsView()
MASTER = Master(OPTIONS, LOG)

_SHIM_MARK = "__wsproxy_shim__"


def _module(name: str, doc: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name, doc)
    module.__dict__.update(attrs)
    setattr(module, _SHIM_MARK, True)
    sys.modules[name] = module
    return module


def _install_shim() -> types.ModuleType:
    http = _module(
        "mitmproxy.http",
        "wsproxy's stand-in for mitmproxy.http",
        HTTPFlow=flows.HTTPFlow,
        Request=flows.Request,
        Response=flows.Response,
        Headers=flows.Headers,
    )
    websocket = _module(
        "mitmproxy.websocket",
        "wsproxy's stand-in for mitmproxy.websocket",
        WebSocketMessage=flows.WebSocketMessage,
        WebSocketData=flows.WebSocketData,
    )
    ctx = _module("mitmproxy.ctx", "wsproxy's stand-in for mitmproxy.ctx")
    addonmanager = _module(
        "mitmproxy.addonmanager", "wsproxy's stand-in for mitmproxy.addonmanager", Loader=Loader
    )
    exceptions = _module(
        "mitmproxy.exceptions",
        "wsproxy's stand-in for mitmproxy.exceptions",
        CommandError=CommandError,
    )
    package = _module(
        "mitmproxy",
        "wsproxy's stand-in for mitmproxy (not installed): http, websocket, ctx",
        http=http,
        websocket=websocket,
        ctx=ctx,
        addonmanager=addonmanager,
        exceptions=exceptions,
        __path__=[],
        __version__="0 (wsproxy shim)",
    )
    package.__spec__ = None
    return ctx


def install(values: object | None = None) -> bool:
    """Make mitmproxy's modules importable for scripts and point ``ctx`` at our stand-ins.

    ``values`` is the option values object ``ctx.options`` reads. Returns True when the real
    mitmproxy is installed (and used), False when the shim is.
    """
    if values is not None:
        OPTIONS._bind(values)
    try:
        ctx = importlib.import_module("mitmproxy.ctx")
    except ImportError:
        ctx = _install_shim()
    # The real module only declares these (a running mitmproxy Master sets them).
    setattr(ctx, "master", MASTER)  # noqa: B010
    setattr(ctx, "options", OPTIONS)  # noqa: B010
    setattr(ctx, "log", LOG)  # noqa: B010
    real = not getattr(ctx, _SHIM_MARK, False)
    if real:
        register_real_classes()
    return real


def register_real_classes() -> None:
    """Register the adapters with the real mitmproxy ABCs the scripts imported (if any)."""
    pairs = {
        "mitmproxy.http": (
            ("HTTPFlow", flows.HTTPFlow),
            ("Request", flows.Request),
            ("Response", flows.Response),
            ("Headers", flows.Headers),
        ),
        "mitmproxy.websocket": (
            ("WebSocketMessage", flows.WebSocketMessage),
            ("WebSocketData", flows.WebSocketData),
        ),
    }
    for module_name, classes in pairs.items():
        module = sys.modules.get(module_name)
        if module is None or getattr(module, _SHIM_MARK, False):
            continue
        for name, ours in classes:
            real = getattr(module, name, None)
            register = getattr(real, "register", None)
            if callable(register):
                register(ours)
