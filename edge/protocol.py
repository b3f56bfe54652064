"""The HTTP/1.x transport: one ``asyncio.Protocol`` per client connection.

Theory of operation
-------------------
Bytes go into the connection's ``httpproto.RequestParser`` (httptools plus
our framing and smuggling rules); we never parse HTTP here, and we never
decide what a request gets: that is ``edge.pipeline``.  This module keeps
the connection's phases, its one timer, flow control, lingering close and
the writes.  A connection is in one of five phases (``edge.state``):

``IDLE``     waiting for the first byte of a request (a fresh connection, or
             keep-alive between requests).  Idle connections are what
             ``worker_connections`` reclaims first, and what a graceful stop
             closes at once.
``HEAD``     some of a request head has arrived.  ``client_header_timeout``
             bounds the whole head (the timer is not reset per read, as in
             nginx), which is what defeats a slowloris.
``REQUEST``  a head was parsed and one task (``_serve``) runs the request
             through the pipeline.  Requests on one connection run strictly
             one after another, so pipelined responses come out in order; the
             next head is only looked at when the current response is complete.
``LINGER``   the response that ends the connection is written and our side
             is shut; we read and drop what the client still sends for a few
             seconds before closing, so its unread bytes do not turn into a
             RST that destroys the response (nginx's ``lingering_close``).
``CLOSED``

A request the pipeline can answer at once (``Pipeline.answer_now``: no body,
nothing to wait for) never leaves ``data_received``: no task is created and
the connection goes straight back to ``IDLE`` (or on to the next pipelined
head).

Flow control: while a request runs, unread bytes pile up in the parser; above
``HIGH_WATER`` the socket stops being read until the body reader (or the next
request) catches up.  Writes go through ``edge.writer.ResponseWriter``, which
awaits ``drain()`` when the transport's buffer is above its high-water mark,
for at most ``send_timeout``; file bodies go through ``edge.sendfile``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

from edge.accesslog import AccessEntry
from edge.body import RequestBodyReader
from edge.config.schema import Listen, Server
from edge.exchange import ClientGone, Request
from edge.handlers import special_response_body
from edge.pipeline import RequestCycle
from edge.sendfile import FileSender
from edge.state import CLOSED_PHASE, HEAD, IDLE, LINGER, REQUEST, ServerState
from edge.tunnel import ClientTunnel
from edge.writer import ResponseWriter
from httpproto import (
    CLOSED,
    NEED_DATA,
    EndOfMessage,
    HttpProtocolError,
    RequestHead,
    RequestParser,
    encode_response_head,
    reason_phrase,
)

__all__ = ["CLOSED_PHASE", "HEAD", "IDLE", "LINGER", "REQUEST", "HttpConnection"]

HIGH_WATER = 64 * 1024
LINGERING_TIME = 30.0  # nginx lingering_time: total time spent discarding
LINGERING_TIMEOUT = 5.0  # nginx lingering_timeout: wait for more client bytes
MAX_CAPTURED_LINE = 8192
FIRST_REQUEST_GRACE = 1.0  # graceful stop: how long a fresh connection may take to speak


class HttpConnection(asyncio.Protocol):
    """One client connection; see the module docstring."""

    high_water = HIGH_WATER

    def __init__(self, state: ServerState, listen: Listen) -> None:
        self.state = state
        self.listen = listen
        self.scheme = listen.scheme  # "https" on a listen with ssl (the transport is TLS)
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser: RequestParser = _UNSET_PARSER
        self.defaults: Server = _UNSET_SERVER
        self.files = FileSender(self)
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
        self.tunnel: ClientTunnel | None = None  # after a 101: the bytes are not HTTP

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
            if self.tunnel is not None:
                self.tunnel.feed(data)
                return
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
        if self.tunnel is not None:
            self.tunnel.feed_eof()
            return not self.listen.ssl
        self.parser.feed(b"")
        if self.phase in (IDLE, HEAD):
            self._next_request()
        else:
            self._wake_reader()
        # Keep our half open: a client may shut its side after sending a whole request
        # and still read the response.  (TLS has no half-close: asyncio then closes.)
        return not self.listen.ssl

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = CLOSED_PHASE
        self._drop_timer()
        self.files.close()
        self.state.forget(self)
        # Waiters re-check ``closed`` when woken; resolving them (rather than setting
        # an exception) leaves no unretrieved exception behind if the task is cancelled.
        self._wake_reader()
        self._wake_writer()
        if self.tunnel is not None:
            self.tunnel.feed_eof()
        task, cycle = self.task, self.cycle
        if task is not None and not task.done():
            if cycle is not None:
                cycle.client_gone = True
            if cycle is None or not cycle.ignores_client_abort():
                task.cancel()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    # -- what the pipeline, the body reader and the response writer use ----------

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

    def new_body(self, head: RequestHead, timeout: float) -> RequestBodyReader:
        return RequestBodyReader(self, head.content_length, head.chunked, timeout)

    def new_response(
        self, request: Request, keep_alive: bool, send_timeout: float
    ) -> ResponseWriter:
        return ResponseWriter(self, request, keep_alive, send_timeout)

    def set_body_limit(self, limit: int | None) -> None:
        self.parser.max_body_size = limit

    def start_tunnel(self, counter: object) -> ClientTunnel:
        """A 101 went out: from now on the client's bytes go to the tunnel, not the parser."""
        tunnel = self.tunnel = ClientTunnel(self, counter)
        self._cancel_timer()
        rest = self.parser.take_rest()
        if rest:
            tunnel.feed(rest)
        if self._eof:
            tunnel.feed_eof()
        self._resume_reading()
        return tunnel

    def pause_tunnel(self, paused: bool) -> None:
        if paused:
            self._pause_reading()
        else:
            self._resume_reading()

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
            raise self.timed_out("client timed out while sending response to client") from None
        finally:
            self._drain_waiter = None
        if self.closed:
            raise ClientGone("client closed the connection")

    def timed_out(self, what: str) -> ClientGone:
        """``send_timeout`` expired: log it, drop the connection, and say so to the caller."""
        self.log("info", what)
        self.abort()
        return ClientGone("send_timeout expired")

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

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def log(self, level: str, message: str, exc: BaseException | None = None) -> None:
        """An error-log line about this connection (the running request's, if there is one)."""
        self.state.pipeline.log(self, level, message, self.cycle, exc)

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
        parser = self.parser
        pipeline = self.state.pipeline
        while True:
            try:
                event = parser.next_event()
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
            head = cast(RequestHead, event)
            self._cancel_timer()
            started = self._head_started or time.time()
            self._head_started = 0.0
            try:
                keep = pipeline.answer_now(self, head, started)
            except Exception as exc:  # a bug there must not cost the request: take the task path
                self.log("alert", f"unexpected error answering at once: {exc!r}", exc)
                keep = None
            if keep is None:
                self.phase = REQUEST
                task = self.loop.create_task(self._serve(head, started))
                self.task = task
                self.state.track(task)
                return
            # Answered: the parser holds the (empty) body's end; then the next request.
            self.requests += 1
            end = parser.next_event()
            if keep <= 0 or self.closed or type(end) is not EndOfMessage:
                self.close_now()
                return
            self.phase = IDLE
            self._line = b""
            self._arm(keep, self._on_header_timeout)

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
        self.state.metrics.count_request(self.defaults, None, status)
        self.state.write_access(
            AccessEntry(
                remote_addr=self.peer_ip,
                time=time.time(),
                request_line=self._captured_line(),
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

    # -- one request by a task ---------------------------------------------------

    async def _serve(self, head: RequestHead, started: float) -> None:
        pipeline = self.state.pipeline
        cycle = pipeline.begin(self, head, started)
        self.cycle = cycle
        try:
            await pipeline.respond(self, cycle)
        finally:
            pipeline.finish(cycle)
        try:
            self._after(cycle)
        except Exception as exc:  # the task boundary: a bug here must not leave a hung client
            self.log("alert", f"unexpected error after the response: {exc!r}", exc)
            self.abort()

    def _after(self, cycle: RequestCycle) -> None:
        """The response is complete: next request, or close."""
        self.requests += 1
        self.task = None
        self.cycle = None
        if self.phase == CLOSED_PHASE:
            return
        if self.tunnel is not None:
            self.close_now()  # an upgraded connection ends with its tunnel
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

    # -- the connection's one timer -------------------------------------------------

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

    # -- flow control --------------------------------------------------------------

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


# Placeholders until connection_made: a protocol that was never connected has no parser.
_UNSET_PARSER = RequestParser()
_UNSET_SERVER = Server()
