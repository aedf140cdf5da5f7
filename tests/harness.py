"""The one test harness: proxies, upstreams, waits. Fixtures built on it are in tests/conftest.py.

Proxies:

* ``ProxyProcess(args, confdir, log_dir)``: ``python -m wsproxy`` on a free port, in its own
  process group, stderr to a file. ``wait_log(predicate)`` is the one way to wait on its log;
  ``problems(code)`` says what was wrong with how it ended (a traceback, SIGKILL, a non-zero
  status the test did not ask for with ``expect_exit()``). ``netns=NAME`` runs it inside a
  network namespace (``tests.netns``), where its readiness is probed too.
* ``ProxyView``: a long-running proxy as one test sees it (its part of the log only).
* ``running_proxy(tmp_path, plugins, upstream_port, **options)``: a ``ProxyServer`` in the
  test's event loop, for tests that hand it plugin objects, a capture sink or a CA.

Upstreams:

* ``ws_upstream(handler)``: a ``websockets`` server that records handshakes, messages and
  closes; its default handler ``echo`` echoes (``/bye`` closes with 4000, ``/send?n=N``
  sends N bytes first, ``upper`` answers text in upper case, ``echo=False`` only records).
* ``aiohttp_app(state)``: an aiohttp application with a WebSocket echo and HTTP routes.
* ``RawServer``: a bare asyncio server for peers that must misbehave (see the fixture);
  ``http_handler(answer)`` makes it a keep-alive HTTP/1.1 server whose ``answer`` decides
  each response (or closes without one).

Waits:

* ``wait_until(check, timeout, what)``: polls ``check()`` until it returns something true;
  the one poller for conditions that nothing signals (a file's contents, a counter in
  another object). Prefer an ``asyncio.Event`` or queue the code under test sets.
* ``wait_accepting(port, proc, timeout)``: until the port accepts; ``ProcessExited`` if the
  process ends first.

Other programs' servers:

* ``server_process(command, port, log_path)``: a program that is not wsproxy (tinyproxy,
  mitmdump as a next proxy), in its own process group, ready once ``HOST:port`` accepts,
  stopped at exit; ``program(name, hint)`` finds its executable (fails under CI when missing).

Event loop: ``WSPROXY_TEST_LOOP=asyncio`` (or ``uvloop``) adds ``--loop NAME`` to every proxy
spawned through ``wsproxy_command`` (``spawn_loop_args``).

Also: ``free_port()``, ``wsproxy_command``, ``proxy_free_env``, ``stop_group``/``kill_group``,
``status_kib`` and ``Memory`` (a process's peak RSS from now on), ``child_pids`` and ``alive``
(a ``--workers`` supervisor's workers: ``ProxyProcess.wait_workers(n)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.integration.wsraw import Head, RawConnection, read_request
from tests.netns import accepting_probe, in_netns
from wsproxy.eventloop import LOOPS
from wsproxy.modes import Regular, Reverse
from wsproxy.options import Options
from wsproxy.plugins import PluginChain
from wsproxy.proxy.server import Capture, ProxyServer
from wsproxy.sansio.targets import host_port
from wsproxy.tls import CertAuthority

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
POLL = 0.02  # seconds between two looks at a condition nothing signals

T = TypeVar("T")


# -- ports, commands, process groups ---------------------------------------------------------


def free_port() -> int:
    """A TCP port nothing listens on right now (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def spawn_loop_args() -> list[str]:
    """``--loop NAME`` when ``WSPROXY_TEST_LOOP=NAME`` (asyncio, uvloop, auto) chooses the
    event loop of every proxy the tests spawn; unset, they run on ``--loop auto``'s."""
    name = os.environ.get("WSPROXY_TEST_LOOP", "")
    if not name:
        return []
    if name not in LOOPS:
        raise pytest.UsageError(f"WSPROXY_TEST_LOOP={name!r}: choose one of {', '.join(LOOPS)}")
    return ["--loop", name]


def wsproxy_command(
    port: int, confdir: Path | str, *args: str, host: str = HOST, module: str = "wsproxy"
) -> list[str]:
    """``python -m wsproxy`` (or ``module``: ``wsproxy.web``) listening on ``host:port``
    with ``confdir``, then ``args`` (after ``spawn_loop_args()``: an ``args``' own ``--loop``
    wins)."""
    return [
        sys.executable,
        "-m",
        module,
        "--listen-host",
        host,
        "-p",
        str(port),
        "--confdir",
        str(confdir),
        *spawn_loop_args(),
        *args,
    ]


def proxy_free_env() -> dict[str, str]:
    """``os.environ`` without any variable whose name mentions a proxy (``http_proxy`` and
    the like must not steer the subprocess), and with ``PYTHONUNBUFFERED=1``."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ProcessExited(Exception):
    """The process ended before its port accepted a connection."""


async def wait_until(
    check: Callable[[], T],
    timeout: float = 10,
    what: str | Callable[[], str] = "condition",
    *,
    interval: float = POLL,
) -> T:
    """``check()`` once it returns something true; AssertionError after ``timeout`` seconds
    (``what`` says what never held, or is called for the message). ``interval`` is how long
    a look may lag behind the change (smaller for tests that time it)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            message = what() if callable(what) else what
            raise AssertionError(f"never held within {timeout} s: {message}")
        await asyncio.sleep(interval)
    return result


async def wait_accepting(
    port: int, proc: subprocess.Popen[bytes], timeout: float, host: str = HOST
) -> None:
    """Poll until ``host:port`` accepts a connection (closed at once)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ProcessExited(f"exited with {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing accepts on {host}:{port} after {timeout} s") from None
            await asyncio.sleep(POLL)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


def wait_accepting_sync(
    port: int, proc: subprocess.Popen[bytes], timeout: float, host: str = HOST
) -> None:
    """``wait_accepting`` outside an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ProcessExited(f"exited with {proc.returncode}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing accepts on {host}:{port} after {timeout} s") from None
            time.sleep(POLL)


def kill_group(proc: subprocess.Popen[bytes]) -> bool:
    """SIGKILL the process group of ``proc`` (started with ``start_new_session=True``) if
    ``proc`` still runs; True if it did."""
    if proc.poll() is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    return True


async def stop_group(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """SIGTERM ``proc``; SIGKILL its whole process group if it still runs after ``timeout``
    seconds. True if it had to be killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(AssertionError):
            await wait_until(lambda: proc.poll() is not None, timeout)
    return kill_group(proc)


def stop_group_sync(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """``stop_group`` outside an event loop."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    return kill_group(proc)


def status_kib(pid: int, field_name: str) -> int:
    """A field of ``/proc/PID/status`` given in kB (VmRSS, VmHWM, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field_name} in /proc/{pid}/status")


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc), in pid order."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            children.append(int(entry))
    return sorted(children)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet waited for, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


class Memory:
    """A process's peak RSS from now on, compared with its RSS now."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        # Reset VmHWM to the current RSS, so the peak is this run's (ours to write: same user).
        with contextlib.suppress(OSError), open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        self.start = status_kib(pid, "VmRSS")
        self.start_hwm = status_kib(pid, "VmHWM")

    def growth_kib(self) -> int:
        """Peak RSS since the start, minus RSS at the start (KiB)."""
        hwm = status_kib(self.pid, "VmHWM")
        # Without the reset (clear_refs refused), compare with the peak before the run.
        baseline = self.start if self.start_hwm <= self.start + 1024 else self.start_hwm
        return hwm - baseline


# -- other programs' servers -----------------------------------------------------------------


def program(name: str, install_hint: str) -> str:
    """The path of executable ``name`` (the venv's bin first): skip when it is missing, or
    fail under CI=true, where tests/run.sh installed it and a skip would hide that it did not."""
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.defpath]))
    found = found or shutil.which(name)
    if found is None:
        message = f"{name} not found: {install_hint}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {message}")
        pytest.skip(message)
    return found


