"""``--workers N``: supervising the worker processes that serve one set of ports together.

The supervisor starts N children, ``python -m wsproxy`` with the same flags but ``--workers``,
each told who it is by ``WSPROXY_WORKER="i/N"``. A child says it listens by writing one line
on a pipe of its own (``WSPROXY_READY_FD``): a plugin's print cannot fake it, and a child
that dies first closes it. A second pipe (``WSPROXY_LIFELINE_FD``) goes the other way and is
never written: when the supervisor dies, even by SIGKILL, its end closes and the children shut
down rather than hold the ports forever.

The children's stdout and stderr come through the supervisor line by line, so two workers'
lines never mix within a line. During the start they are held back: a start that fails shows
only the failed worker's lines (its one error line, the others stopped without a word).

Once started, a worker that dies (a crash, SIGKILL, the OOM killer) is started again, its
exit status logged; one that fails to start again three times in a row ends the run. A
worker that exits with status 0 was told to stop (SIGINT or SIGTERM reaches the whole process
group on Ctrl-C or from a service manager): the supervisor then stops them all, as on its own
SIGINT/SIGTERM, which it forwards as SIGTERM (each worker closes its WebSockets with 1001).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

__all__ = [
    "WorkerIdentity",
    "ignore_late_signals",
    "report_ready",
    "supervise",
    "watch_supervisor",
    "without_workers_flag",
    "worker_identity",
    "worker_restarts",
    "worker_tag",
]

log = logging.getLogger("wsproxy")

WORKER_ENV = "WSPROXY_WORKER"  # "i/N", 1-based
RESTART_ENV = "WSPROXY_WORKER_RESTART"  # how many times this worker was started again
READY_FD_ENV = "WSPROXY_READY_FD"  # the child writes READY here once it listens
LIFELINE_FD_ENV = "WSPROXY_LIFELINE_FD"  # EOF here: the supervisor is gone
READY = b"ready\n"

START_ATTEMPTS = 3  # failed starts in a row of one worker before the run gives up
HELD_LINES = 200  # a starting worker's lines kept back at most (its last ones)
LINE_LIMIT = 64 * 1024  # a longer line is passed on in pieces of this size


class WorkerIdentity(NamedTuple):
    # These names shadow tuple's methods index() and count(): the fields are what is read.
    index: int  # type: ignore[assignment]  # 1..count
    count: int  # type: ignore[assignment]


def worker_identity() -> WorkerIdentity | None:
    """Who this process is among the workers (None: not a worker)."""
    text = os.environ.get(WORKER_ENV)
    if not text:
        return None
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        return None
    return WorkerIdentity(int(index), int(count))


def worker_restarts() -> int:
    """How many times this worker was started again after dying (0: its first life)."""
    text = os.environ.get(RESTART_ENV, "0")
    return int(text) if text.isdigit() else 0


def worker_tag() -> str:
    """ "w2" for worker 2, "w2r1" once it was started again; "" outside workers. Connection
    ids and capture names carry it, so no two lives of the run share one."""
    identity = worker_identity()
    if identity is None:
        return ""
    restarts = worker_restarts()
    return f"w{identity.index}" + (f"r{restarts}" if restarts else "")


def report_ready() -> None:
    """In a worker: tell the supervisor that every listener accepts now."""
    fd = _inherited_fd(READY_FD_ENV)
    if fd is None:
        return
    try:
        os.write(fd, READY)
    finally:
        os.close(fd)
        os.environ.pop(READY_FD_ENV, None)


def watch_supervisor(stop: asyncio.Event) -> None:
    """In a worker: set ``stop`` when the supervisor's end of the lifeline closes."""
    fd = _inherited_fd(LIFELINE_FD_ENV)
    if fd is None:
        return
    os.environ.pop(LIFELINE_FD_ENV, None)
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            os.close(fd)
            log.warning("the supervisor is gone: shutting down")
            stop.set()

    loop.add_reader(fd, readable)


def ignore_late_signals() -> None:
    """SIGINT and SIGTERM ignored from now on, for a process whose shutdown is done.

    A worker gets two SIGTERMs when the whole process group is signalled (the supervisor
    passes one on too). One that lands while asyncio closes its loop, between closing its
    wakeup pipe and restoring the handlers, makes Python print an "Exception ignored"
    traceback; with nothing left to stop, there is nothing to lose by ignoring it."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)


def _inherited_fd(name: str) -> int | None:
    text = os.environ.get(name, "")
    return int(text) if text.isdigit() else None


def without_workers_flag(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--workers N`` / ``--workers=N`` (and argparse's abbreviations of it,
    ``--work N``): a worker must not supervise workers of its own."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name, eq, _ = arg.partition("=")
        if len(name) >= 4 and "--workers".startswith(name):  # "--w" could be --web-port
            skip = not eq
            continue
        out.append(arg)
    return out


def exit_text(status: int) -> str:
    """A child's exit status as a log line says it."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"was killed by {name}"
    return f"exited with status {status}"


