"""The UI process of ``wsproxy-web --workers N``: the workers' traffic into ``LiveState``, and
the UI's actions back to the worker that holds the connection.

``RemoteWorkers`` listens on a Unix socket in a fresh private directory (0700, the socket
0600, both removed at exit): only this user's processes can connect, and the supervisor
tells its workers where (``WSPROXY_WEB_BRIDGE``). Each worker says hello with its index and
pid, then streams what its proxy sees (``wsproxy.web.worker``). A connection's id is the
worker's (``w2-c7``; prefixed with ``w2-`` should a worker's ids not say so already), and its
``worker`` is shown. ``RemoteFlow`` stands in for the flow on the UI's side: send, close and
abort go to the worker as commands. ``RemoteBreakpoints`` is the UI's pause engine: one
rule list, given to every worker (also to one that connects later); the pauses of all of
them, ids prefixed with their worker's.

A worker that goes away (killed, crashed, restarted by the supervisor) leaves its connections
listed as closed with why, and its pauses end as ``gone``. Reading is bounded: at most one
frame of ``sansio.bridge.MAX_FRAME`` plus one read buffered per worker; and the page's own
limits are ``LiveState``'s.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsproxy.sansio.bridge import BridgeReader, encode
from wsproxy.web.breakpoints import Breakpoints
from wsproxy.web.live import LiveState
from wsproxy.web.livemodel import LiveConn
from wsproxy.web.rules import handshake_action, message_action

log = logging.getLogger("wsproxy")

REPLY_TIMEOUT = 5.0  # seconds a send waits for its worker to say whether it went out
HELLO_TIMEOUT = 5.0  # seconds a new bridge connection has to say which worker it is


@dataclass(slots=True)
class _Piece:
    """A frame record as it came over the bridge (``live.Piece``)."""

    opcode: int
    message_opcode: int
    fin: bool
    length: int
    payload: bytes
    verdict: str
    original: bytes | None
    offset: int
    more: bool


@dataclass(eq=False)
class WorkerLink:
    """One worker's bridge connection, as the UI process sees it."""

    index: int
    pid: int
    writer: asyncio.StreamWriter
    tag: str  # "w2", or "w2r1" once restarted: in its connection and pause ids
    conns: set[str] = field(default_factory=set)  # the UI's ids of its open connections
    replies: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    gone: bool = False
    dropped: int = 0

    @property
    def prefix(self) -> str:
        return f"{self.tag}-"

    def ui_id(self, conn_id: str) -> str:
        """The UI's id of a connection: the worker's own when it names the worker."""
        if re.match(rf"w{self.index}(r[0-9]+)?-", conn_id):
            return conn_id
        return self.prefix + conn_id

    def send(self, item: dict[str, Any]) -> None:
        if not self.gone and not self.writer.is_closing():
            self.writer.write(encode(item))


class RemoteFlow:
    """What ``LiveConn.flow`` holds for a connection of a worker: the flow's actions, sent."""

    def __init__(self, workers: RemoteWorkers, link: WorkerLink, conn_id: str) -> None:
        self._workers = workers
        self.link = link
        self.conn_id = conn_id  # the worker's own id of it

    async def inject(self, content: bytes | str, *, to_client: bool) -> bool:
        item: dict[str, Any] = {"type": "inject", "conn": self.conn_id, "to_client": to_client}
        item["text" if isinstance(content, str) else "payload"] = content
        answer = await self._workers.ask(self.link, item)
        return bool(answer.get("ok"))

    def close(self, code: int = 1000, reason: str = "", *, side: str | None = None) -> None:
        self.link.send(
            {"type": "close", "conn": self.conn_id, "code": code, "reason": reason, "side": side}
        )

    def abort(self) -> None:
        self.link.send({"type": "abort", "conn": self.conn_id})


