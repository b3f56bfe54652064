"""One client connection inside a worker thread: bytes -> codec -> environ -> app -> bytes.

Theory of operation
-------------------
``Handler`` is owned by one worker thread (one uWSGI "core").  For a uwsgi
connection it serves exactly one request and closes, as the protocol has it.
For an HTTP connection it serves every request already buffered (pipelining),
then hands the connection back to the worker's poller if it may be kept
alive, so an idle keep-alive client never holds a thread.

Error handling (STYLE.md rules): a protocol error answers the status the error
carries and closes; an app exception is logged with its traceback and answered
with 500 while the worker lives on; a client that goes away costs one concise
log line, never a traceback.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import httpproto
from appserver.body import ClientDisconnected, InputStream, MalformedBody, buffer_body
from appserver.environ import environ_from_http, environ_from_vars
from appserver.loader import WSGIApp
from appserver.log import RequestRecord
from appserver.log import emit as write_log
from appserver.response import CLIENT_GONE_ERRORS, SOCKET_TIMEOUTS, ClientGone, Response
from appserver.scoreboard import CoreSlot
from appserver.staticmap import StaticMap, evaluate_request, send_static_body
from uwsgiproto import CLOSED, NEED_DATA, PacketDecoder, UwsgiProtocolError

LogLine = Callable[[str], None]

_FIRST_READ = 65536
# An HTTP body the app left unread is discarded up to this size to keep the
# connection; beyond it, closing is cheaper than reading.
_DRAIN_LIMIT = 65536


def error_response(status: int, detail: str = "", protocol: str = "HTTP/1.1") -> bytes:
    phrase = HTTPStatus(status).phrase
    body = f"{status} {phrase}\n{detail}\n".encode() if detail else f"{status} {phrase}\n".encode()
    head = (
        f"{protocol} {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def close_quietly(sock: socket.socket, linger: bool = False) -> None:
    """Close, first letting a client that is still sending read our answer (lingering close)."""
    try:
        if linger:
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(0.5)
            received = 0
            while received < 1 << 20:
                data = sock.recv(65536)
                if not data:
                    break
                received += len(data)
    except OSError:
        pass
    finally:
        sock.close()


class WorkerContext:
    """What every handler thread of one worker shares (read-only after boot)."""

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
        count_request: Callable[[], int],
    ) -> None:
        self.app = app
        self.base_environ = base_environ
        self.worker_id = worker_id
        self.pid = os.getpid()
        self.buffer_size = buffer_size
        self.post_buffering = post_buffering
        self.socket_timeout = socket_timeout
        self.static_map = static_map
        self.format_request = format_request
        self.count_request = count_request
        self.stopping = False


class HttpConnection:
    """An HTTP client connection and its parser, parked in the poller between requests."""

    __slots__ = (
        "sock",
        "parser",
        "remote_addr",
        "remote_port",
        "server_name",
        "server_port",
        "idle_since",
    )

    def __init__(
        self, sock: socket.socket, peer: Any, server_name: str, server_port: str, max_header: int
    ) -> None:
        self.sock = sock
        self.parser = httpproto.RequestParser(max_header_size=max_header)
        if isinstance(peer, tuple):
            self.remote_addr, self.remote_port = peer[0], str(peer[1])
        else:
            self.remote_addr, self.remote_port = "127.0.0.1", "0"
        self.server_name = server_name
        self.server_port = server_port
        self.idle_since = 0.0


class Handler:
    """Serves requests on one worker thread."""

    def __init__(self, context: WorkerContext, core: CoreSlot, core_index: int) -> None:
        self.context = context
        self.core = core
        self.core_index = core_index
        self.requests = 0

    # -- uwsgi ---------------------------------------------------------------

    def handle_uwsgi(self, sock: socket.socket, peer: Any) -> None:
        context = self.context
        decoder = PacketDecoder(max_vars_size=context.buffer_size)
        try:
            while True:
                event = decoder.next_event()
                if event is NEED_DATA:
                    decoder.feed(sock.recv(_FIRST_READ))
                    continue
                break
        except UwsgiProtocolError as exc:
            write_log(f"uwsgi request refused from {_peer_text(peer)}: {exc}")
            self._send_quietly(sock, error_response(exc.status_hint, str(exc)))
            close_quietly(sock, linger=True)
            return
        except OSError as exc:  # TimeoutError or BlockingIOError: socket-timeout
            write_log(
                f"uwsgi request from {_peer_text(peer)}: read failed before the vars arrived: {_os_error(exc)}"
            )
            sock.close()
            return
        if event is CLOSED:
            sock.close()  # a bare connect and close: a health check or a port scan
            return
        request_vars = event.vars  # type: ignore[union-attr]
        started = time.time()
        environ = environ_from_vars(context.base_environ, request_vars)
        length_text = request_vars.get("CONTENT_LENGTH")
        length = int(length_text) if length_text and length_text.isdigit() else 0
        preread = decoder.trailing_data
        recv = sock.recv
        buffered = None
        try:
            stream = InputStream(recv, length, preread)
            if length and context.post_buffering:
                environ["wsgi.input"] = buffered = buffer_body(stream, context.post_buffering)
            else:
                environ["wsgi.input"] = stream
        except (ClientDisconnected, OSError) as exc:
            write_log(
                f"{environ['REQUEST_METHOD']} {environ.get('REQUEST_URI', '')}: body not received: {_os_error(exc)}"
            )
            sock.close()
            return
        response = Response(
            sock,
            environ["SERVER_PROTOCOL"],
            head_only=environ["REQUEST_METHOD"] == "HEAD",
            send_timeout=context.socket_timeout,
        )
        try:
            self._serve(environ, response, started, len(request_vars), decoder.vars_size)
        finally:
            if buffered is not None:
                buffered.close()  # the post-buffering temp file (the app must not close it)
            sock.close()

    # -- HTTP ------------------------------------------------------------------

    def handle_http(self, connection: HttpConnection) -> bool:
        """Serve what this connection has sent; True to park it for keep-alive, False if closed."""
        context = self.context
        sock = connection.sock
        parser = connection.parser
        try:
            event = parser.next_event()
            while True:
                while event is httpproto.NEED_DATA:
                    parser.feed(sock.recv(_FIRST_READ))
                    event = parser.next_event()
                if event is httpproto.CLOSED:
                    sock.close()
                    return False
                if not self._serve_http_request(connection, event) or context.stopping:
                    close_quietly(sock)
                    return False
                event = parser.next_event()
                if event is httpproto.NEED_DATA:
                    return True  # nothing pipelined: park it in the poller
        except httpproto.HttpProtocolError as exc:
            write_log(f"bad HTTP request from {connection.remote_addr}: {exc}")
            self._send_quietly(sock, error_response(exc.status_hint, str(exc)))
            close_quietly(sock, linger=True)
            return False
        except OSError as exc:
            if not isinstance(exc, SOCKET_TIMEOUTS):
                write_log(f"HTTP client {connection.remote_addr}: {_os_error(exc)}")
            sock.close()
            return False

    def _serve_http_request(self, connection: HttpConnection, head: Any) -> bool:
        context = self.context
        started = time.time()
        environ = environ_from_http(
            context.base_environ,
            method=head.method,
            target=head.target,
            path=head.path,
            query=head.query,
            http_version=head.http_version,
            headers=head.headers,
            remote_addr=connection.remote_addr,
            remote_port=connection.remote_port,
            server_name=connection.server_name,
            server_port=connection.server_port,
        )
        sock = connection.sock
        parser = connection.parser
        if head.expect_continue and (head.content_length or head.chunked):
            self._send_quietly(sock, b"HTTP/1.1 100 Continue\r\n\r\n")

        def read_body(size: int) -> bytes:
            while True:
                try:
                    event = parser.next_event()
                except httpproto.HttpProtocolError as exc:
                    raise MalformedBody(f"malformed request body: {exc}") from exc
                if event is httpproto.NEED_DATA:
                    data = sock.recv(size)
                    if not data:
                        raise ClientDisconnected("client disconnected in the middle of the body")
                    parser.feed(data)
                    continue
                if isinstance(event, httpproto.Data):
                    return event.data
                return b""  # EndOfMessage

        body = InputStream(read_body, None)
        buffered = None
        try:
            if context.post_buffering and (head.content_length or head.chunked):
                environ["wsgi.input"] = buffered = buffer_body(body, context.post_buffering)
            else:
                environ["wsgi.input"] = body
        except (ClientDisconnected, OSError) as exc:
            write_log(
                f"{head.method} {environ['REQUEST_URI']}: body not received: {_os_error(exc)}"
            )
            if isinstance(exc, MalformedBody):
                self._send_quietly(sock, error_response(400, str(exc)))
            return False
        response = Response(
            sock,
            "HTTP/1.1" if head.http_version == "1.1" else "HTTP/1.0",
            head_only=head.method == "HEAD",
            http_framing=True,
            keep_alive=head.keep_alive and not context.stopping,
            send_timeout=context.socket_timeout,
        )
        try:
            self._serve(environ, response, started, len(head.headers), 0)
        finally:
            if buffered is not None:
                buffered.close()  # the post-buffering temp file (the app must not close it)
        if not response.keep_alive:
            return False
        try:
            # Whatever body the app did not read stands between us and the next request.
            return body.drain(_DRAIN_LIMIT)
        except (ClientDisconnected, httpproto.HttpProtocolError, OSError):
            return False

    # -- shared ----------------------------------------------------------------

    def _serve(
        self,
        environ: dict[str, Any],
        response: Response,
        started: float,
        vars_count: int,
        vars_bytes: int,
    ) -> None:
        context = self.context
        core = self.core
        method = environ["REQUEST_METHOD"]
        uri = environ.get("REQUEST_URI") or environ["PATH_INFO"]
        core.begin(started, f"{method} {uri}".encode("latin-1", "replace"))
        failed = False
        static = False
        try:
            static = context.static_map is not None and self._serve_static(environ, response)
            if not static:
                failed = self._call_app(environ, response)
        finally:
            finished = time.time()
            core.end(finished - started, response.body_bytes, failed, static)
            self.requests += 1
            total = context.count_request()
            if context.format_request is not None:
                record = RequestRecord(
                    pid=context.pid,
                    worker_id=context.worker_id,
                    request_number=self.requests,
                    total_requests=total,
                    remote_addr=environ.get("REMOTE_ADDR", ""),
                    remote_user=environ.get("REMOTE_USER", ""),
                    vars_count=vars_count,
                    vars_bytes=vars_bytes,
                    started_at=started,
                    method=method,
                    uri=uri,
                    response_bytes=response.body_bytes,
                    msecs=(finished - started) * 1000.0,
                    protocol=environ.get("SERVER_PROTOCOL", ""),
                    status=response.status_code,
                    headers_count=len(response.headers),
                    headers_bytes=response.header_bytes,
                    core=self.core_index,
                    app_id=-1 if static else 0,
                    via="sendfile" if static else "",
                )
                write_log(context.format_request(record))

    def _call_app(self, environ: dict[str, Any], response: Response) -> bool:
        """Run the app and send its response; True if it failed."""
        result = None
        try:
            result = self.context.app(environ, response.start_response)
            response.send_result(result)
            return False
        except ClientGone as exc:
            response.keep_alive = False
            write_log(
                f"{environ['REQUEST_METHOD']} {environ.get('REQUEST_URI', '')}: {exc} after {response.body_bytes} bytes"
            )
            return False
        except ClientDisconnected as exc:
            response.keep_alive = False
            write_log(f"{environ['REQUEST_METHOD']} {environ.get('REQUEST_URI', '')}: {exc}")
            if isinstance(exc, MalformedBody) and not response.headers_sent:
                response.status_code = 400
                self._send_quietly(response.sock, error_response(400, str(exc), response.protocol))
            return False
        except Exception:
            response.keep_alive = False
            write_log(
                f"error in app on {environ['REQUEST_METHOD']} {environ.get('REQUEST_URI', '')}:\n"
                + traceback.format_exc().rstrip()
            )
            if not response.headers_sent:
                response.status_code = 500
                response.headers = []
                self._send_quietly(response.sock, error_response(500, protocol=response.protocol))
            return True
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    write_log("error in the app's close():\n" + traceback.format_exc().rstrip())

    def _serve_static(self, environ: dict[str, Any], response: Response) -> bool:
        static_map = self.context.static_map
        assert static_map is not None
        static_file = static_map.lookup(environ["PATH_INFO"])
        if static_file is None:
            return False
        answer = evaluate_request(static_file, environ)
        if answer is None:
            return False
        try:
            handle = open(static_file.path, "rb")
        except OSError:
            return False  # vanished since the lookup: let the app answer
        with handle:
            if not static_file.same_file(os.fstat(handle.fileno())):
                return False  # replaced between stat and open: its headers would lie
            response.start_response(answer.status, answer.headers)
            response.head_only = not answer.send_body
            if answer.send_body:
                response._prepare_head(answer.content_length)
                response._flush_head(b"")
                try:
                    response.body_bytes = send_static_body(
                        response.sock, handle, answer, self.context.socket_timeout
                    )
                except CLIENT_GONE_ERRORS as exc:
                    response.keep_alive = False
                    write_log(
                        f"GET {environ.get('REQUEST_URI', '')}: client went away during sendfile: {exc}"
                    )
                else:
                    if response.body_bytes != answer.content_length:
                        response.keep_alive = False  # the file shrank: the framing is off
            else:
                response.finish(0)
        return True

    @staticmethod
    def _send_quietly(sock: socket.socket, data: bytes) -> None:
        try:
            sock.sendall(data)
        except OSError:
            pass


def _peer_text(peer: Any) -> str:
    if isinstance(peer, tuple):
        return f"{peer[0]}:{peer[1]}"
    return "unix socket"


def _os_error(exc: BaseException) -> str:
    if isinstance(exc, SOCKET_TIMEOUTS):
        return "timed out (socket-timeout)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