@contextlib.asynccontextmanager
async def server_process(
    command: Sequence[str], port: int, log_path: Path, *, timeout: float = READY_TIMEOUT
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``command`` (a server that listens on ``HOST:port``) in its own process group with
    stdout and stderr in ``log_path``; yields once the port accepts (fails with the log if it
    exits first or never listens), and on exit stops it (SIGTERM, SIGKILL of its group)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=proxy_free_env(),
            start_new_session=True,
        )
    try:
        try:
            await wait_accepting(port, proc, timeout)
        except (ProcessExited, TimeoutError) as error:
            text = log_path.read_text("utf-8", "replace")
            raise AssertionError(f"{command[0]} did not start: {error}\n{text}") from None
        yield proc
    finally:
        await stop_group(proc, STOP_TIMEOUT)


# -- the proxy process -----------------------------------------------------------------------


def hiding_source(*modules: str) -> str:
    """A ``sitecustomize`` that makes importing ``modules`` (and their submodules) fail, as
    if they were not installed."""
    return f'''
import sys

_HIDDEN = {modules!r}


class _Hide:
    """Acts as if {", ".join(modules)} were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden)", name=name)
        return None


sys.meta_path.insert(0, _Hide())
'''


def recording_source(path: Path) -> str:
    """A ``sitecustomize`` that writes the names of every module the process imported, one
    a line, to ``path`` when it exits."""
    return f"""
import atexit
import sys


def _record_modules():
    with open({str(path)!r}, "w") as f:
        f.write("\\n".join(sorted(sys.modules)) + "\\n")


atexit.register(_record_modules)
"""