class _Worker:
    """One child process and what the supervisor knows of it."""

    def __init__(self, index: int, restarts: int) -> None:
        self.index = index
        self.restarts = restarts
        self.process: asyncio.subprocess.Process | None = None
        self.ready = asyncio.get_running_loop().create_future()  # True: listening
        self.held: list[tuple[bool, bytes]] | None = []  # (stderr?, line) until shown
        self.relays: list[asyncio.Task[None]] = []
        self.lifeline: int | None = None

    def show(self) -> None:
        """Print the lines held back, and pass on the next ones as they come."""
        held, self.held = self.held or [], None
        for to_stderr, line in held:
            _write(to_stderr, line)

    def last_lines(self) -> list[tuple[bool, bytes]]:
        return list(self.held or [])

    def take(self, to_stderr: bool, line: bytes) -> None:
        if self.held is None:
            _write(to_stderr, line)
        else:
            self.held.append((to_stderr, line))
            del self.held[:-HELD_LINES]


def _write(to_stderr: bool, line: bytes) -> None:
    stream = sys.stderr if to_stderr else sys.stdout
    with contextlib.suppress(OSError, ValueError, AttributeError):
        stream.flush()
        stream.buffer.write(line if line.endswith(b"\n") else line + b"\n")
        stream.buffer.flush()


