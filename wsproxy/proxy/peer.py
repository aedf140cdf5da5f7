"""One TCP connection of the proxy, client or upstream, as an asyncio protocol.

A peer has two modes. During the HTTP phase the handshake code awaits ``read()``; once a
WebSocket is established, ``on_data`` is set and every chunk goes straight to the relay from
``data_received``, with no task switch per frame (this is the hot path).

TLS is done over memory BIOs (``wsproxy.tls.memory``) rather than with ``loop.start_tls``:
after a CONNECT the proxy must look at the first bytes to tell a TLS ClientHello from plain
HTTP, and bytes it has read cannot be handed back to asyncio's own TLS layer.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Callable, Sequence
from typing import cast

from wsproxy.tls.memory import TLSLayer

# During the HTTP phase a peer stops reading once this much is buffered and not yet taken:
# what a client sends ahead (after its upgrade request, say) waits in the kernel's socket
# buffers and slows the sender through TCP flow control instead of growing the proxy.
BUFFER_LIMIT = 512 * 1024


def _gathers(transport: asyncio.BaseTransport) -> bool:
    """Whether the transport's ``writelines`` writes its pieces in one call, uncopied."""
    return sys.version_info >= (3, 12) or type(transport).__module__.startswith("uvloop")


class Peer(asyncio.Protocol):
    """A TCP connection with a read buffer for the HTTP phase and callbacks for the relay."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.tls: TLSLayer | None = None
        self.address: tuple[str, int] = ("", 0)
        self._buffer = bytearray()
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._loop = loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = loop.create_future()
        # Done at the first sign the peer is gone: EOF, a lost connection or a TLS failure.
        self.ended: asyncio.Future[None] = loop.create_future()
        self.error: BaseException | None = None
        self.write_paused = False
        self.reading_paused = False  # by the relay (the other side cannot take more)
        self._buffer_full = False  # by ``BUFFER_LIMIT`` (nobody took the buffer yet)
        self.bytes_out = 0  # plaintext bytes written so far: tells whether an answer began
        self._request_mark = 0
        # Relay mode callbacks.
        self.on_data: Callable[[bytes], None] | None = None
        self.on_eof: Callable[[str], None] | None = None
        self.on_pause_writing: Callable[[], None] | None = None
        self.on_resume_writing: Callable[[], None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport: asyncio's subclass asyncio.Transport, uvloop's (Cython classes)
        # only implement its methods, so an isinstance check would refuse every uvloop one.
        self.transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        if peername:
            self.address = (str(peername[0]), int(peername[1]))

    def data_received(self, data: bytes) -> None:
        if self.tls is not None:
            was_done = self.tls.handshake_done
            try:
                data = self.tls.feed(data)
            except ssl.SSLError as error:
                self._fail(error)
                return
            out = self.tls.pending()
            if out and self.transport is not None:
                self.transport.write(out)
            closed = self.tls.closed
            if not data:
                if closed:
                    self.eof_received()
                elif self.tls.handshake_done and not was_done:
                    self._wake()
                return
        else:
            closed = False
        if self.on_data is not None:
            self.on_data(data)
        else:
            self._buffer += data
            if len(self._buffer) >= BUFFER_LIMIT and not self._buffer_full:
                self._buffer_full = True
                self._update_reading()
            self._wake()
        if closed:  # after the data that came with it
            self.eof_received()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        if self.on_eof is not None:
            callback, self.on_eof = self.on_eof, None
            callback("connection closed")
        return True  # keep the transport open for writing; we close it ourselves

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.error is None:
            self.error = exc
        self._eof = True
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        if self.on_eof is not None:
            callback, self.on_eof = self.on_eof, None
            callback(f"connection lost: {exc}" if exc else "connection closed")
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.on_pause_writing is not None:
            self.on_pause_writing()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        if self.on_resume_writing is not None:
            self.on_resume_writing()

    # -- HTTP phase -------------------------------------------------------------------------

    async def read(self, deadline: float | None = None) -> bytes:
        """The bytes buffered so far, waiting for some if there are none; b"" at EOF.
        TimeoutError once the loop's clock passes ``deadline`` (None: no limit)."""
        while not self._buffer:
            if self._eof:
                if self.error is not None and not isinstance(self.error, ConnectionError):
                    raise self.error
                return b""
            await self._wait(deadline)
        return self.take_buffer()

    def deadline(self, timeout: float | None) -> float | None:
        """The loop time ``timeout`` seconds from now, for ``read`` and ``handshake_tls``
        (None or 0: no limit)."""
        return self._loop.time() + timeout if timeout else None

    async def _wait(self, deadline: float | None) -> None:
        """Until the next wake-up (data, EOF, a finished TLS handshake), or TimeoutError at
        ``deadline``: one timer handle, where ``asyncio.timeout`` would add a timeout object
        and a cancellation of the task per use (a handshake waits several times)."""
        waiter = self._waiter = self._loop.create_future()
        timer = None if deadline is None else self._loop.call_at(deadline, _expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def begin_request(self) -> None:
        """A new request starts: ``answering`` is False until bytes of its answer go out."""
        self._request_mark = self.bytes_out

    @property
    def answering(self) -> bool:
        """Whether bytes of the answer to the current request were written already."""
        return self.bytes_out > self._request_mark

    def unread(self, data: bytes) -> None:
        """Put bytes back in front of the buffer (what a parser read past its end)."""
        if data:
            self._buffer[:0] = data

    def take_buffer(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        if self._buffer_full:
            self._buffer_full = False
            self._update_reading()
        return data

    @property
    def buffered(self) -> int:
        """How many bytes were received and not taken yet."""
        return len(self._buffer)

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    def start_tls(
        self, context: ssl.SSLContext, *, server_side: bool, hostname: str | None
    ) -> None:
        """Switch to TLS; bytes already buffered are the start of the handshake."""
        self.tls = TLSLayer(context, server_side=server_side, server_hostname=hostname)
        pending = self.take_buffer()
        if pending or not server_side:
            self.data_received(pending)

    async def handshake_tls(self, deadline: float | None = None) -> None:
        """Wait until the TLS handshake finished (``start_tls`` began it); TimeoutError once
        the loop's clock passes ``deadline``."""
        assert self.tls is not None
        while not self.tls.handshake_done:
            if self.error is not None:
                raise self.error
            if self._eof:
                raise ConnectionResetError("connection closed during the TLS handshake")
            await self._wait(deadline)

    # -- writing ----------------------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.bytes_out += len(data)
        if self.tls is not None:
            try:
                data = self.tls.encrypt(data)
            except ssl.SSLError as error:
                self._fail(error)
                return
        transport.write(data)

    def write_chunks(self, chunks: Sequence[bytes | memoryview]) -> None:
        """Several pieces in one system call where the transport gathers them without a copy
        (uvloop's ``writelines`` is one ``writev``; asyncio's joins them first before Python
        3.12, so there each piece is written on its own)."""
        transport = self.transport
        if self.tls is None and transport is not None and _gathers(transport):
            if transport.is_closing():
                return
            self.bytes_out += sum(map(len, chunks))
            transport.writelines(chunks)
            return
        for chunk in chunks:
            self.write(chunk)

    async def drain(self) -> None:
        if self.write_paused and not self.closed.done():
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter

    def pause_reading(self) -> None:
        if not self.reading_paused:
            self.reading_paused = True
            self._update_reading()

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            self._update_reading()

    def _update_reading(self) -> None:
        """Read from the transport unless the relay or a full buffer holds this peer back."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.reading_paused or self._buffer_full:
            if transport.is_reading():
                transport.pause_reading()
        elif not transport.is_reading():
            transport.resume_reading()

    def write_eof(self) -> None:
        """Half-close: the peer reads EOF after what was written, and can still send to us."""
        if self.transport is None or self.transport.is_closing():
            return
        if self.tls is not None:
            out = self.tls.close_notify()
            if out:
                self.transport.write(out)
        if self.transport.can_write_eof():
            self.transport.write_eof()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: BaseException) -> None:
        self.error = error
        self._eof = True
        self._wake()
        if self.transport is not None:
            self.transport.abort()

    def _wake(self) -> None:
        if self._eof and not self.ended.done():
            self.ended.set_result(None)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    """A wait's deadline passed: it ends in TimeoutError (unless something woke it first)."""
    if not waiter.done():
        waiter.set_exception(TimeoutError())