HIDE_MITMPROXY = hiding_source("mitmproxy")

STARTED: list[ProxyProcess] = []  # every proxy process of the session, checked at its end


class ProxyStartError(AssertionError):
    pass


class ProxyProcess:
    """One ``python -m wsproxy`` subprocess listening on ``host:port``.

    ``verbose`` adds ``-v`` (the frame lines tests wait for); ``hide_mitmproxy`` runs it as
    if mitmproxy were not installed (a ``sitecustomize`` on ``PYTHONPATH`` makes
    ``import mitmproxy`` fail), ``hide_modules`` likewise for others (``("yaml",)``);
    ``record_modules`` has it write the modules it imported when it exits (read them with
    ``imported_modules()`` after ``stop()``). It runs in the checkout, so
    ``-s plugins/NAME.py`` works; ``env`` adds to its environment.
    """

    def __init__(
        self,
        args: Sequence[str],
        confdir: Path,
        log_dir: Path,
        *,
        host: str = HOST,
        verbose: bool = True,
        hide_mitmproxy: bool = False,
        hide_modules: Sequence[str] = (),
        record_modules: bool = False,
        netns: str | None = None,
        module: str = "wsproxy",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.confdir = confdir
        self.host = host
        self.netns = netns
        self.port = free_port()
        # "{port}" in an argument stands for the proxy's own port (a proxy pointed at itself).
        self.args = [arg.replace("{port}", str(self.port)) for arg in args]
        n = len(STARTED)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = log_dir / f"proxy-{n}-stderr.log"
        self.stdout_path = log_dir / f"proxy-{n}-stdout.log"
        self.modules_path = log_dir / f"proxy-{n}-modules.txt" if record_modules else None
        self.command = wsproxy_command(
            self.port, confdir, *(["-v"] if verbose else []), *self.args, host=host, module=module
        )
        if netns is not None:
            self.command = in_netns(netns, *self.command)
        # "{port}" in an environment value, too (a worker told its port).
        more = {
            name: value.replace("{port}", str(self.port)) for name, value in (env or {}).items()
        }
        env = {**proxy_free_env(), **more}
        hidden = (*(["mitmproxy"] if hide_mitmproxy else []), *hide_modules)
        if hidden or self.modules_path is not None:
            site = log_dir / ("hide_" + "_".join(hidden))
            source = hiding_source(*hidden) if hidden else ""
            if self.modules_path is not None:
                site = log_dir / f"proxy-{n}-site"
                source += recording_source(self.modules_path)
            site.mkdir(exist_ok=True)
            (site / "sitecustomize.py").write_text(source)
            env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                cwd=ROOT,
                start_new_session=True,  # its own process group
            )
        self.killed = False
        self.failed_start = False
        self.exit_expected = False
        STARTED.append(self)

    @property
    def url(self) -> str:
        return f"http://{host_port(self.host, self.port)}"

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    @property
    def ca_cert(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def stderr(self) -> str:
        return self.stderr_path.read_text("utf-8", "replace")

    def imported_modules(self) -> set[str]:
        """With ``record_modules``, once it has exited: every module it imported."""
        assert self.modules_path is not None, "start it with record_modules=True"
        assert self.proc.poll() is not None, "the modules are written when it exits"
        return set(self.modules_path.read_text().split())

    def describe(self) -> str:
        return (
            f"proxy {' '.join(self.command[1:])} (pid {self.proc.pid}, "
            f"returncode {self.proc.poll()})\n--- stderr ---\n{self.stderr()}"
        )

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll until the port accepts a connection; fail with the proxy's stderr if not.
        A proxy in a network namespace is probed from inside it."""
        try:
            if self.netns is not None:
                await self._wait_accepting_in_netns(self.netns, timeout)
            else:
                await wait_accepting(self.port, self.proc, timeout, self.host)
        except (ProcessExited, TimeoutError) as e:
            raise self._start_error(e, timeout) from None

    async def _wait_accepting_in_netns(self, netns: str, timeout: float) -> None:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        probe = await asyncio.create_subprocess_exec(
            *accepting_probe(netns, host, self.port, self.proc.pid, timeout),
            stdin=subprocess.DEVNULL,
        )
        try:
            code = await asyncio.wait_for(probe.wait(), timeout + 5)
        finally:
            if probe.returncode is None:
                probe.kill()
                await probe.wait()
        if code == 3:
            raise ProcessExited(f"exited with {self.proc.poll()}")
        if code != 0:
            raise TimeoutError(
                f"nothing accepts on {host}:{self.port} in {netns} after {timeout} s"
            )

    def wait_ready_sync(self, timeout: float = READY_TIMEOUT) -> None:
        """``wait_ready`` for fixtures outside an event loop."""
        try:
            wait_accepting_sync(self.port, self.proc, timeout, self.host)
        except (ProcessExited, TimeoutError) as e:
            raise self._start_error(e, timeout) from None

    def _start_error(self, e: Exception, timeout: float) -> ProxyStartError:
        self.failed_start = True
        if isinstance(e, ProcessExited):
            return ProxyStartError(f"the proxy exited before listening\n{self.describe()}")
        return ProxyStartError(f"the proxy did not listen within {timeout} s\n{self.describe()}")

    def port_was_taken(self) -> bool:
        """It exited because another process took its free port meanwhile."""
        return self.proc.poll() is not None and "in use" in self.stderr()

    def expect_exit(self) -> None:
        """The test ends this proxy itself (SIGKILL, a bad flag): its status is the test's
        business, not the harness's. A traceback is still a problem."""
        self.exit_expected = True

    def problems(self, code: int | None, text: str | None = None) -> list[str]:
        """What is wrong with how this proxy ended (or with ``text``, a part of its log)."""
        text = self.stderr() if text is None else text
        problems = []
        if "Traceback" in text:
            problems.append(f"the proxy printed a traceback\n{self.describe()}")
        if self.exit_expected:
            pass
        elif self.killed:
            problems.append(f"the proxy ignored SIGTERM and was killed\n{self.describe()}")
        elif code is not None and code != 0 and not self.failed_start:
            problems.append(f"the proxy exited with {code}\n{self.describe()}")
        return problems

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def wait_log(self, predicate: Callable[[str], bool], timeout: float = 10) -> str:
        """The stderr once ``predicate`` holds on it; fails with the log if it never does
        (or if the proxy exits first without it holding)."""

        def check() -> list[str]:
            text = self.stderr()
            if predicate(text):
                return [text]
            if self.proc.poll() is not None:
                raise AssertionError(f"the proxy exited, log condition unmet\n{self.describe()}")
            return []

        return (await wait_until(check, timeout, lambda: f"log condition\n{self.describe()}"))[0]

    async def wait_count(self, needle: str, count: int, timeout: float = 10) -> str:
        """The stderr once ``needle`` is in it at least ``count`` times."""
        return await self.wait_log(lambda text: text.count(needle) >= count, timeout)

    def worker_pids(self) -> list[int]:
        """With ``--workers N``: the worker processes (the supervisor's children)."""
        return child_pids(self.proc.pid)

    async def wait_workers(self, count: int, timeout: float = READY_TIMEOUT) -> list[int]:
        """With ``--workers N``: once the supervisor says all ``count`` listen, their pids."""
        await self.wait_log(lambda text: f"{count} workers)" in text, timeout)
        return await wait_until(
            lambda: pids if len(pids := self.worker_pids()) == count else None,
            timeout,
            f"{count} worker processes",
        )

    async def wait_exit(self, timeout: float) -> int | None:
        """The return code, or None if still running after ``timeout`` seconds."""
        with contextlib.suppress(AssertionError):
            await wait_until(lambda: self.proc.poll() is not None, timeout)
        return self.proc.poll()

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait, SIGKILL the whole process group if it hangs."""
        self.killed |= await stop_group(self.proc, timeout)
        return self.proc.wait()

    def stop_sync(self, timeout: float = STOP_TIMEOUT) -> int:
        self.killed |= stop_group_sync(self.proc, timeout)
        return self.proc.wait()

    def kill(self) -> None:
        self.killed |= kill_group(self.proc)


async def launch(
    args: Sequence[str],
    confdir: Path,
    log_dir: Path,
    started: list[ProxyProcess] | None = None,
    **kwargs: Any,
) -> ProxyProcess:
    """A proxy process that accepts connections (three tries: a free port can be taken
    between ``free_port()`` and the proxy's bind); each try is added to ``started``."""
    return await _launch(ProxyProcess, args, confdir, log_dir, started, kwargs)


Launched = TypeVar("Launched", bound=ProxyProcess)


async def _launch(
    kind: type[Launched],
    args: Sequence[str],
    confdir: Path,
    log_dir: Path,
    started: list[ProxyProcess] | None,
    kwargs: dict[str, Any],
) -> Launched:
    """``launch`` for a process class of the harness's (the proxy, ``wsproxy-web``)."""
    for _attempt in range(3):
        proc = kind(args, confdir, log_dir, **kwargs)
        if started is not None:
            started.append(proc)
        try:
            await proc.wait_ready()
        except ProxyStartError:
            if proc.port_was_taken():
                continue
            raise
        return proc
    raise ProxyStartError(f"no free port after 3 attempts\n{proc.describe()}")


def launch_sync(args: Sequence[str], confdir: Path, log_dir: Path) -> ProxyProcess:
    """``launch`` for session and module fixtures, outside an event loop."""
    for _attempt in range(3):
        proc = ProxyProcess(args, confdir, log_dir)
        try:
            proc.wait_ready_sync()
        except ProxyStartError:
            if proc.port_was_taken():
                continue
            proc.stop_sync()
            raise
        return proc
    raise ProxyStartError(f"no free port after 3 attempts\n{proc.describe()}")


class WebProcess(ProxyProcess):
    """``wsproxy-web`` (``python -m wsproxy.web``): the proxy on ``port`` and its web UI on
    ``web_port``; ``ui`` and ``token`` come from the URL line it prints on stdout. With
    ``-r FILE`` among the args only the UI listens."""

    UI_LINE = "wsproxy web UI: "

    def __init__(self, args: Sequence[str], confdir: Path, log_dir: Path, **kwargs: Any) -> None:
        self.web_port = free_port()
        self.readonly = "-r" in args or "--read" in args
        web = ["--web-port", str(self.web_port), *args]
        super().__init__(web, confdir, log_dir, module="wsproxy.web", **kwargs)
        self.ui = ""
        self.token = ""

    def stdout(self) -> str:
        return self.stdout_path.read_text("utf-8", "replace")

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        def printed() -> str:
            line = next((x for x in self.stdout().splitlines() if x.startswith(self.UI_LINE)), "")
            if not line and self.proc.poll() is not None:
                raise ProcessExited(f"exited with {self.proc.returncode}")
            return line

        try:
            line = await wait_until(printed, timeout, "the UI's URL line")
            await wait_accepting(self.web_port, self.proc, timeout, self.host)
            if not self.readonly:
                await wait_accepting(self.port, self.proc, timeout, self.host)
        except (ProcessExited, TimeoutError, AssertionError) as e:
            raise self._start_error(e, timeout) from None
        url = line.removeprefix(self.UI_LINE).split()[0]
        self.ui, _, token = url.partition("/?token=")
        self.ui = self.ui.rstrip("/")
        self.token = token

    def port_was_taken(self) -> bool:
        return self.proc.poll() is not None and "in use" in self.stderr()


async def launch_web(
    args: Sequence[str],
    confdir: Path,
    log_dir: Path,
    started: list[ProxyProcess] | None = None,
    **kwargs: Any,
) -> WebProcess:
    """A ``wsproxy-web`` process whose proxy and UI accept connections (three tries, as
    ``launch``)."""
    return await _launch(WebProcess, args, confdir, log_dir, started, kwargs)


@contextlib.asynccontextmanager
async def proxy_process(
    args: Sequence[str], confdir: Path, log_dir: Path, **kwargs: Any
) -> AsyncIterator[ProxyProcess]:
    """``launch``, then on exit stop it and fail if it ended badly (see ``problems``)."""
    started: list[ProxyProcess] = []
    try:
        yield await launch(args, confdir, log_dir, started, **kwargs)
    finally:
        problems = []
        for proc in started:
            problems += proc.problems(await proc.stop())
        assert not problems, "\n\n".join(problems)


class ProxyView:
    """A long-running proxy as one test sees it: ``stderr()`` is this test's part only."""

    def __init__(self, process: ProxyProcess) -> None:
        self.process = process
        self.host = process.host
        self.port = process.port
        self.url = process.url
        self.confdir = process.confdir
        self.offset = process.stderr_path.stat().st_size

    def stderr(self) -> str:
        with open(self.process.stderr_path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode("utf-8", "replace")

    def describe(self) -> str:
        return f"{self.process.describe()}\n--- this test's part ---\n{self.stderr()}"

    async def wait_log(self, predicate: Callable[[str], bool], timeout: float = 10) -> str:
        """This test's part of the log once ``predicate`` holds on it."""
        await self.process.wait_log(lambda _: predicate(self.stderr()), timeout)
        return self.stderr()

    async def wait_count(self, needle: str, count: int, timeout: float = 10) -> str:
        return await self.wait_log(lambda text: text.count(needle) >= count, timeout)

    async def finish(self) -> None:
        """At the end of a test: wait until the proxy logged the end of every WebSocket this
        test opened, then fail if it printed a traceback or died."""
        await self.wait_log(
            lambda text: text.count("WebSocket closed") >= text.count("WebSocket open")
        )
        text = self.stderr()
        assert "Traceback" not in text, f"the proxy printed a traceback\n{self.describe()}"
        assert self.process.returncode is None, f"the proxy died\n{self.describe()}"


Proxy = ProxyProcess | ProxyView
StartProxy = Callable[..., Awaitable[ProxyProcess]]
StartWsEcho = Callable[..., Awaitable["WsUpstream"]]
ServeProxy = Callable[..., Awaitable[ProxyServer]]


# -- the proxy in this event loop ------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_proxy(
    tmp_path: Path,
    plugins: Sequence[object] | PluginChain | None = None,
    upstream_port: int | None = None,
    *,
    capture: Capture | None = None,
    ca: CertAuthority | None = None,
    **options: Any,
) -> AsyncIterator[ProxyServer]:
    """A ``ProxyServer`` in this loop: reverse mode in front of ``ws://HOST:upstream_port``
    (regular mode when None); ``plugins`` None means no chain at all. On exit the server
    shuts down (and a capture is finished)."""
    mode = Regular() if upstream_port is None else Reverse("ws", HOST, upstream_port)
    options.setdefault("listen_host", HOST)
    options.setdefault("confdir", tmp_path / "confdir")
    options.setdefault("verbosity", -1)
    opts = Options(listen_port=0, mode=mode, **options)
    chain = plugins if isinstance(plugins, PluginChain) or plugins is None else None
    if chain is None and plugins is not None:
        chain = PluginChain(list(plugins))  # type: ignore[arg-type]
    server = ProxyServer(opts, ca, chain, capture)
    await server.start()
    try:
        yield server
    finally:
        await stop_server(server)


async def stop_server(server: ProxyServer) -> None:
    """Shut the server down; with a capture, first let open WebSockets end (2 s at most, so
    their close records are written), and finish the capture after."""
    if server.capture is None:
        await server.shutdown()
        return
    with contextlib.suppress(AssertionError):
        await wait_until(lambda: not server.sessions, 2)
    await server.shutdown()
    aclose = getattr(server.capture, "aclose", None)
    if aclose is not None:
        await aclose()


# -- upstream servers --------------------------------------------------------------------------


@dataclass
class Closed:
    """How a connection ended, as one server saw it."""

    path: str
    code: int | None
    reason: str


@dataclass
class WsUpstream:
    """What a ``websockets`` upstream saw, across its connections."""

    port: int = 0
    connections: int = 0  # TCP connections accepted
    handshakes: int = 0
    paths: list[str] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    responses: list[Any] = field(default_factory=list)  # the handshake answers it sent
    extensions: list[list[Any]] = field(default_factory=list)  # negotiated, per connection
    subprotocols: list[str | None] = field(default_factory=list)
    received: list[str | bytes] = field(default_factory=list)
    close_codes: list[tuple[int | None, str | None]] = field(default_factory=list)
    closes: asyncio.Queue[Closed] = field(default_factory=asyncio.Queue)
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # set at every close
    upper: bool = False  # answer text in upper case (a server that changed since a capture)
    # Off for tests that send and close at once: websockets blocks a send made after the
    # peer's close until the TCP connection is gone, which holds up the messages behind it.
    echo: bool = True

    tls: bool = False  # served with ``ssl=``: its URLs are wss://
    host: str = HOST  # where it listens (``::1`` for IPv6 tests)

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{host_port(self.host, self.port)}"

    @property
    def finished(self) -> int:
        """Connections whose handler has seen every message and the close."""
        return len(self.close_codes)

    async def next_close(self, timeout: float = 10) -> Closed:
        return await asyncio.wait_for(self.closes.get(), timeout)


Handler = Callable[[ServerConnection, WsUpstream], Awaitable[None]]


async def echo(ws: ServerConnection, up: WsUpstream) -> None:
    """Echoes every message; ``/bye`` closes at once with 4000 "bye"; ``/send?n=N`` sends
    one binary message of N bytes first."""
    assert ws.request is not None
    path = ws.request.path
    if path == "/bye":
        await ws.close(4000, "bye")
    elif path.startswith("/send?"):
        await ws.send(os.urandom(int(path.partition("n=")[2])))
    async for message in ws:
        up.received.append(message)
        if up.upper and isinstance(message, str):
            message = message.upper()
        if up.echo:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(message)


async def sink(ws: ServerConnection, up: WsUpstream) -> None:
    """Records every message, answers none."""
    async for message in ws:
        up.received.append(message)


@contextlib.asynccontextmanager
async def ws_upstream(
    handler: Handler = echo,
    *,
    subprotocols: list[str] | None = None,
    upper: bool = False,
    host: str = HOST,
    **kwargs: Any,
) -> AsyncIterator[WsUpstream]:
    """A ``websockets`` server running ``handler`` for every connection on ``host`` (``kwargs``
    go to ``serve``; no size limit and no keepalive pings unless given)."""
    up = WsUpstream(upper=upper, tls=kwargs.get("ssl") is not None, host=host)

    class Counting(ServerConnection):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            up.connections += 1
            super().connection_made(transport)

    def process_request(ws: ServerConnection, request: Any) -> None:
        up.handshakes += 1
        up.paths.append(request.path)
        up.requests.append(request)
        up.headers.append({k.lower(): v for k, v in request.headers.raw_items()})

    async def run(ws: ServerConnection) -> None:
        up.responses.append(ws.response)
        up.extensions.append(list(ws.protocol.extensions))
        up.subprotocols.append(ws.subprotocol)
        try:
            await handler(ws, up)
        except ConnectionClosed:
            pass  # an abnormal close (a plugin's 1008 or 1011) ends the loop with an error
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.wait_closed(), 10)
            path = ws.request.path if ws.request is not None else ""
            up.close_codes.append((ws.close_code, ws.close_reason))
            up.closes.put_nowait(Closed(path, ws.close_code, ws.close_reason or ""))
            up.closed.set()

    kwargs.setdefault("max_size", None)
    kwargs.setdefault("ping_interval", None)
    async with serve(
        run,
        host,
        0,
        process_request=process_request,
        subprotocols=subprotocols,  # type: ignore[arg-type]
        create_connection=Counting,
        **kwargs,
    ) as server:
        up.port = next(iter(server.sockets)).getsockname()[1]
        yield up


@dataclass
class AioServer:
    """An aiohttp application: WebSocket echo and plain HTTP routes (see ``aiohttp_app``)."""

    port: int = 0
    connections: int = 0
    requests: list[web.Request] = field(default_factory=list)
    closes: asyncio.Queue[Closed] = field(default_factory=asyncio.Queue)
    tls: bool = False  # served with ``ssl=``: its URLs are https:// and wss://

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{HOST}:{self.port}"

    async def next_close(self, timeout: float = 10) -> Closed:
        return await asyncio.wait_for(self.closes.get(), timeout)


def aiohttp_app(state: AioServer) -> web.Application:
    """Routes:

    * ``/ws``: WebSocket echo (compression allowed); ``/ws/bye`` closes with 4000 "bye".
    * ``/forbidden`` 403, ``/missing`` 404, each with a body and an ``X-Why`` header.
    * ``GET /hello``: "hello world"; ``POST /upload``: the body's length and SHA-256
      (streamed), and whether it came chunked; ``GET /chunked``: a chunked response.
    """

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, compress=True, autoping=True)
        await ws.prepare(request)
        if request.path == "/ws/bye":
            await ws.close(code=4000, message=b"bye")
        else:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await ws.send_str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
        state.closes.put_nowait(Closed(request.path, ws.close_code, ""))
        return ws

    async def refuse(request: web.Request) -> web.Response:
        status = 403 if request.path == "/forbidden" else 404
        return web.Response(status=status, text=f"refused: {status}", headers={"X-Why": "test"})

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello world", headers={"X-Test": "yes"})

    async def upload(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        return web.json_response(
            {
                "size": size,
                "sha256": digest.hexdigest(),
                "transfer_encoding": request.headers.get("Transfer-Encoding"),
                "content_length": request.headers.get("Content-Length"),
            }
        )

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(5):
            await resp.write(f"piece {i};".encode())
            await asyncio.sleep(0.01)  # the server's own pace: pieces apart in time
        await resp.write_eof()
        return resp

    @web.middleware
    async def record(request: web.Request, handler: Any) -> Any:
        state.requests.append(request)
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/ws/bye", ws_handler)
    app.router.add_get("/forbidden", refuse)
    app.router.add_get("/missing", refuse)
    app.router.add_get("/hello", hello)
    app.router.add_post("/upload", upload)
    app.router.add_get("/chunked", chunked)
    return app


@contextlib.asynccontextmanager
async def aiohttp_upstream(
    ssl: Any = None, app: Callable[[AioServer], web.Application] = aiohttp_app
) -> AsyncIterator[AioServer]:
    """``app`` (``aiohttp_app`` unless given) on a free port (over TLS with an ``ssl``
    context), counting its TCP connections."""
    state = AioServer(tls=ssl is not None)
    runner = web.AppRunner(app(state), handle_signals=False, access_log=None)
    await runner.setup()
    # Listen like web.TCPSite does, through a protocol factory that counts TCP connections.
    handler_factory = runner.server
    assert handler_factory is not None

    def counting_factory() -> asyncio.BaseProtocol:
        state.connections += 1
        return handler_factory()

    server = await asyncio.get_running_loop().create_server(counting_factory, HOST, 0, ssl=ssl)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await runner.cleanup()
        await server.wait_closed()


def aiohttp_ws_via(
    session: aiohttp.ClientSession, url: str, proxy_url: str, *, compress: int
) -> Any:
    """aiohttp's WebSocket to ``url`` with the proxy as its HTTP proxy (``GET ws://...``, no
    CONNECT for ws://): no size limit, no automatic pong, ``compress`` its deflate window."""
    return session.ws_connect(
        url, proxy=proxy_url, max_msg_size=0, compress=compress, autoping=False
    )


RawHandler = Callable[[RawConnection], Awaitable[None]]


@dataclass
class RawServer:
    """A bare asyncio server: ``handler`` gets every connection; counts and keeps them."""

    port: int
    server: asyncio.Server
    connections: list[RawConnection] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    errors: list[BaseException] = field(default_factory=list)
    finished: asyncio.Queue[RawConnection] = field(default_factory=asyncio.Queue)

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}"


