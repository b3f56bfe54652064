"""Client connections: bytes in, exchanges out.

Theory of operation
-------------------
A connection object wraps one accepted socket and its codec.  The poller
queues it, a handler thread serves it (``Handler.serve``), and between
requests it may be parked in the poller again, so an idle connection holds no
thread.  ``next_request()`` reads one request head and returns an
``Exchange``: the environ, ``wsgi.input`` and the ``Response`` to fill, with
the keep-alive decision already taken from the protocol and from the worker.

- ``UwsgiConnection`` speaks the uwsgi protocol.  Without the
  ``WSGISTACK_KEEPALIVE`` offer a packet gets a raw response and the
  connection closes, as nginx expects.  With it (docs/uwsgi-keepalive.md) the
  response is framed, says ``Wsgistack-Keepalive: timeout=N``, and the
  connection is kept for the next packet.
- ``HttpConnection`` speaks HTTP/1.x (``http-socket``) with keep-alive and
  pipelining.

A request the codec refuses comes back as an Exchange whose ``error`` holds
the status (the codec error's ``status_hint``) and the message, which goes to
the log only.  None means the connection has nothing more to give: the peer
closed it, or a read failed (logged here when it is news).

Deadlines: socket-timeout bounds each read and write (SO_RCVTIMEO/SO_SNDTIMEO
on the socket).  On top of it, ``request-header-timeout`` bounds the whole
head and ``request-body-timeout`` the whole body (plus one second per KiB
received), so a client that trickles a byte a second cannot hold a thread.
A read that could outlast its deadline waits with poll() for the time left.

The worker decides the rest of keep-alive: ``WorkerContext.admit`` counts
each request and, once the worker is stopping or reached max-requests, every
response closes its connection.
"""

from __future__ import annotations

import itertools
import os
import select
import socket
import time
from collections.abc import Callable
from typing import Any, BinaryIO

import httpproto
from appserver.body import (
    DRAIN_LIMIT,
    BodyTimeout,
    ClientDisconnected,
    InputStream,
    MalformedBody,
    buffer_body,
)
from appserver.environ import environ_from_http, environ_from_vars, http_listener_environ
from appserver.listeners import Listener
from appserver.loader import WSGIApp
from appserver.log import RequestRecord
from appserver.log import emit as write_log
from appserver.response import SOCKET_TIMEOUTS, Response
from appserver.staticmap import StaticMap
from uwsgiproto import (
    HEADER_SIZE,
    NEED_DATA,
    PacketDecoder,
    Request,
    UwsgiProtocolError,
    parse_packet,
)
from uwsgiproto.keepalive import OFFER_VAR, OFFER_VERSION, answer_line

_READ_SIZE = 65536
# request-body-timeout grows by one second per this many bytes received.
BODY_BYTES_PER_SECOND = 1024
_monotonic = time.monotonic


def error_response(status: int, protocol: str = "HTTP/1.1") -> bytes:
    """A complete error reply: the status line's text as the body, never a parser's message."""
    phrase = httpproto.reason_phrase(status)
    body = f"{status} {phrase}\n".encode()
    head = (
        f"{protocol} {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


# A lingering close reads (and drops) at most this much, for at most this long: enough
# for a client still sending a body to finish and read our answer, not enough for a
# slow one to hold the thread (nginx's lingering_time, much shorter).
LINGER_BYTES = 1 << 20
LINGER_SECONDS = 1.0


def close_quietly(sock: socket.socket, linger: bool = False) -> None:
    """Close, first letting a client that is still sending read our answer (lingering close).

    Closing a socket with unread bytes makes the kernel send a reset, which can
    destroy the answer before the client has read it.
    """
    try:
        if linger:
            sock.shutdown(socket.SHUT_WR)
            deadline = _monotonic() + LINGER_SECONDS
            received = 0
            while received < LINGER_BYTES:
                left = deadline - _monotonic()
                if left <= 0:
                    break
                sock.settimeout(min(left, 0.5))
                data = sock.recv(65536)
                if not data:
                    break
                received += len(data)
    except OSError:
        pass
    finally:
        sock.close()


def send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


class HeadTimeout(Exception):
    """The request head did not arrive within request-header-timeout."""


def _wait_readable(sock: socket.socket, seconds: float) -> bool:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(max(seconds, 0.0) * 1000.0))


