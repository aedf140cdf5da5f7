"""Loading plugins: ``-s FILE_OR_NAME``, ``--set name=value``, ``--help-plugins``, hot reload.

``-s`` (repeatable; plugins run in the order given) takes a path (it contains ``/`` or ends in
``.py``) or the name of a bundled plugin (``-s log`` is ``plugins/log.py``: installed, the
package ``wsproxy_plugins``; from a checkout, the ``plugins/`` directory next to ``wsproxy/``).
A file is executed as a module named ``wsproxy_script_<stem>`` (unique per path), with its own
directory importable while it loads. What it may hold, both at once:

* hook functions at module level (wsproxy's ``message(flow, message)`` and friends, see
  ``wsproxy.plugins``; or mitmproxy's ``websocket_message(flow)`` and friends): the module itself
  is then a plugin, first of the file's;
* ``plugins = [obj, ...]`` and/or ``addons = [obj, ...]`` (mitmproxy's name): those objects are
  plugins too, in that order.

An object with a wsproxy hook is used as it is; one with a mitmproxy event hook or a
``load(loader)`` method (and no wsproxy hook) runs through ``wsproxy.mitmcompat.MitmAddon``.
Before any script runs, ``wsproxy.mitmcompat.install()`` makes ``from mitmproxy import ctx,
http, websocket`` work, with or without mitmproxy installed.

Options: plugins declare ``options = [Option(...)]`` (class attribute or module level;
mitmproxy-style addons through ``loader.add_option``). Names are global. ``--set NAME=VALUE``
converts VALUE to the option's type (bool: true/false/1/0/yes/no/on/off; int; float; str;
list: each ``--set`` appends); an unknown name is an error (exit code 2) that lists the known
ones. Every plugin gets the values in ``configure(values)`` (one attribute per option) at load
and after each reload, then ``running()``; ``done()`` at shutdown or when its script reloads.

Hot reload: ``ScriptHost.watch`` polls each file's mtime and size every second (no dependency,
no inotify), re-executes a changed file and swaps the chain's plugin list in place; open
WebSockets stay open and their next items go through the new version. A version that fails to
load (syntax error, exception at import, in ``load`` or ``configure``) is not used: the old one
stays and one log line says where and why. A WebSocket opened before a reload keeps the relay
mode it started with: if the new version adds the first ``message`` (or ``frame``) hook, only
WebSockets opened afterwards reassemble messages for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib.util
import inspect
import logging
import sys
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from wsproxy import mitmcompat
from wsproxy.exceptions import ConfigError, PluginError
from wsproxy.plugins import Option, PluginChain, plugin_name

log = logging.getLogger("wsproxy")

BUNDLED_PACKAGE = "wsproxy_plugins"
POLL_INTERVAL = 1.0  # seconds between checks of the scripts' files (mtime and size)

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


# -- options -------------------------------------------------------------------------------------


class OptionValues:
    """What ``configure`` gets: one attribute per declared option; iterating gives the names."""

    def __init__(self) -> None:
        object.__setattr__(self, "_values", {})

    def __getattr__(self, name: str) -> Any:
        values: dict[str, Any] = object.__getattribute__(self, "_values")
        try:
            return values[name]
        except KeyError:
            known = ", ".join(sorted(values)) or "none"
            raise AttributeError(f"no option {name!r} (known: {known})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        values: dict[str, Any] = object.__getattribute__(self, "_values")
        if name not in values:
            raise AttributeError(f"no option {name!r}")
        values[name] = value

    def __iter__(self) -> Iterator[str]:
        return iter(list(object.__getattribute__(self, "_values")))

    def __contains__(self, name: object) -> bool:
        return name in object.__getattribute__(self, "_values")

    def _replace(self, values: dict[str, Any]) -> None:
        object.__setattr__(self, "_values", values)

    def __repr__(self) -> str:
        return f"OptionValues({object.__getattribute__(self, '_values')!r})"


def convert(option: Option, text: str) -> Any:
    """``--set`` text as a value of ``option``'s type (ConfigError when it is not one)."""
    kind = option.type
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError("use true/false, 1/0, yes/no or on/off")
        if kind is int:
            return int(text, 0)
        if kind is float:
            return float(text)
    except ValueError as error:
        raise ConfigError(f"--set {option.name}={text}: not a {kind.__name__} ({error})") from None
    return text