@contextlib.asynccontextmanager
async def raw_servers() -> AsyncIterator[Callable[[RawHandler], Awaitable[RawServer]]]:
    """``await start(handler)``: a server whose ``handler`` writes whatever bytes it likes.

    Exceptions in handlers are raised on exit (except connection resets, which are what these
    peers are about); every handler still running is cancelled.
    """
    servers: list[RawServer] = []

    async def start(handler: RawHandler) -> RawServer:
        state: RawServer

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = RawConnection(reader, writer)
            state.connections.append(conn)
            task = asyncio.current_task()
            assert task is not None
            state.tasks.add(task)
            try:
                await handler(conn)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            except asyncio.CancelledError:
                raise
            except BaseException as error:
                state.errors.append(error)
            finally:
                state.tasks.discard(task)
                await conn.close()
                state.finished.put_nowait(conn)

        server = await asyncio.start_server(on_connect, HOST, 0)
        state = RawServer(server.sockets[0].getsockname()[1], server)
        servers.append(state)
        return state

    try:
        yield start
    finally:
        for state in servers:
            state.server.close()
            for task in list(state.tasks):
                task.cancel()
            if state.tasks:
                await asyncio.wait(list(state.tasks), timeout=5)
            for conn in state.connections:
                await conn.close()
            await state.server.wait_closed()
        errors = [e for s in servers for e in s.errors]
        if errors:
            raise errors[0]


