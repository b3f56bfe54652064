"""After a ``101 Switching Protocols``: a byte tunnel between the client and the upstream.

Theory of operation
-------------------
nginx's ``ngx_http_upstream_upgrade``: when an HTTP upstream answers a request
that asked to upgrade (``Upgrade`` and ``Connection: upgrade``, which the
config must pass with ``params``, as nginx's ``proxy_set_header``) with 101,
the client connection stops being HTTP.  The front hands the proxy a
``ClientTunnel`` (the client's bytes as they arrive, and writes with
``send_timeout``), and ``relay`` pumps both ways until either side closes:

    client --ClientTunnel.read--> upstream.send (proxy_send_timeout)
    client <--ClientTunnel.write-- upstream.read (proxy_read_timeout)

The tunnel ends when the upstream sends nothing for ``proxy_read_timeout``
(nginx: "the connection will be closed if the proxied server does not transmit
any data within" it), when either side closes or fails, or at a graceful stop's
end.  Both connections are then closed; neither is reused.  Flow control:
each pump awaits its write before it reads again, and the client's side stops
reading past ``HIGH_WATER`` buffered bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from edge.exchange import ClientGone
from edge.upstream.connection import UpstreamConnection

HIGH_WATER = 64 * 1024
READ_SIZE = 64 * 1024


class TunnelHost(Protocol):
    """What a ``ClientTunnel`` needs from the client connection (``HttpConnection``)."""

    @property
    def closed(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self, timeout: float) -> None: ...

    def pause_tunnel(self, paused: bool) -> None: ...

    def close_now(self) -> None: ...


class ClientTunnel:
    """The client's side of the tunnel: its bytes in, ours out (counted for the log)."""

    __slots__ = ("_conn", "_buffer", "_eof", "_waiter", "_paused", "sent", "_counter")

    def __init__(self, conn: TunnelHost, counter: object | None = None) -> None:
        self._conn = conn
        self._buffer = bytearray()
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.sent = 0  # bytes written to the client through the tunnel
        self._counter = counter  # the response writer, whose body_bytes the access log reads

    def feed(self, data: bytes) -> None:
        self._buffer += data
        self._wake()
        if not self._paused and len(self._buffer) > HIGH_WATER:
            self._paused = True
            self._conn.pause_tunnel(True)

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes:
        """The client's next bytes; b"" when it has closed."""
        while not self._buffer:
            if self._eof or self._conn.closed:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        data = bytes(self._buffer[:READ_SIZE])
        del self._buffer[:READ_SIZE]
        if self._paused and len(self._buffer) <= HIGH_WATER:
            self._paused = False
            self._conn.pause_tunnel(False)
        return data

    async def write(self, data: bytes, timeout: float) -> None:
        if self._conn.closed:
            raise ClientGone("client closed the connection")
        self._conn.write(data)
        self.sent += len(data)
        if self._counter is not None:
            self._counter.body_bytes += len(data)  # type: ignore[attr-defined]
        await self._conn.drain(timeout)

    def close(self) -> None:
        self._conn.close_now()


async def relay(
    client: ClientTunnel,
    upstream: UpstreamConnection,
    leftover: bytes,
    read_timeout: float | None,
    send_timeout: float | None,
    client_send_timeout: float,
) -> str:
    """Pump bytes both ways until one side ends; returns why the tunnel ended."""

    async def downstream() -> str:
        if leftover:
            await client.write(leftover, client_send_timeout)
        while True:
            try:
                data = await upstream.read(READ_SIZE, read_timeout)
            except TimeoutError:
                return "upstream timed out (proxy_read_timeout) in the upgraded connection"
            if not data:
                return "upstream closed the upgraded connection"
            await client.write(data, client_send_timeout)

    async def upstream_bound() -> str:
        while True:
            data = await client.read()
            if not data:
                return "client closed the upgraded connection"
            await upstream.send(data, send_timeout)

    tasks = [asyncio.ensure_future(downstream()), asyncio.ensure_future(upstream_bound())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    finished = next(iter(done))
    error = finished.exception()
    if error is None:
        return str(finished.result())
    if isinstance(error, ClientGone):
        return "client closed the upgraded connection"
    if isinstance(error, TimeoutError):
        return "a write timed out in the upgraded connection"
    return f"the upgraded connection failed ({error!r})"
