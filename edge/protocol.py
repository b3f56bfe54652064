"""The HTTP/1.x front: one ``asyncio.Protocol`` per client connection.

Theory of operation
-------------------
Bytes go into the connection's ``httpproto.RequestParser`` (httptools plus
our framing and smuggling rules); we never parse HTTP here.  A connection is
in one of five phases:

``IDLE``     waiting for the first byte of a request (a fresh connection, or
             keep-alive between requests).  Idle connections are what
             ``worker_connections`` reclaims first, and what a graceful stop
             closes at once.
``HEAD``     some of a request head has arrived.  ``client_header_timeout``
             bounds the whole head (the timer is not reset per read, as in
             nginx), which is what defeats a slowloris.
``REQUEST``  a head was parsed and one task (``_serve``) runs the request:
             routing, limits, access rules, then the location's handler.
             Requests on one connection run strictly one after another, so
             pipelined responses come out in order; the next head is only
             looked at when the current response is complete.
``LINGER``   the response that ends the connection is written and our side
             is shut; we read and drop what the client still sends for a few
             seconds before closing, so its unread bytes do not turn into a
             RST that destroys the response (nginx's ``lingering_close``).
``CLOSED``

Flow control: while a request runs, unread bytes pile up in the parser; above
``HIGH_WATER`` the socket stops being read until the body reader (or the next
request) catches up.  Writes go through ``ResponseWriter``, which awaits
``drain()`` when the transport's buffer is above its high-water mark, for at
most ``send_timeout``.

Errors follow STYLE.md: every exception that ends a request carries its
status (``EdgeError.status``, ``HttpProtocolError.status_hint``), and
``status_of`` is the one place that reads it.  A client fault gets its status,
``Connection: close`` and an ``info`` line (as nginx logs them: a scanner
must not flood the log); a server fault gets 500 and a traceback; the
``except Exception`` lives only at the request-task boundary.  A handler that
fails after the head went out can only cut the connection.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from edge.access import access_allowed
from edge.accesslog import AccessEntry, remote_user
from edge.body import RequestBodyReader
from edge.config.schema import Listen, ProxyHandler, Server
from edge.errorlog import request_context
from edge.exchange import (
    ClientError,
    ClientGone,
    EdgeError,
    Exchange,
    Request,
    ResponseAborted,
)
from edge.handlers import (
    EXTRA_CACHE_STATUS,
    EXTRA_STATUS,
    EXTRA_UPSTREAM,
    EXTRA_UPSTREAM_ADDR,
    EXTRA_UPSTREAM_RESPONSE_TIME,
    EXTRA_UPSTREAM_STATUS,
    InternalRedirect,
    special_response_body,
)
from edge.limits import acquire_connections, limit_requests, release_connections
from edge.realip import real_client_ip
from edge.routing import normalize_host, normalize_uri
from httpproto import (
    CLOSED,
    NEED_DATA,
    HttpProtocolError,
    RequestHead,
    RequestParser,
    encode_head_bytes,
    encode_response_head,
    reason_phrase,
)

if TYPE_CHECKING:
    from edge.config.schema import LimitConnRule, Location
    from edge.server import ServerState

HIGH_WATER = 64 * 1024
# Bodies up to this size leave in one buffer with their head (one copy, no writev).
JOIN_LIMIT = 16 * 1024
LINGERING_TIME = 30.0  # nginx lingering_time: total time spent discarding
LINGERING_TIMEOUT = 5.0  # nginx lingering_timeout: wait for more client bytes
MAX_INTERNAL_REDIRECTS = 10  # nginx's NGX_HTTP_MAX_URI_CHANGES
SENDFILE_PIECE = 1 << 20  # send_timeout applies per piece of a zero-copy send
FALLBACK_CHUNK = 256 * 1024  # read size when the loop cannot sendfile
ZERO_COPY_MIN = 64 * 1024  # below this, os.sendfile on a dup'd descriptor does not pay
_STREAM_FAMILIES = frozenset((socket.AF_INET, socket.AF_INET6, socket.AF_UNIX))
MAX_CAPTURED_LINE = 8192
FIRST_REQUEST_GRACE = 1.0  # graceful stop: how long a fresh connection may take to speak
CLIENT_CLOSED = 499  # nginx's status for "client closed the connection"

IDLE, HEAD, REQUEST, LINGER, CLOSED_PHASE = range(5)

_NO_BODY_STATUSES = frozenset((204, 304))
# Error pages after which nginx drops keep-alive (ngx_http_special_response_handler):
# the request was malformed or the server is in doubt, so the stream is not trusted.
_CLOSING_STATUSES = frozenset((400, 408, 413, 414, 500, 501))


def status_of(exc: BaseException) -> int:
    """The one mapping from an exception to a response status (STYLE: no isinstance ladder)."""
    status = getattr(exc, "status", None) or getattr(exc, "status_hint", None)
    return status if isinstance(status, int) else 500


class RequestCycle:
    """One request's state as the connection sees it (the handler sees ``exchange``)."""

    __slots__ = (
        "request",
        "body",
        "response",
        "exchange",
        "raw_line",
        "bad_uri",
        "conn_rules",
        "client_gone",
        "broken",
        "redirects",
    )

    def __init__(
        self,
        request: Request,
        body: RequestBodyReader,
        response: ResponseWriter,
        raw_line: bytes,
        bad_uri: bool,
    ) -> None:
        self.request = request
        self.body = body
        self.response = response
        self.exchange = Exchange(request, body, response)
        self.raw_line = raw_line
        self.bad_uri = bad_uri
        self.conn_rules: tuple[LimitConnRule, ...] | None = None  # limit_conn slots held
        self.client_gone = False
        self.broken = False  # the connection cannot carry another request
        self.redirects = 0

    def log_status(self) -> int:
        """What the access log says: the status sent, else 499 (nginx's "client closed")."""
        extra = self.request.extra.get(EXTRA_STATUS)
        if extra is not None and extra.isdigit():
            return int(extra)
        if self.response.started:
            return self.response.status
        return CLIENT_CLOSED


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
        self, conn: HttpConnection, request: Request, keep_alive: bool, send_timeout: float
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
        await conn.sendfile(file, offset, count, self._send_timeout, lead)
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

    async def send_error(self, status: int) -> None:
        """nginx's small HTML page for ``status``."""
        body = special_response_body(status, reason_phrase(status))
        await self.send_head(
            status,
            [(b"Content-Type", b"text/html"), (b"Content-Length", str(len(body)).encode())],
        )
        await self.send(body)
        await self.end()