def parse_sets(sets: Sequence[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in sets:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise ConfigError(f"--set {item!r}: use --set NAME=VALUE")
        pairs.append((name.strip(), value))
    return pairs


def option_values(
    options: Sequence[Option], sets: Sequence[tuple[str, str]], *, strict: bool = True
) -> dict[str, Any]:
    """Defaults, then each ``--set`` in order (a list option appends). ``strict``: an unknown
    name is a ConfigError; otherwise it is skipped (a reloaded script dropped an option)."""
    by_name = {option.name: option for option in options}
    values = {option.name: copy.copy(option.default) for option in options}
    for declared in options:
        if declared.type is list and values[declared.name] is None:
            values[declared.name] = []
    touched: set[str] = set()
    for name, text in sets:
        option = by_name.get(name)
        if option is None:
            if strict:
                known = ", ".join(sorted(by_name)) or "none (no loaded plugin declares options)"
                raise ConfigError(f"unknown option {name!r} in --set {name}={text}; known: {known}")
            log.warning("--set %s: no loaded plugin declares this option any more", name)
            continue
        if option.type is list:
            if name not in touched:
                values[name] = []  # the first --set replaces the default list
            values[name].append(text)
        else:
            values[name] = convert(option, text)
        touched.add(name)
    return values


# -- finding and executing scripts -----------------------------------------------------------


def bundled_dir() -> Path | None:
    """Where the bundled plugins are: the installed package, else a checkout's ``plugins/``."""
    try:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    checkout = Path(__file__).resolve().parent.parent / "plugins"
    return checkout if (checkout / "__init__.py").is_file() else None


def bundled_names() -> list[str]:
    where = bundled_dir()
    if where is None:
        return []
    return sorted(p.stem for p in where.glob("*.py") if not p.stem.startswith("_"))


def resolve(spec: str) -> Path:
    """The file ``-s spec`` means: a path, or a bundled plugin's file."""
    if "/" in spec or spec.endswith(".py") or (sys.platform == "win32" and "\\" in spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise PluginError(f"-s {spec}: no such file")
        return path.resolve()
    where = bundled_dir()
    bundled = where / f"{spec}.py" if where is not None else None
    if bundled is None or not bundled.is_file() or spec.startswith("_"):
        names = ", ".join(bundled_names()) or "none found"
        raise PluginError(f"-s {spec}: no bundled plugin of that name (bundled: {names})")
    return bundled.resolve()


_MODULE_NAMES: dict[Path, str] = {}


def module_name_for(path: Path) -> str:
    """``wsproxy_script_<stem>``, made unique per path and kept across reloads."""
    name = _MODULE_NAMES.get(path)
    if name is None:
        stem = "".join(c if c.isalnum() or c == "_" else "_" for c in path.stem)
        base = f"wsproxy_script_{stem}"
        taken = set(_MODULE_NAMES.values())
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        _MODULE_NAMES[path] = name
    return name


def execute(path: Path, name: str) -> ModuleType:
    """Run ``path`` as module ``name``; the previous module of that name stays on failure."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module  # dataclasses, pickle and friends look their module up here
    directory = str(path.parent)
    sys.path.insert(0, directory)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if previous is not None:
            sys.modules[name] = previous
        else:
            sys.modules.pop(name, None)
        raise
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(directory)
    mitmcompat.register_real_classes()
    return module


def describe_failure(error: BaseException, path: Path) -> str:
    """One line: ``file:line: Error: message``, the line being the script's own if it has one."""
    if isinstance(error, SyntaxError):
        where = f"{error.filename or path}:{error.lineno}"
        return f"{where}: SyntaxError: {error.msg}"
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if Path(f.filename).resolve() == path] or frames
    where = f"{ours[-1].filename}:{ours[-1].lineno}" if ours else str(path)
    return f"{where}: {type(error).__name__}: {error}"


def _own_functions(module: ModuleType, names: Sequence[str]) -> bool:
    """Has a function among ``names`` defined in the module itself (not imported into it)."""
    return any(
        callable(fn) and getattr(fn, "__module__", None) == module.__name__
        for fn in (getattr(module, n, None) for n in names)
    )


def collect(module: ModuleType, label: str) -> list[object]:
    """The plugin objects of an executed script, mitmproxy-style ones wrapped."""
    from wsproxy.plugins import HOOKS

    listed: list[object] = []
    for attr in ("plugins", "addons"):
        objects = getattr(module, attr, None)
        if objects is None:
            continue
        if not isinstance(objects, list | tuple):
            raise PluginError(f"{label}: {attr} must be a list of plugin objects")
        listed.extend(objects)
    lifecycle = ("load", "configure", "running", "done")
    module_is_plugin = (
        _own_functions(module, (*HOOKS, *mitmcompat.MITM_EVENTS, *lifecycle))
        or isinstance(getattr(module, "options", None), list)
        or not listed
    )
    found: list[object] = []
    for obj in ([module] if module_is_plugin else []) + listed:
        if inspect.isclass(obj):
            raise PluginError(f"{label}: {obj.__name__} is a class: list an instance of it")
        if mitmcompat.is_mitm_style(obj):
            name = label if obj is module else plugin_name(obj)
            found.append(mitmcompat.MitmAddon(obj, name))
        else:
            found.append(obj)
    if (
        module_is_plugin
        and not listed
        and not _own_functions(module, (*HOOKS, *mitmcompat.MITM_EVENTS))
    ):
        log.warning("script %s defines no hook (see wsproxy --help-plugins)", label)
    return found


def declared_options(plugins: Sequence[object]) -> list[Option]:
    options: list[Option] = []
    for plugin in plugins:
        declared = getattr(plugin, "options", None)
        if isinstance(declared, list | tuple):
            options.extend(o for o in declared if isinstance(o, Option))
    return options


async def _call(plugin: object, method: str, *args: Any) -> None:
    fn = getattr(plugin, method, None)
    if callable(fn):
        result = fn(*args)
        if inspect.isawaitable(result):
            await result


# -- the scripts of one run ------------------------------------------------------------------


@dataclass
class Script:
    spec: str  # as given to -s
    path: Path
    module_name: str
    stamp: tuple[int, int] = (0, 0)
    module: ModuleType | None = None
    plugins: list[object] = field(default_factory=list)

    def current_stamp(self) -> tuple[int, int]:
        try:
            stat = self.path.stat()
        except OSError:
            return self.stamp  # being replaced (editors write a new file): look again later
        return (stat.st_mtime_ns, stat.st_size)

    def load(self) -> tuple[ModuleType, list[object]]:
        stamp = self.current_stamp()
        module = execute(self.path, self.module_name)
        plugins = collect(module, self.path.stem)
        self.stamp = stamp
        return module, plugins


class ScriptHost:
    """The scripts of one proxy run: loads them, keeps their options, reloads them."""

    def __init__(self, specs: Sequence[str], sets: Sequence[str] = ()) -> None:
        self.sets = parse_sets(sets)
        self.values = OptionValues()
        self.chain: PluginChain | None = None
        self.first: list[object] = []  # built-in plugins ahead of the scripts' (the web UI's)
        self.real_mitmproxy = mitmcompat.install(self.values)
        self.scripts: list[Script] = []
        for spec in specs:
            path = resolve(spec)
            script = Script(spec, path, module_name_for(path))
            try:
                script.module, script.plugins = script.load()
            except PluginError:
                raise
            except Exception as error:
                raise PluginError(f"-s {spec}: {describe_failure(error, path)}") from None
            self.scripts.append(script)
        self._check_names(self.plugins)
        self.values._replace(option_values(declared_options(self.plugins), self.sets))
        addons = [p for p in self.plugins if isinstance(p, mitmcompat.MitmAddon)]
        if addons:
            log.info(
                "mitmproxy-style addons (%s) use %s",
                ", ".join(a.name for a in addons),
                "the installed mitmproxy's modules"
                if self.real_mitmproxy
                else "wsproxy's stand-in mitmproxy modules (mitmproxy is not installed)",
            )

    @property
    def plugins(self) -> list[object]:
        return [*self.first, *(plugin for script in self.scripts for plugin in script.plugins)]

    @staticmethod
    def _check_names(plugins: Sequence[object]) -> None:
        owners: dict[str, str] = {}
        for plugin in plugins:
            for option in declared_options([plugin]):
                other = owners.setdefault(option.name, plugin_name(plugin))
                if other != plugin_name(plugin):
                    raise PluginError(
                        f"option {option.name!r} is declared by both {other} and "
                        f"{plugin_name(plugin)}"
                    )

    async def start(self) -> PluginChain:
        """Configure every plugin, build the chain, then ``running()``."""
        for plugin in self.plugins:
            try:
                await _call(plugin, "configure", self.values)
            except Exception as error:
                raise PluginError(
                    f"plugin {plugin_name(plugin)}: configure failed: {error}"
                ) from None
        # After configure: a plugin may pick its hooks from its options (see plugins/log.py).
        self.chain = PluginChain(self.plugins)
        for plugin in self.plugins:
            await self._lifecycle(plugin, "running")
        return self.chain

    async def stop(self) -> None:
        for plugin in self.plugins:
            await self._lifecycle(plugin, "done")

    async def _lifecycle(self, plugin: object, method: str) -> None:
        try:
            await _call(plugin, method)
        except Exception as error:
            log.error("plugin %s: %s() failed: %s", plugin_name(plugin), method, error)

    # -- hot reload ----------------------------------------------------------------------------

    async def watch(self, interval: float = POLL_INTERVAL) -> None:
        """Poll the files forever (cancel the task to stop)."""
        while True:
            await asyncio.sleep(interval)
            await self.reload_changed()

    async def reload_changed(self) -> list[Script]:
        """Reload every script whose file changed; returns those reloaded."""
        reloaded = []
        for script in self.scripts:
            if script.current_stamp() != script.stamp and await self.reload(script):
                reloaded.append(script)
        return reloaded

    async def reload(self, script: Script) -> bool:
        """Load the new version of ``script``; on any failure keep the old one (logged)."""
        old_plugins = script.plugins
        old_values = dict(vars_of(self.values))
        try:
            module, plugins = script.load()
            everything = [p for s in self.scripts for p in (plugins if s is script else s.plugins)]
            self._check_names(everything)
            self.values._replace(
                option_values(declared_options(everything), self.sets, strict=False)
            )
            for plugin in plugins:
                await _call(plugin, "configure", self.values)
        except Exception as error:
            self.values._replace(old_values)
            script.stamp = script.current_stamp()  # do not retry this version every second
            log.error(
                "script %s: reload failed, keeping the previous version: %s",
                script.path.name,
                describe_failure(error, script.path),
            )
            return False
        for plugin in old_plugins:
            await self._lifecycle(plugin, "done")
        script.module, script.plugins = module, plugins
        if self.chain is not None:
            self.chain.set_plugins(self.plugins)
        for plugin in plugins:
            await self._lifecycle(plugin, "running")
        log.warning("script %s reloaded (%d plugin(s))", script.path.name, len(plugins))
        return True


def vars_of(values: OptionValues) -> dict[str, Any]:
    return {name: getattr(values, name) for name in values}


# -- --help-plugins --------------------------------------------------------------------------


def _format_default(option: Option) -> str:
    value = option.default
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or value == "" or value == []:
        return "(none)" if value is None else "(empty)"
    return str(value)


def _type_name(option: Option) -> str:
    return "list (repeat --set)" if option.type is list else option.type.__name__


def describe_options(title: str, plugins: Sequence[object]) -> list[str]:
    lines = [title]
    options = declared_options(plugins)
    if not options:
        lines.append("  (no options)")
    for option in options:
        lines.append(f"  {option.name}  [{_type_name(option)}, default {_format_default(option)}]")
        if option.help:
            lines.append(f"      {option.help}")
    return lines


def help_text(specs: Sequence[str]) -> str:
    """What ``wsproxy --help-plugins [-s ...]`` prints: every option of the loaded plugins and of
    the bundled ones (raises PluginError when a given script does not load)."""
    out = [
        "Plugin options: set with --set NAME=VALUE (bool: true/false/1/0/yes/no/on/off;",
        "a list option takes one --set per item).",
        "",
    ]
    mitmcompat.install()
    seen: set[Path] = set()
    for spec in specs:
        path = resolve(spec)
        try:
            module = execute(path, module_name_for(path))
            plugins = collect(module, path.stem)
        except PluginError:
            raise
        except Exception as error:
            raise PluginError(f"-s {spec}: {describe_failure(error, path)}") from None
        seen.add(path)
        out += describe_options(f"{spec} ({path}):", plugins)
        out.append("")
    where = bundled_dir()
    for name in bundled_names():
        if where is None or (where / f"{name}.py").resolve() in seen:
            continue
        path = (where / f"{name}.py").resolve()
        try:
            module = execute(path, module_name_for(path))
            plugins = collect(module, name)
        except Exception as error:
            out += [f"bundled: {name} ({path}):", f"  cannot load: {describe_failure(error, path)}"]
        else:
            out += describe_options(f"bundled: {name} (-s {name}):", plugins)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


__all__ = [
    "OptionValues",
    "Script",
    "ScriptHost",
    "bundled_dir",
    "bundled_names",
    "convert",
    "help_text",
    "option_values",
    "resolve",
]