class WorkerContext:
    """What every connection and handler thread of one worker shares.

    Read-only after boot, except ``draining`` (set once: the worker is stopping,
    or reached max-requests) and the request counter.
    """

    def __init__(
        self,
        *,
        app: WSGIApp,
        base_environ: dict[str, Any],
        worker_id: int,
        buffer_size: int,
        post_buffering: int,
        socket_timeout: float,
        static_map: StaticMap | None,
        format_request: Callable[[RequestRecord], str] | None,
        header_timeout: float = 0.0,
        body_timeout: float = 0.0,
        keepalive: int = 0,
        max_requests: int = 0,
        on_max_requests: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.base_environ = base_environ
        self.worker_id = worker_id
        self.pid = os.getpid()
        self.buffer_size = buffer_size
        self.post_buffering = post_buffering
        self.socket_timeout = socket_timeout
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.keepalive = keepalive  # idle seconds a kept connection waits; 0 = no keep-alive
        self.keepalive_answer = answer_line(keepalive) if keepalive > 0 else None
        self.static_map = static_map
        self.format_request = format_request
        self.max_requests = max_requests
        self.on_max_requests = on_max_requests
        self._count = itertools.count(1).__next__  # atomic under the GIL
        self.stopping = False
        # No request after the current ones: stopping, or max-requests reached.
        self.draining = False
        # The body of a request without one: never read from, so one serves them all.
        self.empty_body = InputStream(_no_body, 0)

    def admit(self) -> int:
        """Count one request in; its number in this worker.

        The request that reaches max-requests turns ``draining`` on, so it and
        every later one close their connection, and tells the worker to stop
        accepting.
        """
        number = self._count()
        if number == self.max_requests:
            self.draining = True
            if self.on_max_requests is not None:
                self.on_max_requests()
        return number


def _no_body(size: int) -> bytes:
    return b""


class ExchangeError:
    """A request refused before it reached the app: the status to answer and the log line."""

    __slots__ = ("status", "message")

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


class Exchange:
    """One request on a connection, from its head to the end of its response."""

    __slots__ = (
        "environ",
        "body",
        "spooled",
        "response",
        "error",
        "started",
        "number",
        "vars_count",
        "vars_bytes",
    )

    def __init__(
        self,
        environ: dict[str, Any],
        body: InputStream,
        spooled: BinaryIO | None,
        response: Response | None,
        error: ExchangeError | None,
        started: float,
        number: int,
        vars_count: int,
        vars_bytes: int,
    ) -> None:
        self.environ = environ
        self.body = body  # the body as read from the client (wsgi.input, unless spooled)
        self.spooled = spooled  # post-buffering's copy, which is wsgi.input then
        self.response = response
        self.error = error
        self.started = started  # epoch seconds
        self.number = number  # this worker's request count, this one included
        self.vars_count = vars_count
        self.vars_bytes = vars_bytes

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may serve another request after this one."""
        return self.response is not None and self.response.keep_alive


def _refused(status: int, message: str) -> Exchange:
    return Exchange({}, _REFUSED_BODY, None, None, ExchangeError(status, message), 0.0, 0, 0, 0)


_REFUSED_BODY = InputStream(_no_body, 0)


class ClientConnection:
    """What both protocols share: the socket, the deadlines, the end of an exchange."""

    __slots__ = (
        "sock",
        "peer",
        "context",
        "environ",
        "idle_since",
        "linger",
        "_body_deadline",
        "_body_received",
    )

    def __init__(
        self, sock: socket.socket, peer: Any, context: WorkerContext, environ: dict[str, Any]
    ) -> None:
        self.sock = sock
        self.peer = peer
        self.context = context
        self.environ = environ  # the listener's environ template
        self.idle_since = 0.0
        self.linger = False  # close with a lingering close: the client may still be sending
        self._body_deadline = 0.0
        self._body_received = 0

    def next_request(self) -> Exchange | None:
        raise NotImplementedError

    def has_pending(self) -> bool:
        """True when the next request's bytes are already buffered (pipelined)."""
        return False

    @property
    def peer_text(self) -> str:
        peer = self.peer
        if isinstance(peer, tuple):
            return f"{peer[0]}:{peer[1]}"
        return "unix socket"

    # -- reads bounded by the deadlines ------------------------------------------

    def _head_deadline(self) -> float:
        timeout = self.context.header_timeout
        return _monotonic() + timeout if timeout else 0.0

    def _recv_head(self, deadline: float) -> bytes:
        if deadline:
            left = deadline - _monotonic()
            if left < self.context.socket_timeout and (
                left <= 0 or not _wait_readable(self.sock, left)
            ):
                raise HeadTimeout
        return self.sock.recv(_READ_SIZE)

    def _recv_body(self, size: int) -> bytes:
        """One read of the request body, within request-body-timeout."""
        timeout = self.context.body_timeout
        if timeout:
            now = _monotonic()
            deadline = self._body_deadline
            if not deadline:
                # The clock starts at the first read: an app may work before it reads.
                deadline = self._body_deadline = now + timeout
            left = deadline + self._body_received / BODY_BYTES_PER_SECOND - now
            if left < self.context.socket_timeout and (
                left <= 0 or not _wait_readable(self.sock, left)
            ):
                raise BodyTimeout(
                    f"request body not received within request-body-timeout "
                    f"({timeout:g} s + 1 s per KiB): {self._body_received} bytes came"
                )
        data = self.sock.recv(size)
        self._body_received += len(data)
        return data

    def _start_body(self) -> None:
        self._body_deadline = 0.0
        self._body_received = 0

    def _spool(
        self, exchange_body: InputStream, method: str, uri: str
    ) -> BinaryIO | Exchange | None:
        """post-buffering: the whole body now.  An Exchange is an error to answer; None: close."""
        try:
            return buffer_body(exchange_body, self.context.post_buffering)
        except (ClientDisconnected, OSError) as exc:
            message = f"{method} {uri}: body not received: {os_error_text(exc)}"
            status = exc.status if isinstance(exc, ClientDisconnected) else 0
            if status:
                return _refused(status, message)
            write_log(message)
            return None

    # -- the end of an exchange -------------------------------------------------

    def finish(self, exchange: Exchange) -> bool:
        """Clean up after a response; True if the connection can serve another request."""
        if exchange.spooled is not None:
            exchange.spooled.close()  # the post-buffering temp file (the app must not close it)
        body = exchange.body
        if body.exhausted:
            response = exchange.response
            return response is not None and response.keep_alive
        response = exchange.response
        if response is not None and response.keep_alive:
            try:
                # Whatever body the app did not read stands between us and the next request.
                if body.drain(DRAIN_LIMIT):
                    return True
            except (ClientDisconnected, httpproto.HttpProtocolError, OSError):
                return False
        self.linger = not body.failed  # the client may still be sending the body
        return False

    def refuse(self, error: ExchangeError) -> None:
        """Answer a refused request with its status (the message goes to the log) and close."""
        write_log(error.message)
        send_quietly(self.sock, error_response(error.status))
        close_quietly(self.sock, linger=True)

    def close(self) -> None:
        if self.linger:
            close_quietly(self.sock, linger=True)
        else:
            self.sock.close()


class UwsgiConnection(ClientConnection):
    """A uwsgi peer (nginx, edge, uwsgi_curl): one packet, or several with the keep-alive offer."""

    __slots__ = ("_leftover",)

    def __init__(
        self, sock: socket.socket, peer: Any, context: WorkerContext, environ: dict[str, Any]
    ) -> None:
        # ClientConnection.__init__ inlined: one connection per request behind nginx.
        self.sock = sock
        self.peer = peer
        self.context = context
        self.environ = environ
        self.idle_since = 0.0
        self.linger = False
        self._body_deadline = 0.0
        self._body_received = 0
        self._leftover = b""  # bytes after the last body: the start of the next packet

    def has_pending(self) -> bool:
        return bool(self._leftover)

    def next_request(self) -> Exchange | None:
        context = self.context
        try:
            data = self._leftover
            if data:
                self._leftover = b""
            else:
                # The first read needs no deadline of its own: socket-timeout bounds it,
                # and request-header-timeout counts from the first byte.
                data = self.sock.recv(_READ_SIZE)
                if not data:
                    return None  # a bare connect and close (a health check), or an idle kept one
            parsed = parse_packet(data, context.buffer_size)
            if parsed is not None:
                request, end = parsed
                trailing = data[end:]
                vars_size = end - HEADER_SIZE
            else:
                decoder = PacketDecoder(max_vars_size=context.buffer_size)
                decoder.feed(data)
                deadline = self._head_deadline()
                event = decoder.next_event()
                while event is NEED_DATA:
                    decoder.feed(self._recv_head(deadline))
                    event = decoder.next_event()
                if type(event) is not Request:
                    return None  # CLOSED cannot follow data; for the type checker
                request = event
                trailing = decoder.trailing_data
                vars_size = decoder.vars_size
        except UwsgiProtocolError as exc:
            return _refused(exc.status_hint, f"uwsgi request refused from {self.peer_text}: {exc}")
        except HeadTimeout:
            return _refused(
                408,
                f"uwsgi request from {self.peer_text}: vars not received within "
                f"request-header-timeout ({context.header_timeout:g} s)",
            )
        except OSError as exc:  # TimeoutError or BlockingIOError: socket-timeout
            write_log(
                f"uwsgi request from {self.peer_text}: read failed before the vars arrived: "
                f"{os_error_text(exc)}"
            )
            return None
        request_vars = request.vars
        started = time.time()
        vars_count = len(request_vars)
        offer = request_vars.pop(OFFER_VAR, None) if OFFER_VAR in request_vars else None
        length_text = request_vars.get("CONTENT_LENGTH")
        length = 0
        if length_text:
            if length_text.isascii() and length_text.isdigit():
                length = int(length_text)
            else:
                offer = None  # where this body ends is unknown: the connection cannot be kept
        number = context.admit()
        environ = environ_from_vars(self.environ, request_vars)
        answer = context.keepalive_answer
        if offer != OFFER_VERSION or context.draining:
            answer = None
        if length:
            if len(trailing) > length:
                self._leftover = trailing[length:]
                trailing = trailing[:length]
            self._start_body()
            body = InputStream(self._recv_body, length, trailing)
        else:
            if trailing:
                self._leftover = trailing
            body = context.empty_body
        spooled = None
        if length and context.post_buffering:
            outcome = self._spool(body, environ["REQUEST_METHOD"], environ.get("REQUEST_URI", ""))
            if outcome is None or isinstance(outcome, Exchange):
                return outcome
            environ["wsgi.input"] = spooled = outcome
        else:
            environ["wsgi.input"] = body
        response = Response(
            self.sock,
            environ["SERVER_PROTOCOL"],
            head_only=environ["REQUEST_METHOD"] == "HEAD",
            keep_alive=answer is not None,
            send_timeout=context.socket_timeout,
            keepalive_answer=answer,
            request_body=body if answer is not None else None,
        )
        return Exchange(
            environ, body, spooled, response, None, started, number, vars_count, vars_size
        )


class HttpConnection(ClientConnection):
    """An HTTP/1.x client on ``http-socket``: keep-alive and pipelining."""

    __slots__ = ("parser", "remote_addr", "remote_port", "_peeked")

    def __init__(
        self,
        sock: socket.socket,
        peer: Any,
        context: WorkerContext,
        environ: dict[str, Any],
        max_header: int,
    ) -> None:
        super().__init__(sock, peer, context, environ)
        self.parser = httpproto.RequestParser(max_header_size=max_header)
        if isinstance(peer, tuple):
            self.remote_addr, self.remote_port = peer[0], str(peer[1])
        else:
            self.remote_addr, self.remote_port = "127.0.0.1", "0"
        self._peeked: httpproto.Event | None = None

    def has_pending(self) -> bool:
        # The parser only parses in next_event: ask it, and keep what it said.
        parser = self.parser
        try:
            event = parser.next_event()
            while type(event) is httpproto.EndOfMessage:
                event = parser.next_event()
        except httpproto.HttpProtocolError:
            return True  # the parser raises it again in next_request, which answers it
        self._peeked = event
        return event is not httpproto.NEED_DATA

    def next_request(self) -> Exchange | None:
        context = self.context
        parser = self.parser
        try:
            event = self._peeked
            if event is None:
                event = parser.next_event()
            else:
                self._peeked = None
            if event is httpproto.NEED_DATA:
                # The first read needs no deadline of its own (see UwsgiConnection).
                parser.feed(self.sock.recv(_READ_SIZE))
                event = parser.next_event()
            if type(event) is not httpproto.RequestHead:
                deadline = self._head_deadline()
                while True:
                    if event is httpproto.NEED_DATA:
                        parser.feed(self._recv_head(deadline))
                    elif type(event) is httpproto.EndOfMessage:
                        pass  # the end of a body read to its Content-Length
                    elif type(event) is httpproto.RequestHead:
                        break
                    else:
                        return None  # CLOSED: the client is done
                    event = parser.next_event()
        except httpproto.HttpProtocolError as exc:
            return _refused(exc.status_hint, f"bad HTTP request from {self.remote_addr}: {exc}")
        except HeadTimeout:
            return _refused(
                408,
                f"HTTP client {self.remote_addr}: request head not received within "
                f"request-header-timeout ({context.header_timeout:g} s)",
            )
        except OSError as exc:
            if not isinstance(exc, SOCKET_TIMEOUTS):
                write_log(f"HTTP client {self.remote_addr}: {os_error_text(exc)}")
            return None
        head = event
        started = time.time()
        number = context.admit()
        environ = environ_from_http(
            self.environ,
            method=head.method,
            target=head.target,
            path=head.path,
            query=head.query,
            http_version=head.http_version,
            headers=head.headers,
            remote_addr=self.remote_addr,
            remote_port=self.remote_port,
        )
        if head.chunked or head.content_length:
            if head.expect_continue:
                send_quietly(self.sock, httpproto.CONTINUE)
            self._start_body()
            body = InputStream(self._read_body, None if head.chunked else head.content_length)
        else:
            body = context.empty_body
        spooled = None
        if body is not context.empty_body and context.post_buffering:
            outcome = self._spool(body, head.method, environ["REQUEST_URI"])
            if outcome is None or isinstance(outcome, Exchange):
                return outcome
            environ["wsgi.input"] = spooled = outcome
        else:
            environ["wsgi.input"] = body
        response = Response(
            self.sock,
            "HTTP/1.1" if head.http_version == "1.1" else "HTTP/1.0",
            head_only=head.method == "HEAD",
            http_framing=True,
            keep_alive=head.keep_alive and context.keepalive > 0 and not context.draining,
            send_timeout=context.socket_timeout,
            request_body=body,
        )
        return Exchange(
            environ, body, spooled, response, None, started, number, len(head.headers), 0
        )

    def _read_body(self, size: int) -> bytes:
        parser = self.parser
        while True:
            try:
                event = parser.next_event()
            except httpproto.HttpProtocolError as exc:
                raise MalformedBody(f"malformed request body: {exc}") from exc
            if event is httpproto.NEED_DATA:
                data = self._recv_body(size)
                if not data:
                    raise ClientDisconnected("client disconnected in the middle of the body")
                parser.feed(data)
                continue
            if type(event) is httpproto.Data:
                return event.data
            return b""  # EndOfMessage


class Endpoint:
    """One listener as a worker serves it: its protocol and its environ template."""

    __slots__ = ("listener", "sock", "family", "context", "environ", "http", "max_header")

    def __init__(self, listener: Listener, context: WorkerContext) -> None:
        self.listener = listener
        self.sock = listener.sock
        self.family = int(listener.sock.family)
        self.context = context
        self.http = listener.protocol == "http"  # "router" (the --http front) speaks uwsgi
        if self.http:
            name, port = listener.server_name_port
            self.environ = http_listener_environ(context.base_environ, name, port)
        else:
            self.environ = context.base_environ
        self.max_header = max(context.buffer_size, 8192)

    def connection(self, sock: socket.socket, peer: Any) -> ClientConnection:
        if self.http:
            return HttpConnection(sock, peer, self.context, self.environ, self.max_header)
        return UwsgiConnection(sock, peer, self.context, self.environ)


def os_error_text(exc: BaseException) -> str:
    if isinstance(exc, SOCKET_TIMEOUTS):
        return "timed out (socket-timeout)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