class RemoteBreakpoints:
    """The UI's pause engine (``server.PauseEngine``) over every worker's own."""

    def __init__(self, workers: RemoteWorkers) -> None:
        self.workers = workers
        self.on_event: Any = None
        self._book = Breakpoints()  # checks and keeps the rule list (and numbers new rules)
        self._book.on_event = self._emit
        self._pauses: dict[str, tuple[WorkerLink, str, dict[str, Any]]] = {}
        workers.breakpoints = self

    def set_rules(self, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        shaped = self._book.set_rules(rules)  # FilterError, ValueError: nothing changes
        for link in self.workers.links.values():
            link.send({"type": "rules", "rules": shaped})
        return shaped

    def rules(self) -> list[dict[str, Any]]:
        return self._book.rules()

    def pauses(self) -> list[dict[str, Any]]:
        return [shape for _, _, shape in self._pauses.values()]

    def resolve(self, pause_id: str, action: dict[str, Any]) -> None:
        held = self._pauses.get(pause_id)
        if held is None:
            raise KeyError(pause_id)
        link, own_id, shape = held
        if shape["on"] == "handshake":
            handshake_action(action)  # ValueError, as the worker's engine would say
        else:
            message_action(action, text_message=shape["text"] is not None)
        del self._pauses[pause_id]
        link.send({"type": "resolve", "pause": own_id, "action": action})

    # -- from the workers -------------------------------------------------------------------

    def paused(self, link: WorkerLink, shape: dict[str, Any], conn: LiveConn | None) -> None:
        shape = copy.copy(shape)
        own_id = str(shape["id"])
        shape["id"] = link.prefix + own_id
        shape["conn"] = link.ui_id(str(shape["conn"]))
        if shape.get("msg") is not None and conn is not None:
            # The number it gets in the UI's list once relayed (the worker cannot know it).
            shape["msg"] = {**shape["msg"], "seq": conn.next_seq}
        self._pauses[shape["id"]] = (link, own_id, shape)
        self._emit({"type": "pause", "pause": shape})

    def resumed(self, link: WorkerLink, own_id: str, action: str) -> None:
        pause_id = link.prefix + own_id
        self._pauses.pop(pause_id, None)
        self._emit({"type": "resume", "pause": pause_id, "action": action})

    def worker_gone(self, link: WorkerLink) -> None:
        for pause_id, (held, _, _) in list(self._pauses.items()):
            if held is link:
                del self._pauses[pause_id]
                self._emit({"type": "resume", "pause": pause_id, "action": "gone"})

    def _emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)


