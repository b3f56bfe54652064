"""One worker thread serving connections: the exchange loop.

Theory of operation
-------------------
``Handler.serve(connection)`` is the whole request path, the same for both
protocols: take the next exchange from the connection, answer it (the
static-map or the app), write one complete log record, then either go on
(a pipelined request is already buffered), hand the connection back to be
parked in the poller (keep-alive), or close it.

Error handling (STYLE.md rules): a refused request answers the status its
error carries and closes, the message going to the log only; an app
exception is logged as one summary line (request ID, exception, file:line)
followed by its traceback, and answered with 500 while the worker lives on; a
client that goes away costs one concise log line, never a traceback.
"""

from __future__ import annotations

import os
import time
from typing import Any

from appserver.body import ClientDisconnected
from appserver.connection import (
    ClientConnection,
    Exchange,
    WorkerContext,
    error_response,
    send_quietly,
)
from appserver.environ import RequestIds
from appserver.log import RequestRecord, emit_app_exception, emit_request
from appserver.log import emit as write_log
from appserver.response import CLIENT_GONE_ERRORS, ClientGone, Response
from appserver.scoreboard import CoreSlot
from appserver.staticmap import evaluate_request, send_static_body


class Handler:
    """Serves connections on one worker thread (one uWSGI "core")."""

    def __init__(self, context: WorkerContext, core: CoreSlot, core_index: int) -> None:
        self.context = context
        self.core = core
        self.core_index = core_index
        self.requests = 0
        self.request_ids = RequestIds()  # this thread's own: no lock

    def serve(self, connection: ClientConnection) -> bool:
        """Serve what the connection sends; True to park it for keep-alive, False once closed."""
        context = self.context
        while True:
            exchange = connection.next_request()
            if exchange is None:
                connection.close()
                return False
            if exchange.error is not None:
                connection.refuse(exchange.error)
                return False
            self._answer(exchange)
            if not connection.finish(exchange) or context.draining:
                connection.close()
                return False
            if not connection.has_pending():
                return True  # nothing pipelined: park it in the poller

    # -- one exchange ------------------------------------------------------------

    def _answer(self, exchange: Exchange) -> None:
        context = self.context
        environ = exchange.environ
        response = exchange.response
        assert response is not None
        started = exchange.started
        method = environ["REQUEST_METHOD"]
        uri = environ.get("REQUEST_URI") or environ["PATH_INFO"]
        environ["REQUEST_ID"] = self.request_ids.for_environ(environ)
        self.core.begin(started, f"{method} {uri}".encode("latin-1", "replace"))
        failed = False
        static = False
        try:
            static = context.static_map is not None and self._serve_static(environ, response)
            if not static:
                failed = self._call_app(environ, response)
        finally:
            finished = time.time()
            self.core.end(finished - started, response.body_bytes, failed, static)
            self.requests += 1
            if context.format_request is not None:
                record = self._record(exchange, finished, static)
                emit_request(context.format_request(record), record)

    def _record(self, exchange: Exchange, finished: float, static: bool) -> RequestRecord:
        environ = exchange.environ
        response = exchange.response
        assert response is not None
        length = environ.get("CONTENT_LENGTH", "")
        return RequestRecord(
            pid=self.context.pid,
            worker_id=self.context.worker_id,
            request_number=self.requests,
            total_requests=exchange.number,
            remote_addr=environ.get("REMOTE_ADDR", ""),
            remote_user=environ.get("REMOTE_USER", ""),
            vars_count=exchange.vars_count,
            vars_bytes=exchange.vars_bytes,
            started_at=exchange.started,
            method=environ["REQUEST_METHOD"],
            uri=environ.get("REQUEST_URI") or environ["PATH_INFO"],
            response_bytes=response.body_bytes,
            msecs=(finished - exchange.started) * 1000.0,
            protocol=environ.get("SERVER_PROTOCOL", ""),
            status=response.status_code,
            headers_count=len(response.headers),
            headers_bytes=response.header_bytes,
            core=self.core_index,
            app_id=-1 if static else 0,
            via="sendfile" if static else "",
            host=environ.get("HTTP_HOST", ""),
            user_agent=environ.get("HTTP_USER_AGENT", ""),
            referer=environ.get("HTTP_REFERER", ""),
            content_length=int(length) if length.isascii() and length.isdigit() else 0,
            request_id=environ.get("REQUEST_ID", ""),
        )

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
                f"{environ['REQUEST_METHOD']} {environ.get('REQUEST_URI', '')}: {exc} "
                f"after {response.body_bytes} bytes"
            )
            return False
        except ClientDisconnected as exc:
            response.keep_alive = False
            write_log(f"{environ['REQUEST_METHOD']} {environ.get('REQUEST_URI', '')}: {exc}")
            if exc.status and not response.headers_sent:
                # A bad chunk (400) or a body too slow to arrive (408): the client is still there.
                response.status_code = exc.status
                send_quietly(response.sock, error_response(exc.status, response.protocol))
            return False
        except Exception as exc:
            response.keep_alive = False
            emit_app_exception(
                exc,
                environ.get("REQUEST_ID", ""),
                environ["REQUEST_METHOD"],
                environ.get("REQUEST_URI") or environ.get("PATH_INFO", ""),
            )
            if not response.headers_sent:
                response.status_code = 500
                response.headers = []
                send_quietly(response.sock, error_response(500, response.protocol))
            return True
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:
                    emit_app_exception(
                        exc,
                        environ.get("REQUEST_ID", ""),
                        environ["REQUEST_METHOD"],
                        environ.get("REQUEST_URI") or environ.get("PATH_INFO", ""),
                        where="in close()",
                    )

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
