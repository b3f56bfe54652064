"""One connection to an upstream peer: a bare ``asyncio.Protocol``, uwsgi and HTTP alike.

Theory of operation
-------------------
The proxy reads and writes through ``read`` and ``send``; nothing here
knows HTTP or uwsgi.  ``read`` returns up to ``n`` buffered bytes, ``b""`` at
EOF, or raises the error the connection was lost with; reading pauses past
``2 * STREAM_LIMIT`` buffered bytes and resumes as they are consumed.
``send`` writes and waits for the transport to drain only when it asked us
to pause.  Every wait has its own timeout: one ``call_later`` per wait, which
is cheaper than ``asyncio.timeout`` and a task around each read.

Between requests a connection sits in its upstream's ``ConnectionPool``;
``alive`` says whether it may carry another request: the peer has not closed
it or reset it, and has sent nothing unasked (bytes arriving while idle mean
the stream is out of step, or a server saying goodbye).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from edge.config.schema import Endpoint

# asyncio's default stream limit; reading pauses above twice this.
STREAM_LIMIT = 64 * 1024


class UpstreamConnection(asyncio.Protocol):
    """A connection to ``endpoint``, with the bookkeeping the pool needs."""

    __slots__ = (
        "endpoint",
        "requests",
        "opened",
        "idle_until",
        "transport",
        "_loop",
        "_buffer",
        "_eof",
        "_exception",
        "_lost",
        "_waiter",
        "_paused",
        "_write_paused",
        "_drain_waiter",
    )

    def __init__(self, endpoint: Endpoint, loop: asyncio.AbstractEventLoop) -> None:
        self.endpoint = endpoint
        self.requests = 0  # requests sent on it so far; > 0 means "reused"
        self.opened = 0.0
        self.idle_until = 0.0  # when the pool gives up on it (its clock)
        self.transport: asyncio.Transport | None = None
        self._loop = loop
        self._buffer = bytearray()
        self._eof = False
        self._exception: BaseException | None = None
        self._lost = False
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    @property
    def reused(self) -> bool:
        return self.requests > 0

    def alive(self) -> bool:
        """Nothing says the peer closed it: no EOF, no error, no stray bytes, transport open."""
        transport = self.transport
        return not (
            self._lost
            or self._eof
            or self._exception is not None
            or self._buffer
            or transport is None
            or transport.is_closing()
        )

    # -- protocol callbacks ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._wake()
        if not self._paused and len(self._buffer) > 2 * STREAM_LIMIT:
            assert self.transport is not None
            try:
                self.transport.pause_reading()
            except NotImplementedError:
                pass
            else:
                self._paused = True

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return True  # as StreamReaderProtocol: the transport stays open for writing

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if exc is not None:
            self._exception = exc
        else:
            self._eof = True
        self._wake()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the proxy's side ----------------------------------------------------------------

    async def _wait(self, waiter: asyncio.Future[None], timeout: float | None) -> None:
        if timeout is None:
            await waiter
            return
        handle = self._loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            handle.cancel()

    async def read(self, n: int, timeout: float | None) -> bytes:
        """Up to ``n`` bytes, b"" at EOF; TimeoutError after ``timeout`` idle seconds."""
        if self._exception is not None:
            raise self._exception
        buffer = self._buffer
        if not buffer and not self._eof:
            waiter = self._waiter = self._loop.create_future()
            await self._wait(waiter, timeout)
            if self._exception is not None and not buffer:
                raise self._exception
        if len(buffer) <= n:
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:n])
            del buffer[:n]
        if self._paused and len(buffer) <= STREAM_LIMIT:
            self._paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        return data

    async def send(self, data: bytes, timeout: float | None) -> None:
        """Write, then wait for the transport to drain if it asked us to pause."""
        transport = self.transport
        assert transport is not None
        transport.write(data)
        if self._exception is not None:
            raise self._exception
        if transport.is_closing():
            await asyncio.sleep(0)
        if self._lost:
            raise ConnectionResetError("Connection lost")
        if not self._write_paused:
            return
        waiter = self._drain_waiter = self._loop.create_future()
        await self._wait(waiter, timeout)

    def close(self) -> None:
        """Close after our writes are flushed (a clean end of a finished exchange)."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop it now, unsent data and all (a failed or abandoned exchange)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.abort()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Deadline:
    """Cancel a task at a deadline, as ``asyncio.timeout`` does, for one await."""

    __slots__ = ("task", "expired")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.expired = False

    def __call__(self) -> None:
        self.expired = True
        self.task.cancel()


async def open_connection(
    endpoint: Endpoint, clock: Callable[[], float], timeout: float | None = None
) -> UpstreamConnection:
    """Connect to ``endpoint`` (TCP or unix); TimeoutError after ``timeout``."""
    loop = asyncio.get_running_loop()
    connection = UpstreamConnection(endpoint, loop)
    factory = lambda: connection  # noqa: E731
    if endpoint.is_unix:
        connecting = loop.create_unix_connection(factory, endpoint.path)
    else:
        connecting = loop.create_connection(factory, endpoint.host, endpoint.port)
    if timeout is None:
        await connecting
    else:
        task = asyncio.current_task(loop)
        assert task is not None
        deadline = _Deadline(task)
        handle = loop.call_later(timeout, deadline)
        try:
            await connecting
        except asyncio.CancelledError:
            if deadline.expired and task.uncancel() == 0:
                raise TimeoutError() from None
            raise
        finally:
            handle.cancel()
    connection.opened = clock()
    return connection