class HttpConnection(asyncio.Protocol):
    """One client connection; see the module docstring."""

    def __init__(self, state: ServerState, listen: Listen) -> None:
        self.state = state
        self.listen = listen
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser: RequestParser = _UNSET_PARSER
        self.defaults: Server = _UNSET_SERVER
        self.number = 0
        self.phase = IDLE
        self.peer_ip = ""
        self.peer_port = 0
        self.local_ip = ""
        self.local_port = 0
        self.requests = 0  # completed requests on this connection
        self.must_close = False  # the parser is dead or the body cannot be skipped
        self.task: asyncio.Task[None] | None = None
        self.cycle: RequestCycle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._zero_copy_socket: socket.socket | None = None  # a dup for os.sendfile
        self._zero_copy_busy = False
        self._timer_when = 0.0  # when the loop's timer fires (loop.time())
        self._deadline = 0.0  # when the armed callback is due
        self._timer_callback: Callable[[], object] | None = None
        self._data_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._unconsumed = 0  # bytes fed to the parser and not yet taken out of it
        self._eof = False
        self._line = b""  # the start of the current head, for logging a refused request
        self._head_started = 0.0
        self._linger_until = 0.0

    # -- asyncio callbacks -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have its methods.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        state = self.state
        if not state.admit(self):
            self.phase = CLOSED_PHASE
            transport.abort()
            return
        self.number = state.next_connection_number()
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self.peer_ip, self.peer_port = peer[0], peer[1]
        else:
            self.peer_ip = "unix:"
        if isinstance(local, tuple):
            self.local_ip, self.local_port = local[0], local[1]
        # Limits that apply before the Host header is known come from the listener's
        # default server, as in nginx.
        self.defaults = state.router.server_for(self.listen.host, self.listen.port, None)
        buffers = self.defaults.large_client_header_buffers
        self.parser = RequestParser(
            max_header_size=buffers.number * buffers.size,
            max_headers=max(100, buffers.number * buffers.size // 64),
            max_line=buffers.size,
            max_body_size=None,  # set per request, once the location is known
        )
        transport.set_write_buffer_limits(high=HIGH_WATER)
        self._arm(self.defaults.client_header_timeout, self._on_header_timeout)
        if state.stopping:
            self.shutdown()  # accepted just before the listener closed: still one request

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase == REQUEST:
            self.parser.feed(data)
            self._unconsumed += len(data)
            self._wake_reader()
            if self._unconsumed > HIGH_WATER:
                self._pause_reading()
            return
        if phase == IDLE:
            self.phase = HEAD
            self._head_started = time.time()
            self._line = b""
            if self.requests:
                # Keep-alive: the wait was keepalive_timeout; the head gets its own deadline.
                self._arm(self.defaults.client_header_timeout, self._on_header_timeout)
        elif phase == LINGER:
            self._linger_more()
            return
        elif phase != HEAD:
            return
        if len(self._line) < MAX_CAPTURED_LINE:
            self._line += data[: MAX_CAPTURED_LINE - len(self._line)]
        self.parser.feed(data)
        self._unconsumed += len(data)
        self._next_request()

    def eof_received(self) -> bool:
        self._eof = True
        if self.phase == LINGER:
            return False  # the client has read our response and closed: close now
        self.parser.feed(b"")
        if self.phase in (IDLE, HEAD):
            self._next_request()
        else:
            self._wake_reader()
        # Keep our half open: a client may shut its side after sending a whole request
        # and still read the response.
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = CLOSED_PHASE
        self._drop_timer()
        self._close_zero_copy_socket()
        self.state.forget(self)
        # Waiters re-check ``closed`` when woken; resolving them (rather than setting
        # an exception) leaves no unretrieved exception behind if the task is cancelled.
        self._wake_reader()
        self._wake_writer()
        task, cycle = self.task, self.cycle
        if task is not None and not task.done():
            if cycle is not None:
                cycle.client_gone = True
            if not self._ignores_client_abort(cycle):
                task.cancel()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    # -- plumbing used by the body reader and the response writer ----------------

    @property
    def closed(self) -> bool:
        transport = self.transport
        return self.phase == CLOSED_PHASE or transport is None or transport.is_closing()

    def write(self, data: bytes) -> None:
        if not self.closed:
            assert self.transport is not None
            self.transport.write(data)

    def writelines(self, parts: tuple[bytes, ...]) -> None:
        if not self.closed:
            assert self.transport is not None
            self.transport.writelines(parts)

    async def drain(self, timeout: float) -> None:
        if self.closed:
            raise ClientGone("client closed the connection")
        if not self._write_paused:
            return
        waiter = self.loop.create_future()
        self._drain_waiter = waiter
        try:
            async with asyncio.timeout(timeout or None):
                await waiter
        except TimeoutError:
            self.log("info", "client timed out while sending response to client", self.cycle)
            self.abort()
            raise ClientGone("send_timeout expired") from None
        finally:
            self._drain_waiter = None
        if self.closed:
            raise ClientGone("client closed the connection")

    async def wait_for_data(self, timeout: float) -> None:
        if self.closed or self._eof:
            raise ClientGone("client closed the connection")
        waiter = self.loop.create_future()
        self._data_waiter = waiter
        try:
            async with asyncio.timeout(timeout or None):
                await waiter
        finally:
            self._data_waiter = None
        if self.phase == CLOSED_PHASE:
            raise ClientGone("client closed the connection")

    def body_consumed(self, size: int) -> None:
        self._unconsumed = max(0, self._unconsumed - size)
        if self._read_paused and self._unconsumed <= HIGH_WATER:
            self._resume_reading()

    def body_starved(self) -> None:
        self._unconsumed = 0
        self._resume_reading()

    def body_failed(self) -> None:
        self.must_close = True

    async def sendfile(
        self, file: object, offset: int, count: int, timeout: float, lead: bytes = b""
    ) -> None:
        """``lead`` (a response head, a chunk size), then part of a file.

        Zero-copy: ``os.sendfile`` on our own descriptor of the socket (uvloop), or
        ``loop.sendfile`` (stdlib loops).  Small bodies and sockets we cannot send on
        directly go through pread + write.
        """
        fd = file if isinstance(file, int) else file.fileno()  # type: ignore[attr-defined]
        state = self.state
        if state.sendfile_native:
            if lead:
                self.write(lead)
                lead = b""
            # A file object over the same descriptor (loop.sendfile wants one); closing it
            # leaves the descriptor to its owner.
            fileobj = open(fd, "rb", buffering=0, closefd=False)
            try:
                while count > 0:
                    if self.closed:
                        raise ClientGone("client closed the connection")
                    piece = min(count, SENDFILE_PIECE)
                    assert self.transport is not None
                    try:
                        async with asyncio.timeout(timeout or None):
                            sent = await self.loop.sendfile(
                                self.transport, fileobj, offset, piece, fallback=False
                            )
                    except NotImplementedError:
                        state.sendfile_native = False  # uvloop has no loop.sendfile
                        break
                    except asyncio.SendfileNotAvailableError:
                        break  # this transport cannot (TLS, a test double): copy instead
                    except TimeoutError:
                        self.log("info", "client timed out while sending a file", self.cycle)
                        self.abort()
                        raise ClientGone("send_timeout expired") from None
                    except (ConnectionError, RuntimeError) as exc:
                        raise ClientGone(str(exc)) from None
                    if sent <= 0:
                        raise ResponseAborted("the file shrank while it was being sent")
                    offset += sent
                    count -= sent
            finally:
                fileobj.close()
        if not state.sendfile_native and count >= ZERO_COPY_MIN and self._dup_sendfile_possible():
            await self._dup_sendfile(lead, fd, offset, count, timeout)
            return
        if lead:
            self.write(lead)
        while count > 0:
            piece = min(count, FALLBACK_CHUNK)
            data = await self.loop.run_in_executor(None, os.pread, fd, piece, offset)
            if not data:
                raise ResponseAborted("the file shrank while it was being sent")
            if self.closed:
                raise ClientGone("client closed the connection")
            self.write(data)
            offset += len(data)
            count -= len(data)
            await self.drain(timeout)

    def _dup_sendfile_possible(self) -> bool:
        transport = self.transport
        if self.closed or transport is None:
            return False
        if transport.get_extra_info("sslcontext") is not None:
            return False  # the bytes must go through TLS
        sock = transport.get_extra_info("socket")
        return (
            sock is not None and sock.family in _STREAM_FAMILIES and sock.type == socket.SOCK_STREAM
        )

    async def _dup_sendfile(
        self, lead: bytes, fd: int, offset: int, count: int, timeout: float
    ) -> None:
        """Zero-copy for loops without ``loop.sendfile`` (uvloop): ``os.sendfile`` on a dup.

        uvloop will not watch a descriptor its transport owns, so we send on a
        duplicate of the socket, made once per connection.  The transport's buffer is
        flushed first, and nothing else writes to the transport meanwhile: responses
        on a connection are serialized and the next head is not parsed before this
        one ends.  The head goes out with MSG_MORE so that it shares a segment with
        the file's first bytes (nginx uses TCP_CORK for the same).  ``send_timeout``
        bounds each wait for progress, as in nginx.
        """
        transport = self.transport
        assert transport is not None
        if transport.get_write_buffer_size():
            if lead:
                transport.write(lead)
                lead = b""
            while transport.get_write_buffer_size():
                # A high-water mark of 0 pauses the protocol until the buffer is empty.
                transport.set_write_buffer_limits(high=0)
                try:
                    await self.drain(timeout)
                finally:
                    if not self.closed:
                        transport.set_write_buffer_limits(high=HIGH_WATER)
        if self.closed:
            raise ClientGone("client closed the connection")
        out = self._zero_copy_socket
        if out is None:
            # The duplicate shares the open file description, so it is non-blocking too.
            out = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
            self._zero_copy_socket = out
        out_fd = out.fileno()
        self._zero_copy_busy = True
        try:
            while lead or count > 0:
                if self.closed:
                    raise ClientGone("client closed the connection")
                try:
                    if lead:
                        lead = lead[out.send(lead, socket.MSG_MORE) :]
                        continue
                    sent = os.sendfile(out_fd, fd, offset, min(count, SENDFILE_PIECE))
                except BlockingIOError:
                    await self._writable(out_fd, timeout)
                    continue
                except ConnectionError as exc:
                    raise ClientGone(str(exc)) from None
                if sent <= 0:
                    raise ResponseAborted("the file shrank while it was being sent")
                offset += sent
                count -= sent
                if count > 0:
                    await asyncio.sleep(0)  # let other connections run between pieces
        finally:
            self._zero_copy_busy = False
            if self.phase == CLOSED_PHASE:
                self._close_zero_copy_socket()

    def _close_zero_copy_socket(self) -> None:
        # Not while a send waits on it: the loop still watches the descriptor.
        if self._zero_copy_socket is not None and not self._zero_copy_busy:
            self._zero_copy_socket.close()
            self._zero_copy_socket = None

    async def _writable(self, fd: int, timeout: float) -> None:
        """Wait until ``fd`` can take more bytes; ``send_timeout`` without progress ends it."""
        loop = self.loop
        writable: asyncio.Future[bool | None] = loop.create_future()
        loop.add_writer(fd, _resolve, writable)
        expiry = loop.call_later(timeout, _expire, writable) if timeout else None
        try:
            expired = await writable
        finally:
            loop.remove_writer(fd)
            if expiry is not None:
                expiry.cancel()
        if expired:
            self.log("info", "client timed out while sending a file", self.cycle)
            self.abort()
            raise ClientGone("send_timeout expired")

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def log(
        self,
        level: str,
        message: str,
        cycle: RequestCycle | None = None,
        exc: BaseException | None = None,
    ) -> None:
        error_log = self.state.error_log
        if not error_log.enabled(level):
            return
        if cycle is None:
            context = request_context(
                client=self.peer_ip, server=_server_name(self.defaults), request=None
            )
        else:
            request = cycle.request
            host = request.header(b"host")
            context = request_context(
                client=request.client_ip,
                server=_server_name(request.server),
                request=request.request_line,
                upstream=request.extra.get(EXTRA_UPSTREAM),
                host=None if host is None else host.decode("latin-1"),
            )
        error_log.log(level, message, connection=self.number, context=context, exc=exc)

    # -- graceful stop and worker_connections ------------------------------------

    def shutdown(self) -> None:
        """Graceful stop: idle connections get a short grace, busy ones close after their response.

        An idle connection may have a request in flight towards us: a new one that
        was accepted a moment ago, or a keep-alive one whose client sends its next
        request right after the last response.  Closing it now would drop that
        request (the client sees the connection reset), so it gets a short grace to
        arrive and is answered with close; a connection that stays quiet is closed.
        """
        if self.phase == IDLE:
            self._arm(
                min(FIRST_REQUEST_GRACE, self.defaults.client_header_timeout),
                self._on_header_timeout,
            )
        elif self.phase == LINGER:
            self.close_now()

    def close_now(self) -> None:
        self._drop_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # -- heads -----------------------------------------------------------------

    def _next_request(self) -> None:
        try:
            event = self.parser.next_event()
        except HttpProtocolError as exc:
            self._refuse(exc)
            return
        if event is NEED_DATA:
            self._unconsumed = 0
            self._resume_reading()
            return
        if event is CLOSED:
            self.close_now()
            return
        assert type(event) is RequestHead
        self._cancel_timer()
        self.phase = REQUEST
        started = self._head_started or time.time()
        self._head_started = 0.0
        task = self.loop.create_task(self._serve(event, started))
        self.task = task
        self.state.track(task)

    def _refuse(self, exc: HttpProtocolError) -> None:
        """A head the parser refused: its status, Connection: close, an access-log line."""
        self.must_close = True
        self.log("info", f"client sent invalid request: {exc}")
        self._answer_and_close(exc.status_hint)

    def _on_header_timeout(self) -> None:
        if self.phase == IDLE:
            self.close_now()  # an idle or keep-alive connection: nginx closes it silently
        elif self.phase == HEAD:
            self.log("info", "client timed out while reading client request headers")
            self._answer_and_close(408)

    def _answer_and_close(self, status: int) -> None:
        self.phase = REQUEST  # no more parsing on this connection
        body = special_response_body(status, reason_phrase(status))
        head = encode_response_head(
            status,
            [
                (b"Server", b"edge"),
                (b"Date", self.state.http_date()),
                (b"Content-Type", b"text/html"),
                (b"Content-Length", str(len(body)).encode()),
                (b"Connection", b"close"),
            ],
        )
        self.write(head + body)
        line = self._captured_line()
        self.state.write_access(
            AccessEntry(
                remote_addr=self.peer_ip,
                time=time.time(),
                request_line=line,
                status=status,
                body_bytes_sent=len(body),
                request_time=time.time() - self._head_started if self._head_started else 0.0,
            )
        )
        self._close_after_response(linger=True)

    def _captured_line(self) -> bytes | None:
        data = self._line.lstrip(b"\r\n")
        if not data:
            return None
        end = data.find(b"\n")
        line = data if end < 0 else data[:end]
        return line.rstrip(b"\r") or None

    # -- one request -------------------------------------------------------------

    async def _serve(self, head: RequestHead, started: float) -> None:
        cycle = self._begin(head, started)
        self.cycle = cycle
        try:
            await self._respond(cycle)
        finally:
            self._end(cycle)
        try:
            self._after(cycle)
        except Exception as exc:  # the task boundary: a bug here must not leave a hung client
            self.log("alert", f"unexpected error after the response: {exc!r}", cycle, exc)
            self.abort()

    def _begin(self, head: RequestHead, started: float) -> RequestCycle:
        state = self.state
        config = state.config
        path = normalize_uri(head.path) if head.path[:1] == b"/" else None
        host_header: bytes | None = None
        for name, value in head.headers:
            if name == b"host":
                host_header = value
                break
        server, location = state.router.route(
            self.listen.host, self.listen.port, host_header, path or "/"
        )
        client_ip = self.peer_ip
        real_ip = config.real_ip
        if real_ip.trusted:
            wanted = real_ip.header.lower().encode("latin-1")
            forwarded = [value for name, value in head.headers if name == wanted]
            if forwarded:
                client_ip = real_client_ip(self.peer_ip, b", ".join(forwarded), real_ip)
        target = head.target
        raw_line = b"%s %s HTTP/%s" % (
            head.method.encode("ascii"),
            target,
            head.http_version.encode(),
        )
        request = Request(
            method=head.method,
            target=target,
            path=path or "",
            raw_path=head.path,
            query=head.query,
            http_version=head.http_version,
            headers=head.headers,
            host=normalize_host(host_header) or _server_name(server) or self.local_ip,
            scheme="http",
            client_ip=client_ip,
            client_port=self.peer_port,
            peer_ip=self.peer_ip,
            server_addr=self.local_ip,
            server_port=self.local_port,
            server=server,
            # None only for a refused target or no match; _dispatch answers those
            # before any handler can see the request.
            location=location if path is not None else None,  # type: ignore[arg-type]
            content_length=head.content_length,
            chunked=head.chunked,
            keep_alive=head.keep_alive,
            started=started,
            request_line=raw_line.decode("latin-1"),
        )
        body = RequestBodyReader(
            self, head.content_length, head.chunked, server.client_body_timeout
        )
        keep_alive = (
            head.keep_alive
            and not state.stopping
            and server.keepalive_timeout > 0
            and self.requests + 1 < server.keepalive_requests
        )
        response = ResponseWriter(self, request, keep_alive, server.send_timeout)
        return RequestCycle(request, body, response, raw_line, bad_uri=path is None)

    async def _respond(self, cycle: RequestCycle) -> None:
        response = cycle.response
        try:
            await self._dispatch(cycle)
            if not response.started:
                raise RuntimeError("the handler returned without sending a response")
            if not response.finished:
                await response.end()
        except ResponseAborted as exc:
            cycle.broken = True
            if cycle.request.extra.get(EXTRA_STATUS) is None:
                self.log("info", f"response aborted: {exc}", cycle)
        except ClientGone as exc:
            cycle.client_gone = True
            cycle.broken = True
            self.log("info", f"client closed connection: {exc}", cycle)
        except Exception as exc:  # the request-task boundary (STYLE rule 5)
            await self._fail(cycle, exc)

    async def _fail(self, cycle: RequestCycle, exc: Exception) -> None:
        status = status_of(exc)
        expected = hasattr(exc, "status") or hasattr(exc, "status_hint")
        level = getattr(exc, "level", None) or ("error" if status >= 500 else "info")
        if expected:
            self.log(level, str(exc) or type(exc).__name__, cycle)
        else:
            self.log("error", f"unexpected error while serving the request: {exc!r}", cycle, exc)
        response = cycle.response
        if response.started:
            cycle.broken = True  # the status is gone: all we can do is cut the response
            return
        if status in _CLOSING_STATUSES or self.must_close or not cycle.body.drain_buffered():
            response.keep_alive = False
        try:
            await response.send_error(status)
        except ClientGone:
            cycle.client_gone = True
            cycle.broken = True

    async def _dispatch(self, cycle: RequestCycle) -> None:
        request, body = cycle.request, cycle.body
        state = self.state
        if cycle.bad_uri:
            raise ClientError(f"client sent invalid request target {request.target[:200]!r}")
        location = request.location
        if location is None:
            raise EdgeError(f'no location matches "{request.path}"', status=404, level="info")
        # client_max_body_size is checked in nginx's find-config phase, before limits.
        limit = location.client_max_body_size
        if limit is None:
            limit = request.server.client_max_body_size
        if limit and request.content_length is not None and request.content_length > limit:
            self.must_close = True
            raise ClientError(
                f"client intended to send too large body: {request.content_length} bytes",
                status=413,
                level="error",
            )
        if request.chunked:
            self.parser.max_body_size = limit or None
        key = request.client_ip
        if location.limit_req:
            verdict = limit_requests(location.limit_req, state.req_zones, key, time.monotonic())
            excess = f"{verdict.excess / 1000:.3f}"
            if not verdict.allowed:
                raise EdgeError(
                    f'limiting requests, excess: {excess} by zone "{verdict.zone}"',
                    status=verdict.status,
                    level="error",
                )
            if verdict.delay > 0:
                self.log(
                    "warn", f'delaying request, excess: {excess}, by zone "{verdict.zone}"', cycle
                )
                await asyncio.sleep(verdict.delay)
        if location.limit_conn:
            refused = acquire_connections(location.limit_conn, state.conn_zones, key)
            if refused is not None:
                raise EdgeError(
                    f'limiting connections by zone "{refused.zone}"',
                    status=refused.status,
                    level="error",
                )
            cycle.conn_rules = location.limit_conn
            cycle.response.on_last_bytes = lambda: self._release_connections(cycle)
        while True:
            location = request.location
            if not access_allowed(location.access, request.client_ip):
                raise EdgeError("access forbidden by rule", status=403, level="error")
            handler = state.handlers.handler_for(location)
            if not getattr(handler, "reads_body", True) and not body.done:
                await body.discard()
            try:
                await handler.handle(cycle.exchange)
                return
            except InternalRedirect as redirect:
                if cycle.response.started:
                    raise RuntimeError("internal redirect after the response started") from None
                self._redirect(cycle, redirect.target)

    def _redirect(self, cycle: RequestCycle, target: str) -> None:
        """nginx's internal redirect: re-match the location for a new URI or ``@name``."""
        request = cycle.request
        cycle.redirects += 1
        if cycle.redirects > MAX_INTERNAL_REDIRECTS:
            raise EdgeError(
                f'rewrite or internal redirection cycle while internally redirecting to "{target}"',
                status=500,
            )
        table = self.state.router.locations(request.server)
        location: Location | None
        if target.startswith("@"):
            location = table.named(target)
        else:
            path_text, sep, query = target.partition("?")
            # A fallback is already-decoded text (nginx does not decode it again): escape
            # "%" so normalize_uri only merges slashes and resolves dot segments, which
            # keeps "$uri/../.." from pointing above the root.
            raw = path_text.encode("utf-8", "surrogateescape").replace(b"%", b"%25")
            path = normalize_uri(raw)
            if path is None:
                raise EdgeError(f'invalid internal redirect target "{target}"', status=500)
            request.path = path
            if sep:
                request.query = query.encode("latin-1", "replace")
            location = table.match(path)
        if location is None:
            raise EdgeError(
                f'no location for internal redirect to "{target}"', status=404, level="info"
            )
        request.location = location

    def _release_connections(self, cycle: RequestCycle) -> None:
        if cycle.conn_rules is not None:
            release_connections(cycle.conn_rules, self.state.conn_zones, cycle.request.client_ip)
            cycle.conn_rules = None

    def _end(self, cycle: RequestCycle) -> None:
        """Runs even when the task is cancelled: give back limits, remove spools, log."""
        self._release_connections(cycle)
        cycle.body.cleanup()
        if self.state.access_log is None:
            return
        request, response = cycle.request, cycle.response
        extra = request.extra
        now = time.time()
        upstream_status = extra.get(EXTRA_UPSTREAM_STATUS)
        upstream_time = extra.get(EXTRA_UPSTREAM_RESPONSE_TIME)
        self.state.write_access(
            AccessEntry(
                remote_addr=request.client_ip,
                time=now,
                request_line=cycle.raw_line,
                status=cycle.log_status(),
                body_bytes_sent=response.body_bytes,
                http_referer=request.header(b"referer"),
                http_user_agent=request.header(b"user-agent"),
                remote_user=remote_user(request.header(b"authorization")),
                request_time=now - request.started,
                http_host=request.header(b"host"),
                http_x_forwarded_for=request.header(b"x-forwarded-for"),
                upstream_addr=extra.get(EXTRA_UPSTREAM_ADDR),
                upstream_status=int(upstream_status)
                if upstream_status and upstream_status.isdigit()
                else None,
                upstream_response_time=_float_or_none(upstream_time),
                cache_status=extra.get(EXTRA_CACHE_STATUS),
            )
        )

    def _after(self, cycle: RequestCycle) -> None:
        """The response is complete: next request, or close."""
        self.requests += 1
        self.task = None
        self.cycle = None
        if self.phase == CLOSED_PHASE:
            return
        body_complete = cycle.body.done or cycle.body.drain_buffered()
        keep = (
            cycle.response.keep_alive
            and cycle.response.finished
            and body_complete
            and not cycle.broken
            and not self.must_close
            and not self.state.stopping
        )
        if not keep:
            # nginx's heuristic: linger only when the client may still be sending
            # (a body we did not read, a stream we stopped trusting).
            # A broken response (or 444) is cut at once: there is nothing to protect.
            linger = not cycle.broken and (not body_complete or self.must_close)
            self._close_after_response(linger=linger)
            return
        self.phase = IDLE
        self.parser.max_body_size = None
        self._arm(cycle.request.server.keepalive_timeout, self._on_header_timeout)
        self._next_request()

    # -- closing -----------------------------------------------------------------

    def _close_after_response(self, *, linger: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not linger or self._eof or not transport.can_write_eof():
            self.close_now()
            return
        self.phase = LINGER
        transport.write_eof()
        self._resume_reading()
        self._linger_until = self.loop.time() + LINGERING_TIME
        self._arm(LINGERING_TIMEOUT, self.close_now)

    def _linger_more(self) -> None:
        remaining = self._linger_until - self.loop.time()
        if remaining <= 0:
            self.close_now()
        else:
            self._arm(min(LINGERING_TIMEOUT, remaining), self.close_now)

    # -- small helpers -----------------------------------------------------------

    def _ignores_client_abort(self, cycle: RequestCycle | None) -> bool:
        if cycle is None or cycle.request.location is None:
            return False
        handler = cycle.request.location.handler
        return isinstance(handler, ProxyHandler) and handler.ignore_client_abort

    def _arm(self, delay: float, callback: Callable[[], object]) -> None:
        """One deadline per connection (header, keep-alive or linger), reset lazily.

        Every request moves the deadline twice; re-creating a loop timer each time
        cost more than the request's routing.  The loop timer only ever fires early:
        ``_on_timer`` then re-arms it for what is left.
        """
        if delay <= 0:
            self._timer_callback = None
            return
        deadline = self.loop.time() + delay
        self._deadline = deadline
        self._timer_callback = callback
        timer = self._timer
        if timer is None or self._timer_when > deadline:
            if timer is not None:
                timer.cancel()
            self._timer_when = deadline
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        callback = self._timer_callback
        if callback is None:
            return
        if self._deadline > self.loop.time():
            self._timer_when = self._deadline
            self._timer = self.loop.call_at(self._deadline, self._on_timer)
            return
        self._timer_callback = None
        callback()

    def _cancel_timer(self) -> None:
        self._timer_callback = None

    def _drop_timer(self) -> None:
        """The connection is over: let go of the loop's timer (and its reference to us)."""
        self._timer_callback = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _pause_reading(self) -> None:
        if not self._read_paused and not self.closed:
            assert self.transport is not None
            self.transport.pause_reading()
            self._read_paused = True

    def _resume_reading(self) -> None:
        if self._read_paused and not self.closed:
            assert self.transport is not None
            self.transport.resume_reading()
        self._read_paused = False

    def _wake_reader(self) -> None:
        waiter = self._data_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _expire(waiter: asyncio.Future[bool | None]) -> None:
    if not waiter.done():
        waiter.set_result(True)


def _server_name(server: Server) -> str:
    return server.server_name[0] if server.server_name else ""


def _float_or_none(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


# Placeholders until connection_made: a protocol that was never connected has no parser.
_UNSET_PARSER = RequestParser()
_UNSET_SERVER = Server()
