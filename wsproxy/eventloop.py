"""Which event loop runs the proxy: uvloop when it is installed, else asyncio's own.

uvloop (libuv under Cython) is an optional extra, ``pip install 'wsproxy[fast]'``; it moves
the same bytes with less Python between the socket and ``data_received`` (the README has the
figures). ``--loop auto`` takes it where it imports; it does not exist on Windows, where auto
means asyncio. The loop is made by ``asyncio.Runner(loop_factory=...)``, the way uvloop's
documentation gives for Python 3.11, not by installing an event loop policy (the policy API
is deprecated from Python 3.14 on).

Everything above this module is written against ``asyncio.AbstractEventLoop`` alone, so both
loops run the same code; the few places where they differ (accept failures, the socket object
``get_extra_info("socket")`` returns) say so where they are handled.
"""

from __future__ import annotations

import asyncio
import importlib
import platform
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from wsproxy.exceptions import ConfigError

__all__ = ["LOOPS", "LoopChoice", "choose_loop", "describe_running", "run", "versions_text"]

LoopName = Literal["auto", "asyncio", "uvloop"]
LOOPS: tuple[LoopName, ...] = ("auto", "asyncio", "uvloop")
INSTALL_HINT = "pip install 'wsproxy[fast]'"

T = TypeVar("T")


@dataclass(frozen=True)
class LoopChoice:
    """The loop a run uses: its name and what makes it (None: asyncio's default)."""

    name: Literal["asyncio", "uvloop"]
    factory: Callable[[], asyncio.AbstractEventLoop] | None


ASYNCIO = LoopChoice("asyncio", None)


def choose_loop(wanted: str) -> LoopChoice:
    """``--loop``'s value as a loop; ``uvloop`` where it cannot run is a ConfigError that
    says how to install it (``auto`` falls back to asyncio instead)."""
    if wanted not in LOOPS:
        raise ConfigError(f"--loop {wanted!r}: choose one of {', '.join(LOOPS)}")
    if wanted == "asyncio":
        return ASYNCIO
    if sys.platform == "win32":
        if wanted == "auto":
            return ASYNCIO
        raise ConfigError("--loop uvloop: uvloop does not run on Windows (use --loop asyncio)")
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if wanted == "auto":
            return ASYNCIO
        raise ConfigError(
            f"--loop uvloop: uvloop is not installed (install it with {INSTALL_HINT}), "
            "or run with --loop asyncio"
        ) from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return LoopChoice("uvloop", factory)


def run(main: Coroutine[Any, Any, T], wanted: str) -> T:
    """``asyncio.run(main)`` on the loop ``wanted`` names (see ``choose_loop``)."""
    try:
        choice = choose_loop(wanted)
    except ConfigError:
        main.close()  # never started: no "coroutine was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=choice.factory) as runner:
        return runner.run(main)


def describe_running() -> str:
    """The running loop for the start log: ``uvloop 0.23.0`` or ``asyncio (Python 3.11.7)``."""
    loop = asyncio.get_running_loop()
    if type(loop).__module__.split(".")[0] == "uvloop":
        return f"uvloop {_uvloop_version()}"
    return f"asyncio {type(loop).__name__} (Python {platform.python_version()})"


def versions_text() -> str:
    """``wsproxy --version``'s second line: Python and the loops this installation has."""
    uvloop = _uvloop_version()
    if uvloop is None:
        loops = f"asyncio; uvloop not installed ({INSTALL_HINT})"
    else:
        auto = choose_loop("auto").name
        loops = f"asyncio, uvloop {uvloop} (--loop auto: {auto})"
    return f"Python {platform.python_version()}, event loops: {loops}"


def _uvloop_version() -> str | None:
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    return str(getattr(uvloop, "__version__", "(unknown version)"))
