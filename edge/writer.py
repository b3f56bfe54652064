"""HTTP/1.x response framing for one request: the ``ResponseSink`` handlers write to.

``ResponseWriter`` decides the framing from what the handler sends
(``Content-Length`` passes through; otherwise chunked for an HTTP/1.1
keep-alive response, else the end of the body is the end of the connection),
adds ``Server``, ``Date`` and ``Connection``, and counts the body bytes for the
access log.  The head waits for the first body bytes (or ``end()``) so that
both leave in one write.  Its connection (``WriterHost``) does the writes,
the waiting for drain and the zero-copy sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from edge.exchange import ClientGone, Request
from edge.handlers import special_response_body
from httpproto import encode_head_bytes, reason_phrase

if TYPE_CHECKING:
    from edge.sendfile import FileSender
    from edge.state import ServerState
    from edge.tunnel import ClientTunnel

# Bodies up to this size leave in one buffer with their head (one copy, no writev).
JOIN_LIMIT = 16 * 1024

_NO_BODY_STATUSES = frozenset((204, 304))
# The front writes these itself on a 101 (Connection: upgrade) or they mean nothing there.
_NOT_IN_101 = frozenset(
    (b"connection", b"keep-alive", b"content-length", b"transfer-encoding", b"server", b"date")
)


class WriterHost(Protocol):
    """What a ``ResponseWriter`` needs from its connection (``edge.protocol.HttpConnection``)."""

    state: ServerState
    loop: asyncio.AbstractEventLoop
    files: FileSender

    @property
    def closed(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    def writelines(self, parts: tuple[bytes, ...]) -> None: ...

    async def drain(self, timeout: float) -> None: ...


class ResponseWriter:
    """``edge.exchange.ResponseSink`` for one request: framing, keep-alive, byte counts."""

    __slots__ = (
        "_conn",
        "_send_timeout",
        "_http10",
        "status",
        "started",
        "finished",
        "keep_alive",
        "no_body",
        "chunked",
        "remaining",
        "body_bytes",
        "_head",
        "on_last_bytes",
    )

    def __init__(
        self, conn: WriterHost, request: Request, keep_alive: bool, send_timeout: float
    ) -> None:
        self._conn = conn
        self._send_timeout = send_timeout
        self._http10 = request.http_version == "1.0"
        self.status = 0
        self.started = False
        self.finished = False
        self.keep_alive = keep_alive
        self.no_body = request.method == "HEAD"
        self.chunked = False
        self.remaining: int | None = None  # Content-Length bytes still owed
        self.body_bytes = 0
        self._head = b""  # encoded, not yet written
        # Called once, just before the response's last bytes are handed to the kernel:
        # what the request holds (a limit_conn slot) is given back before the client
        # can read the end of the response and send its next request.
        self.on_last_bytes: Callable[[], None] | None = None

    def _last_bytes(self) -> None:
        callback = self.on_last_bytes
        if callback is not None:
            self.on_last_bytes = None
            callback()

    def _flush_head(self) -> None:
        head = self._head
        if head:
            self._head = b""
            self._conn.write(head)

    async def send_head(
        self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes | None = None
    ) -> None:
        if self.started:
            raise RuntimeError("the response head was already sent")
        conn = self._conn
        if conn.closed:
            raise ClientGone("client closed the connection")
        self.started = True
        self.status = status
        out: list[tuple[bytes, bytes]] = []
        length: int | None = None
        framed = False
        own_server = own_date = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"connection":
                # Hop-by-hop: the front alone decides; a handler can only ask to close.
                if b"close" in value.lower():
                    self.keep_alive = False
                continue
            if lowered == b"keep-alive":
                continue
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"transfer-encoding":
                framed = True  # the handler frames the body itself
            elif lowered == b"server":
                own_server = True
            elif lowered == b"date":
                own_date = True
            out.append((name, value))
        if self.no_body or status in _NO_BODY_STATUSES or status < 200:
            self.no_body = True
        elif length is not None:
            self.remaining = length
        elif not framed:
            if self.keep_alive and not self._http10:
                out.append((b"Transfer-Encoding", b"chunked"))
                self.chunked = True
            else:
                self.keep_alive = False  # the end of the body is the end of the connection
        if conn.state.stopping:
            self.keep_alive = False
        lead: list[tuple[bytes, bytes]] = []
        if not own_server:
            lead.append((b"Server", b"edge"))
        if not own_date:
            lead.append((b"Date", conn.state.http_date()))
        out.append((b"Connection", b"keep-alive" if self.keep_alive else b"close"))
        line: int | str = status if reason is None else f"{status} {reason.decode('latin-1')}"
        # The head waits for the first body bytes (or end()) so that both leave in one
        # write: one syscall and one segment instead of two.  If the handler awaits
        # something first, the callback sends the head on its own without delay.
        self._head = encode_head_bytes(line, lead + out)
        conn.loop.call_soon(self._flush_head)

    async def send(self, data: bytes) -> None:
        if not self.started or self.finished:
            raise RuntimeError("send() outside of a started, unfinished response")
        if not data or self.no_body:
            return
        conn = self._conn
        if conn.closed:
            raise ClientGone("client closed the connection")
        size = len(data)
        if self.remaining is not None:
            if size > self.remaining:
                # More than the handler's own Content-Length: what follows would be read
                # as the next response.  Cut it and close after this one.
                data = data[: self.remaining]
                size = len(data)
                self.keep_alive = False
                if not size:
                    return
            self.remaining -= size
            if not self.remaining:
                self._last_bytes()
        head, self._head = self._head, b""
        if self.chunked:
            conn.writelines((head, b"%x\r\n" % size, data, b"\r\n"))
        elif head:
            if size <= JOIN_LIMIT:
                conn.write(head + data)  # a small copy costs less than writelines
            else:
                conn.writelines((head, data))
        else:
            conn.write(data)
        self.body_bytes += size
        await conn.drain(self._send_timeout)

    async def sendfile(self, file: object, offset: int, count: int) -> None:
        if not self.started or self.finished:
            raise RuntimeError("sendfile() outside of a started, unfinished response")
        if self.no_body or count <= 0:
            return
        conn = self._conn
        if conn.closed:
            raise ClientGone("client closed the connection")
        if self.remaining is not None:
            count = min(count, self.remaining)
            self.remaining -= count
            if not self.remaining:
                self._last_bytes()
        lead, self._head = self._head, b""
        if self.chunked:
            lead += b"%x\r\n" % count
        fd = file if isinstance(file, int) else file.fileno()  # type: ignore[attr-defined]
        await conn.files.send(lead, fd, offset, count, self._send_timeout)
        if self.chunked:
            conn.write(b"\r\n")
        self.body_bytes += count

    async def end(self) -> None:
        if self.finished:
            return
        if not self.started:
            raise RuntimeError("end() before send_head()")
        self.finished = True
        if self.remaining:
            # Fewer bytes than announced: the client would wait for the rest forever.
            self.keep_alive = False
        self._last_bytes()
        head, self._head = self._head, b""
        if self.chunked:
            self._conn.writelines((head, b"0\r\n\r\n"))
        elif head:
            self._conn.write(head)

    async def switch_protocols(self, headers: list[tuple[bytes, bytes]]) -> ClientTunnel:
        """Send ``101 Switching Protocols`` and turn the connection into a byte tunnel."""
        if self.started:
            raise RuntimeError("the response head was already sent")
        conn = self._conn
        start = getattr(conn, "start_tunnel", None)
        if conn.closed or start is None:
            raise ClientGone("client closed the connection")
        self.started = self.finished = True
        self.status = 101
        self.keep_alive = False
        self.no_body = True
        lead = [(b"Server", b"edge"), (b"Date", conn.state.http_date())]
        kept = [(n, v) for n, v in headers if n.lower() not in _NOT_IN_101]
        conn.write(encode_head_bytes(101, [*lead, *kept, (b"Connection", b"upgrade")]))
        tunnel: ClientTunnel = start(self)
        return tunnel

    async def send_error(self, status: int, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """nginx's small HTML page for ``status`` (``headers``: what the status needs, e.g. Allow)."""
        body = special_response_body(status, reason_phrase(status))
        await self.send_head(
            status,
            [
                (b"Content-Type", b"text/html"),
                (b"Content-Length", str(len(body)).encode()),
                *headers,
            ],
        )
        await self.send(body)
        await self.end()