class RemoteWorkers:
    """The bridge's listening end in the UI process, and every worker connected to it."""

    def __init__(self, live: LiveState) -> None:
        self.live = live
        self.links: dict[int, WorkerLink] = {}
        self._pids: dict[int, int] = {}  # each worker's last pid: a new one is a restart
        self.breakpoints: RemoteBreakpoints | None = None
        self.path: Path | None = None
        self._dir: str | None = None
        self._server: asyncio.AbstractServer | None = None
        self._next_ask = 0
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self) -> Path:
        self._dir = tempfile.mkdtemp(prefix="wsproxy-web-")  # 0700, this user's alone
        path = Path(self._dir) / "bridge.sock"
        self._server = await asyncio.start_unix_server(self._accept, path)
        os.chmod(path, 0o600)
        self.path = path
        return path

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._handlers.values()):
            writer.close()  # its reader sees the end: the handler returns
        if self._handlers:
            _, pending = await asyncio.wait(list(self._handlers), timeout=2)
            for task in pending:
                task.cancel()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def ask(self, link: WorkerLink, item: dict[str, Any]) -> dict[str, Any]:
        """A command whose answer matters (a send): the worker's reply, or not ok."""
        if link.gone:
            return {"ok": False, "error": f"worker {link.index} is gone"}
        self._next_ask += 1
        item["id"] = self._next_ask
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        link.replies[self._next_ask] = reply
        link.send(item)
        try:
            return await asyncio.wait_for(reply, REPLY_TIMEOUT)
        except TimeoutError:
            return {"ok": False, "error": f"worker {link.index} did not answer"}
        finally:
            link.replies.pop(item["id"], None)

    # -- one worker's connection ------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        link: WorkerLink | None = None
        frames = BridgeReader()
        try:
            while True:
                read = reader.read(256 * 1024)
                data = await (read if link is not None else asyncio.wait_for(read, HELLO_TIMEOUT))
                if not data:
                    return
                frames.feed(data)
                for item in frames.items():
                    if link is None:
                        link = self._connected(item, writer)
                    else:
                        self._apply(link, item)
        except Exception as error:  # a bad or broken stream, or a bug: one line, never more
            what = "a worker" if link is None else f"worker {link.index}"
            log.warning("web UI: the bridge of %s dropped: %s", what, error or type(error).__name__)
        except asyncio.CancelledError:
            pass  # stopping, and it did not see its end in time: it ends here, quietly
        finally:
            self._handlers.pop(task, None)
            writer.close()
            if link is not None:
                self._disconnected(link)

    def _connected(self, hello: dict[str, Any], writer: asyncio.StreamWriter) -> WorkerLink:
        if hello.get("type") != "hello":
            raise ValueError(f"it began with {hello.get('type')!r}, not hello")
        index, pid = int(hello["worker"]), int(hello["pid"])
        tag = str(hello.get("tag") or f"w{index}")
        old = self.links.get(index)
        link = WorkerLink(index, pid, writer, tag)
        self.links[index] = link
        if old is not None:
            self._disconnected(old)
        before = self._pids.get(index)
        self._pids[index] = pid
        again = "restarted, " if before is not None and before != pid else ""
        log.log(
            logging.WARNING if again else logging.INFO,
            "web UI: worker %d/%s %sconnected (pid %d)",
            index,
            hello.get("count"),
            again,
            pid,
        )
        if self.breakpoints is not None and self.breakpoints.rules():
            link.send({"type": "rules", "rules": self.breakpoints.rules()})
        return link

    def _disconnected(self, link: WorkerLink) -> None:
        if link.gone:
            return
        link.gone = True
        if self.links.get(link.index) is link:
            del self.links[link.index]
            log.log(
                # Nothing open: the supervisor's own line says enough (a stop, a crash).
                logging.WARNING if link.conns else logging.DEBUG,
                "web UI: worker %d (pid %d) is gone: its %d open connection(s) are shown closed",
                link.index,
                link.pid,
                len(link.conns),
            )
        why = f"worker {link.index} (pid {link.pid}) went away"
        now = time.time()
        for conn_id in list(link.conns):
            conn = self.live.conns.get(conn_id)
            if conn is not None and conn.state != "closed":
                conn.flow = None
                record = {"type": "close", "conn": conn_id, "ts": now, "closed_by": None}
                self.live.closed(conn, {**record, "error": why})
        link.conns.clear()
        for reply in link.replies.values():
            if not reply.done():
                reply.set_result({"ok": False, "error": why})
        if self.breakpoints is not None:
            self.breakpoints.worker_gone(link)

    # -- the items of a worker --------------------------------------------------------------

    def _apply(self, link: WorkerLink, item: dict[str, Any]) -> None:
        kind = item.get("type")
        live = self.live
        if kind == "frame":
            conn = live.conns.get(link.ui_id(str(item["conn"])))
            if conn is not None:
                piece = _Piece(
                    int(item["opcode"]),
                    int(item["message_opcode"]),
                    bool(item["fin"]),
                    int(item["length"]),
                    item["payload"],
                    str(item["verdict"]),
                    item.get("original"),
                    int(item["offset"]),
                    bool(item["more"]),
                )
                live.take_piece(
                    conn, bool(item["from_client"]), piece, float(item["ts"]), int(item["size"])
                )
        elif kind in ("connecting", "handshake"):
            own_id = str(item["conn"])
            record = {**item, "type": "handshake", "conn": link.ui_id(own_id)}
            if kind == "connecting":
                conn = live.take_connecting(record)
            else:
                conn = live.take_handshake(record)
            conn.worker = link.index
            conn.flow = RemoteFlow(self, link, own_id)  # type: ignore[assignment]
            link.conns.add(conn.id)
        elif kind == "failed":
            conn_id = link.ui_id(str(item["conn"]))
            link.conns.discard(conn_id)
            live.take_failed(
                conn_id,
                item["status"],
                str(item["error"]),
                item["response_headers"],
                float(item["ts"]),
            )
        elif kind == "close":
            conn_id = link.ui_id(str(item["conn"]))
            link.conns.discard(conn_id)
            conn = live.conns.get(conn_id)
            if conn is not None:
                conn.flow = None
                live.closed(conn, {**item, "conn": conn_id})
        elif kind == "http":
            conn = live.take_http({**item, "conn": link.ui_id(str(item.get("conn")))})
            conn.worker = link.index
        elif kind == "pause" and self.breakpoints is not None:
            shape = item["pause"]
            conn = live.conns.get(link.ui_id(str(shape["conn"])))
            self.breakpoints.paused(link, shape, conn)
        elif kind == "resume" and self.breakpoints is not None:
            self.breakpoints.resumed(link, str(item["pause"]), str(item["action"]))
        elif kind == "reply":
            reply = link.replies.get(int(item["id"]))
            if reply is not None and not reply.done():
                reply.set_result(item)
        elif kind == "dropped":
            link.dropped += int(item["count"])
            log.info(
                "web UI: worker %d dropped %d record(s): the UI was behind (%d in all)",
                link.index,
                int(item["count"]),
                link.dropped,
            )
            live.push({"type": "dropped_events", "count": int(item["count"])})
