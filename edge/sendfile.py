"""File bodies onto a client connection: the three ways a file can leave.

Theory of operation
-------------------
``FileSender`` belongs to one connection and sends ``lead`` (a response head,
a chunk-size line) followed by part of an open file:

1. ``loop.sendfile`` where the event loop implements it (the stdlib loops):
   zero-copy, in pieces of ``SENDFILE_PIECE`` so that ``send_timeout`` bounds
   each wait for progress, as in nginx.
2. ``os.sendfile`` on a duplicate of the socket, for uvloop, which has no
   ``loop.sendfile`` and will not watch a descriptor its transport owns.  The
   duplicate is made once per connection.  The transport's buffer is flushed
   first, and nothing else writes to the transport meanwhile: responses on a
   connection are serialized and the next head is not parsed before this one
   ends.  The head goes out with MSG_MORE so that it shares a segment with the
   file's first bytes (nginx uses TCP_CORK for the same).
3. ``pread`` + write, for small bodies (below ``ZERO_COPY_MIN`` a duplicate
   socket does not pay) and transports we cannot send on directly (TLS).

``try_send_now`` is path 2 without waiting, for the pipeline's synchronous
answers: it sends what the socket takes at once and reports how much is left,
so that only a response that really has to wait for the client gets a task.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import TYPE_CHECKING, Protocol

from edge.exchange import ClientGone, ResponseAborted

if TYPE_CHECKING:
    from edge.state import ServerState

SENDFILE_PIECE = 1 << 20  # send_timeout applies per piece of a zero-copy send
FALLBACK_CHUNK = 256 * 1024  # read size when the loop cannot sendfile
ZERO_COPY_MIN = 64 * 1024  # below this, os.sendfile on a dup'd descriptor does not pay
_STREAM_FAMILIES = frozenset((socket.AF_INET, socket.AF_INET6, socket.AF_UNIX))


class SendfileHost(Protocol):
    """What a ``FileSender`` needs from its connection (``edge.protocol.HttpConnection``)."""

    state: ServerState
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport | None
    high_water: int  # the transport's write high-water mark, restored after a flush

    @property
    def closed(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self, timeout: float) -> None: ...

    def timed_out(self, what: str) -> ClientGone: ...


class FileSender:
    """Zero-copy file bodies for one connection; see the module docstring."""

    __slots__ = ("_host", "_socket", "_busy", "_possible")

    def __init__(self, host: SendfileHost) -> None:
        self._host = host
        self._socket: socket.socket | None = None  # our duplicate of the client socket
        self._busy = False
        self._possible: bool | None = None  # can this transport be sent on directly?

    async def send(self, lead: bytes, fd: int, offset: int, count: int, timeout: float) -> None:
        host = self._host
        if host.state.sendfile_native:
            if lead:
                host.write(lead)
                lead = b""
            offset, count = await self._loop_sendfile(fd, offset, count, timeout)
            if not count:
                return
        if count >= ZERO_COPY_MIN and self.direct_possible():
            await self._dup_sendfile(lead, fd, offset, count, timeout)
            return
        if lead:
            host.write(lead)
        loop = host.loop
        while count > 0:
            data = await loop.run_in_executor(
                None, os.pread, fd, min(count, FALLBACK_CHUNK), offset
            )
            if not data:
                raise ResponseAborted("the file shrank while it was being sent")
            if host.closed:
                raise ClientGone("client closed the connection")
            host.write(data)
            offset += len(data)
            count -= len(data)
            await host.drain(timeout)

    async def _loop_sendfile(
        self, fd: int, offset: int, count: int, timeout: float
    ) -> tuple[int, int]:
        """Path 1; returns what is left when this loop or transport cannot sendfile."""
        host = self._host
        # A file object over the same descriptor (loop.sendfile wants one); closing it
        # leaves the descriptor to its owner.
        fileobj = open(fd, "rb", buffering=0, closefd=False)
        try:
            while count > 0:
                if host.closed:
                    raise ClientGone("client closed the connection")
                piece = min(count, SENDFILE_PIECE)
                transport = host.transport
                assert transport is not None
                try:
                    async with asyncio.timeout(timeout or None):
                        sent = await host.loop.sendfile(
                            transport, fileobj, offset, piece, fallback=False
                        )
                except NotImplementedError:
                    host.state.sendfile_native = False  # uvloop has no loop.sendfile
                    break
                except asyncio.SendfileNotAvailableError:
                    break  # this transport cannot (TLS, a test double): copy instead
                except TimeoutError:
                    raise host.timed_out("client timed out while sending a file") from None
                except (ConnectionError, RuntimeError) as exc:
                    raise ClientGone(str(exc)) from None
                if sent <= 0:
                    raise ResponseAborted("the file shrank while it was being sent")
                offset += sent
                count -= sent
        finally:
            fileobj.close()
        return offset, count

    def direct_possible(self) -> bool:
        """The transport is a plain stream socket we may write to through a duplicate."""
        host = self._host
        transport = host.transport
        if host.closed or transport is None:
            return False
        possible = self._possible
        if possible is None:
            sock = transport.get_extra_info("socket")
            possible = (
                transport.get_extra_info("sslcontext") is None  # TLS bytes go through the transport
                and sock is not None
                and sock.family in _STREAM_FAMILIES
                and sock.type == socket.SOCK_STREAM
            )
            self._possible = possible
        return possible

    def _duplicate(self) -> socket.socket:
        out = self._socket
        if out is None:
            transport = self._host.transport
            assert transport is not None
            # The duplicate shares the open file description, so it is non-blocking too.
            out = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
            self._socket = out
        return out

    def try_send_now(self, lead: bytes, fd: int, offset: int, count: int) -> tuple[bytes, int, int]:
        """Send ``lead`` and the file without waiting; returns (lead, offset, count) left.

        Only for a connection whose transport holds nothing unsent (the caller
        checks): then writing to the socket directly keeps the byte order.
        """
        out = self._duplicate()
        out_fd = out.fileno()
        try:
            while lead:
                lead = lead[out.send(lead, socket.MSG_MORE) :]
            while count > 0:
                sent = os.sendfile(out_fd, fd, offset, min(count, SENDFILE_PIECE))
                if sent <= 0:
                    raise ResponseAborted("the file shrank while it was being sent")
                offset += sent
                count -= sent
        except BlockingIOError:
            pass
        except ConnectionError as exc:
            raise ClientGone(str(exc)) from None
        return lead, offset, count

    async def _dup_sendfile(
        self, lead: bytes, fd: int, offset: int, count: int, timeout: float
    ) -> None:
        host = self._host
        transport = host.transport
        assert transport is not None
        if transport.get_write_buffer_size():
            if lead:
                transport.write(lead)
                lead = b""
            await self._flush(timeout)
        if host.closed:
            raise ClientGone("client closed the connection")
        out_fd = self._duplicate().fileno()
        self._busy = True
        try:
            while lead or count > 0:
                if host.closed:
                    raise ClientGone("client closed the connection")
                lead, offset, count = self.try_send_now(lead, fd, offset, count)
                if lead or count > 0:
                    await self._writable(out_fd, timeout)
        finally:
            self._busy = False
            if host.closed:
                self.close()

    async def _flush(self, timeout: float) -> None:
        host = self._host
        transport = host.transport
        assert transport is not None
        while transport.get_write_buffer_size():
            # A high-water mark of 0 pauses the protocol until the buffer is empty.
            transport.set_write_buffer_limits(high=0)
            try:
                await host.drain(timeout)
            finally:
                if not host.closed:
                    transport.set_write_buffer_limits(high=host.high_water)

    async def _writable(self, fd: int, timeout: float) -> None:
        """Wait until ``fd`` can take more bytes; ``send_timeout`` without progress ends it."""
        loop = self._host.loop
        writable: asyncio.Future[bool] = loop.create_future()
        loop.add_writer(fd, _resolve, writable)
        expiry = loop.call_later(timeout, _expire, writable) if timeout else None
        try:
            expired = await writable
        finally:
            loop.remove_writer(fd)
            if expiry is not None:
                expiry.cancel()
        if expired:
            raise self._host.timed_out("client timed out while sending a file")

    def close(self) -> None:
        # Not while a send waits on it: the loop still watches the descriptor.
        if self._socket is not None and not self._busy:
            self._socket.close()
            self._socket = None


def _resolve(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(True)