class _Supervisor:
    def __init__(
        self,
        argv: Sequence[str],
        count: int,
        module: str,
        env: Mapping[str, str] | None,
        stop: asyncio.Event,
        started: Callable[[], object] | None,
        grace: float,
    ) -> None:
        self.argv = without_workers_flag(argv)
        self.count = count
        self.module = module
        self.env = dict(env or {})
        self.stop = stop
        self.started = started
        self.grace = grace
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        self.failure: int | None = None  # the exit status of a run that gave up
        self.changed = asyncio.Event()  # a worker ended (or the stop came)

    async def run(self) -> int:
        try:
            for index in range(1, self.count + 1):
                await self._start(index, 0)
            status = await self._wait_started()
            if status is not None:
                return status
            for worker in self.workers.values():
                worker.show()
            if self.started is not None:
                self.started()
            return await self._watch()
        finally:
            await self._stop_all()

    async def _start(self, index: int, restarts: int) -> _Worker:
        worker = _Worker(index, restarts)
        self.workers[index] = worker
        ready_read, ready_write = os.pipe()
        life_read, life_write = os.pipe()
        env = {
            **os.environ,
            **self.env,
            WORKER_ENV: f"{index}/{self.count}",
            RESTART_ENV: str(restarts),
            READY_FD_ENV: str(ready_write),
            LIFELINE_FD_ENV: str(life_read),
        }
        try:
            worker.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.module,
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                pass_fds=(ready_write, life_read),
                limit=LINE_LIMIT,
            )
        except BaseException:
            os.close(ready_read)
            os.close(life_write)
            raise
        finally:
            os.close(ready_write)
            os.close(life_read)
        os.set_inheritable(life_write, False)
        worker.lifeline = life_write  # kept open: closes when this process ends
        process = worker.process
        assert process.stdout is not None and process.stderr is not None
        worker.relays = [
            asyncio.create_task(self._relay(worker, process.stdout, to_stderr=False)),
            asyncio.create_task(self._relay(worker, process.stderr, to_stderr=True)),
            asyncio.create_task(self._read_ready(worker, ready_read)),
        ]
        watcher = asyncio.create_task(self._wait_exit(worker))
        worker.relays.append(watcher)
        return worker

    async def _relay(self, worker: _Worker, stream: asyncio.StreamReader, to_stderr: bool) -> None:
        while True:
            try:
                line = await stream.readuntil(b"\n")
            except asyncio.IncompleteReadError as end:
                if end.partial:
                    worker.take(to_stderr, end.partial)
                return
            except asyncio.LimitOverrunError as long:
                line = await stream.readexactly(long.consumed)
            worker.take(to_stderr, line)

    async def _read_ready(self, worker: _Worker, fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
        )
        try:
            line = await reader.readline()
        finally:
            transport.close()
        if not worker.ready.done():
            worker.ready.set_result(line == READY)
        self.changed.set()

    async def _wait_exit(self, worker: _Worker) -> None:
        assert worker.process is not None
        await worker.process.wait()
        # Its last lines (the error line of a failed start) before anyone reads them.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*worker.relays[:2]), 2)
        if not worker.ready.done():
            worker.ready.set_result(False)
        self.changed.set()

    async def _wait_started(self) -> int | None:
        """None once every worker listens; else the status to end with (a failed start, or
        a stop during the start)."""
        stopped = asyncio.create_task(self.stop.wait())
        try:
            while True:
                if self.stop.is_set():  # first: Ctrl-C reaches the workers too, and they end
                    return 0
                for worker in self.workers.values():
                    if worker.ready.done() and not worker.ready.result():
                        return await self._start_failed(worker)
                if all(w.ready.done() for w in self.workers.values()):
                    return None
                self.changed.clear()
                waiter = asyncio.create_task(self.changed.wait())
                await asyncio.wait({waiter, stopped}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
        finally:
            stopped.cancel()

    async def _start_failed(self, worker: _Worker) -> int:
        """A worker that did not come up: its lines shown, the others stopped."""
        assert worker.process is not None
        status = await worker.process.wait()
        if status == 0:  # told to stop while starting (Ctrl-C)
            return 0
        lines = worker.last_lines()
        for to_stderr, line in lines:
            _write(to_stderr, line)
        if not any(to_stderr for to_stderr, _ in lines):
            log.error("worker %d %s before listening", worker.index, exit_text(status))
        return status if status > 0 else 1

    async def _watch(self) -> int:
        """Until the stop: restart the workers that die; the run's exit status."""
        stopped = asyncio.create_task(self.stop.wait())
        try:
            while not self.stop.is_set():
                for worker in list(self.workers.values()):
                    status = worker.process.returncode if worker.process else None
                    if status is None or not worker.relays[-1].done():
                        continue
                    if status == 0:
                        log.warning("worker %d stopped (status 0): stopping all", worker.index)
                        return 0
                    failure = await self._restart(worker, status)
                    if failure is not None:
                        return failure
                self.changed.clear()
                if any(w.relays[-1].done() for w in self.workers.values()):
                    continue
                waiter = asyncio.create_task(self.changed.wait())
                await asyncio.wait({waiter, stopped}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            return 0
        finally:
            stopped.cancel()

    async def _restart(self, dead: _Worker, status: int) -> int | None:
        """Start ``dead`` again (None), or the status to end with after it failed to start
        ``START_ATTEMPTS`` times in a row."""
        log.warning("worker %d %s: starting it again", dead.index, exit_text(status))
        restarts = dead.restarts
        self._close(dead)
        for attempt in range(1, START_ATTEMPTS + 1):
            restarts += 1
            worker = await self._start(dead.index, restarts)
            stopped = asyncio.create_task(self.stop.wait())
            await asyncio.wait({worker.ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if self.stop.is_set():
                return None
            if worker.ready.result():
                worker.show()
                log.warning("worker %d listens again", dead.index)
                return None
            assert worker.process is not None
            code = await worker.process.wait()
            for to_stderr, line in worker.last_lines():
                _write(to_stderr, line)
            self._close(worker)
            if attempt < START_ATTEMPTS:
                await asyncio.sleep(0.2 * 2**attempt)  # give a passing cause time to pass
            else:
                log.error(
                    "worker %d failed to start %d times in a row (last: %s): giving up",
                    dead.index,
                    START_ATTEMPTS,
                    exit_text(code).removeprefix("was "),
                )
        return 1

    def _close(self, worker: _Worker) -> None:
        if worker.lifeline is not None:
            os.close(worker.lifeline)
            worker.lifeline = None

    async def _stop_all(self) -> None:
        """SIGTERM to every worker still running; SIGKILL after ``grace`` seconds."""
        self.stopping = True
        running = [w for w in self.workers.values() if w.process and w.process.returncode is None]
        for worker in running:
            assert worker.process is not None
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)
        waits = [asyncio.create_task(w.process.wait()) for w in running if w.process]
        if waits:
            _, late = await asyncio.wait(waits, timeout=self.grace)
            if late:
                for worker in running:
                    if worker.process and worker.process.returncode is None:
                        log.warning("worker %d ignored SIGTERM: killing it", worker.index)
                        with contextlib.suppress(ProcessLookupError):
                            worker.process.kill()
                await asyncio.wait(waits)
        for worker in self.workers.values():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*worker.relays, return_exceptions=True), 2)
            for task in worker.relays:
                task.cancel()
            self._close(worker)


async def supervise(
    argv: Sequence[str],
    count: int,
    *,
    module: str = "wsproxy",
    env: Mapping[str, str] | None = None,
    stop: asyncio.Event | None = None,
    started: Callable[[], object] | None = None,
    grace: float = 30.0,
) -> int:
    """Run ``count`` workers, ``python -m MODULE ARGV`` (``--workers`` taken out), until
    ``stop`` is set (by default: SIGINT or SIGTERM); ``started()`` runs once all of them
    listen. Returns the exit status: 0 after a stop, a failed start's own status, 1 when a
    worker kept failing to start again."""
    own_signals = stop is None
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    supervisor = _Supervisor(argv, count, module, env, stop, started, grace)
    try:
        return await supervisor.run()
    finally:
        if own_signals:
            ignore_late_signals()
