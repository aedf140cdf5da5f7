"""A listening server that accepts connections itself, for loops whose own accept hides
running out of file descriptors (uvloop).

uvloop accepts in libuv, whose answer to EMFILE is to shed load: it closes a spare
descriptor, accepts every waiting connection and closes it at once, and tells nobody.
Clients are cut off instead of waiting in the backlog, and no line says why. With this
server the proxy calls ``accept()`` itself (``loop.add_reader`` on the listening socket,
``loop.connect_accepted_socket`` for each connection), so a failure goes to the same
``AcceptWatch`` as asyncio's (``wsproxy.proxy.accept``): one warning per burst, a retry after
asyncio's one second, the clients waiting in the backlog meanwhile. Binding follows
``loop.create_server``: every address ``getaddrinfo`` gives, SO_REUSEADDR, IPv6 sockets
IPv6-only, asyncio's backlog of 100.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

from wsproxy.proxy.accept import ACCEPT_OUT_OF_RESOURCE, AcceptWatch

log = logging.getLogger("wsproxy")

BACKLOG = 100  # asyncio's default for create_server
RETRY_DELAY = 1.0  # asyncio.constants.ACCEPT_RETRY_DELAY
OUT_OF_RESOURCE = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Acceptor:
    """What ``Listener`` uses of an ``asyncio.Server``: ``sockets``, ``start_serving`` and
    ``close``, with the accepting done here."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[], asyncio.Protocol],
        sockets: list[socket.socket],
        watch: AcceptWatch,
    ) -> None:
        self._loop = loop
        self._factory = factory
        self.sockets = sockets
        self._watch = watch
        self._serving = False
        self._retries: list[asyncio.TimerHandle] = []
        self._starting: set[asyncio.Task[object]] = set()

    @classmethod
    async def bind(
        cls,
        factory: Callable[[], asyncio.Protocol],
        host: str,
        port: int,
        watch: AcceptWatch,
        *,
        reuse_port: bool = False,
    ) -> Acceptor:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        sockets: list[socket.socket] = []
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:  # the workers of --workers N share the port
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind(address)
                except OSError as error:  # asyncio's wording, with the address
                    raise OSError(
                        error.errno,
                        f"error while attempting to bind on address {address!r}: "
                        f"{(error.strerror or str(error)).lower()}",
                    ) from None
                sock.listen(BACKLOG)
                sock.setblocking(False)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return cls(loop, factory, sockets, watch)

    async def start_serving(self) -> None:
        if not self._serving:
            self._serving = True
            for sock in self.sockets:
                self._loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        """Stop accepting and close the listening sockets (accepted connections go on)."""
        if self._serving:
            self._serving = False
            for sock in self.sockets:
                self._loop.remove_reader(sock.fileno())
        for retry in self._retries:
            retry.cancel()
        self._retries.clear()
        for sock in self.sockets:
            sock.close()

    def _accept(self, sock: socket.socket) -> None:
        """One connection per wake-up, as nginx without ``multi_accept``: the loop watches
        the listening socket level-triggered, so the next one waiting wakes it again at its
        next turn. Accepting on until ``accept`` fails (asyncio's way) costs every wake-up
        that finds one connection (the usual case) a second system call and an exception."""
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as error:
            if error.errno not in OUT_OF_RESOURCE:
                raise
            self._out_of_resource(sock, error)
            return
        conn.setblocking(False)
        task = self._loop.create_task(self._connect(conn))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError as error:  # the client left before its transport was made
            log.debug("accepted connection lost before it started: %s", error)
            conn.close()

    def _out_of_resource(self, sock: socket.socket, error: OSError) -> None:
        """As asyncio: tell the exception handler (``AcceptWatch``), stop reading the
        listening socket and try again in a second."""
        self._watch.handle(
            self._loop,
            {"message": ACCEPT_OUT_OF_RESOURCE, "exception": error, "socket": sock},
        )
        self._loop.remove_reader(sock.fileno())

        def retry() -> None:
            self._retries.remove(handle)
            if self._serving:
                self._loop.add_reader(sock.fileno(), self._accept, sock)

        handle = self._loop.call_later(RETRY_DELAY, retry)
        self._retries.append(handle)


async def listen(
    factory: Callable[[], asyncio.Protocol],
    host: str | None,
    port: int,
    watch: AcceptWatch,
    *,
    reuse_port: bool = False,
) -> asyncio.Server | Acceptor:
    """Listening sockets for ``factory``, bound and not yet serving, whose accept failures
    reach ``watch`` on every loop: asyncio's own server on asyncio's loop (it reports them),
    an ``Acceptor`` on the others (uvloop would drop clients silently at EMFILE)."""
    loop = asyncio.get_running_loop()
    watch.install(loop)
    watched = watch.watching(factory)
    if isinstance(loop, asyncio.BaseEventLoop):
        return await loop.create_server(
            watched, host or None, port, start_serving=False, reuse_port=reuse_port or None
        )
    return await Acceptor.bind(watched, host or "", port, watch, reuse_port=reuse_port)