# What an ``http_handler`` server answers: (the request, how many came before it on this
# connection) -> the whole response in bytes, or None to close the connection unanswered.
Answer = Callable[[Head, int], bytes | None]


def http_handler(answer: Answer, *, close_after: bool = False) -> RawHandler:
    """A ``RawServer`` handler serving requests on each connection as they come, for as long
    as ``answer`` gives a response and the peer keeps the connection; every request is kept
    in ``conn.extra["requests"]``. A response with ``Connection: close`` ends the connection,
    as every response does with ``close_after`` (a body read until close, a server that
    drops idle connections at once)."""

    async def handle(conn: RawConnection) -> None:
        requests: list[Head] = []
        conn.extra["requests"] = requests
        while True:
            try:
                request = await read_request(conn.reader)
            except asyncio.IncompleteReadError:
                return  # the proxy closed the connection
            requests.append(request)
            response = answer(request, len(requests) - 1)
            if response is None:
                return
            conn.writer.write(response)
            await conn.writer.drain()
            head_lines = response.split(b"\r\n\r\n", 1)[0].lower().split(b"\r\n")
            if close_after or b"connection: close" in head_lines:
                return

    return handle


def requests_seen(server: RawServer) -> list[list[Head]]:
    """The requests an ``http_handler`` server got, per connection in order of acceptance."""
    seen: list[list[Head]] = []
    for conn in server.connections:
        requests = conn.extra.get("requests", [])
        assert isinstance(requests, list)
        seen.append(list(requests))
    return seen


RawClient = Callable[[int], Awaitable[RawConnection]]
RawServerFactory = Callable[[RawHandler], Awaitable[RawServer]]
