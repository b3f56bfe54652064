"""start_response, write() and the response body, per PEP 3333.

Theory of operation
-------------------
A ``Response`` collects the status and headers from ``start_response`` and
sends nothing until the first non-empty body chunk (or the end), so that an
app may still replace them with ``exc_info``.  The head and the first chunk
leave in one ``sendall``; a list body (the common ``[body]``) up to
``JOIN_LIMIT`` bytes leaves whole with its head, one write per response.

Three framings, decided when the head is built:
- ``raw`` (uwsgi protocol, and HTTP connections that will close): the app's
  headers go out as they are and the end of the body is the end of the
  connection, which is what nginx expects from a uwsgi peer.
- ``http`` (``http-socket`` with keep-alive): the body must be delimited, so
  the response gets a Content-Length when the app gave one or when the body is
  a list we can measure, and is chunked otherwise (HTTP/1.1), or the
  connection closes (HTTP/1.0).
- ``uwsgi keep-alive`` (a uwsgi packet that offered WSGISTACK_KEEPALIVE,
  docs/uwsgi-keepalive.md): framed as ``http`` on HTTP/1.1, with the
  ``Wsgistack-Keepalive`` header and no Date or Connection header.  When the
  connection cannot be kept after all (the app said ``Connection: close``, it
  left too much body unread, the worker is stopping) the offer is declined:
  the response goes out ``raw`` and the connection closes.

A framed response keeps its promise: bytes past the declared Content-Length
are not sent, and a body that ends short of it closes the connection, since
the client would otherwise read the next response as the rest of this one.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from typing import IO, Any

from appserver.body import DRAIN_LIMIT, InputStream
from httpproto import http_date

# Headers the server owns on a keep-alive connection (RFC 9110 §7.6.1).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
)
_NO_BODY_STATUSES = frozenset({204, 304})
# A list body up to this size is joined and sent with its head in one write.
JOIN_LIMIT = 262144


class FileWrapper:
    """``wsgi.file_wrapper``: lets the server send a file with sendfile()."""

    __slots__ = ("filelike", "blksize")

    def __init__(self, filelike: IO[bytes], blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Any:
        read = self.filelike.read
        blksize = self.blksize
        while True:
            data = read(blksize)
            if not data:
                return
            yield data

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


# What an expired socket-timeout raises: TimeoutError under a Python socket timeout,
# BlockingIOError (EAGAIN) under the kernel's SO_RCVTIMEO/SO_SNDTIMEO.
SOCKET_TIMEOUTS: tuple[type[OSError], ...] = (TimeoutError, BlockingIOError)
# What a send raises once the client has gone or stopped reading.  One named tuple, because
# mypy rejects ``except (A, B, *SOCKET_TIMEOUTS)``.
CLIENT_GONE_ERRORS: tuple[type[OSError], ...] = (
    BrokenPipeError,
    ConnectionResetError,
    *SOCKET_TIMEOUTS,
)


def send_file(sock: socket.socket, file: Any, offset: int, count: int, timeout: float) -> int:
    """``sock.sendfile`` bounded by ``timeout`` between progress.

    A blocking socket's ``sendfile`` would wait forever for a client that stopped
    reading (it polls with no timeout after EAGAIN), so it gets a Python timeout first.
    """
    if sock.gettimeout() is None:
        sock.settimeout(timeout)
    return sock.sendfile(file, offset, count)


class ClientGone(OSError):
    """The client closed its side while the response was being sent."""


class _DateCache:
    """The Date header changes once a second; format it once a second."""

    __slots__ = ("second", "value")

    def __init__(self) -> None:
        self.second = 0
        self.value = ""

    def get(self) -> str:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.value = http_date(now).decode("ascii")
        return self.value


_date_cache = _DateCache()


# WSGI status strings already checked -> their code; apps use a handful of literals.
_STATUS_CODES: dict[str, int] = {}


def _check_status(status: Any) -> int:
    if (
        type(status) is not str
        or len(status) < 4
        or not status[:3].isdigit()
        or status[3] != " "
        or "\n" in status
        or "\r" in status
    ):
        raise ValueError(f"invalid WSGI status {status!r}: expected e.g. '200 OK'")
    if len(_STATUS_CODES) >= 256:
        _STATUS_CODES.clear()  # the app chooses them: bounded
    code = _STATUS_CODES[status] = int(status[:3])
    return code


class Response:
    __slots__ = (
        "sock",
        "protocol",
        "head_only",
        "http_framing",
        "keep_alive",
        "keepalive_answer",
        "request_body",
        "framed",
        "status",
        "status_code",
        "headers",
        "headers_sent",
        "chunked",
        "content_length",
        "body_bytes",
        "header_bytes",
        "_pending_head",
        "send_timeout",
    )

    def __init__(
        self,
        sock: socket.socket,
        protocol: str,
        *,
        head_only: bool = False,
        http_framing: bool = False,
        keep_alive: bool = False,
        send_timeout: float = 4.0,
        keepalive_answer: str | None = None,
        request_body: InputStream | None = None,
    ) -> None:
        self.sock = sock
        self.send_timeout = send_timeout
        self.protocol = protocol or "HTTP/1.0"
        self.head_only = head_only
        self.http_framing = http_framing
        self.keep_alive = keep_alive
        # The Wsgistack-Keepalive line for an accepted uwsgi keep-alive offer, else None.
        self.keepalive_answer = keepalive_answer
        # The request's body, to check at head time that what is left of it can be drained.
        self.request_body = request_body
        self.framed = False  # the body is delimited (Content-Length or chunked)
        self.status: str | None = None
        self.status_code = 0
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.chunked = False
        self.content_length: int | None = None
        self.body_bytes = 0
        self.header_bytes = 0
        self._pending_head = b""

    # -- the WSGI side ---------------------------------------------------------

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        if exc_info:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        status_code = _STATUS_CODES.get(status) if type(status) is str else None
        if status_code is None:
            status_code = _check_status(status)
        for header in headers:
            name, value = header
            if type(name) is not str or type(value) is not str:
                raise TypeError(f"WSGI header {header!r} must be a pair of str")
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name or ":" in name:
                raise ValueError(f"WSGI header {name!r} holds a line break or colon")
        self.status = status
        self.status_code = status_code
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if not self.headers_sent:
            self._prepare_head(None)
        self._send_body(data)

    # -- the server side -------------------------------------------------------

    def send_result(self, result: Iterable[bytes]) -> None:
        """Send what the app returned, then end the response."""
        kind = type(result)
        if (kind is list or kind is tuple) and not self.headers_sent:
            if self.status is None:
                raise AssertionError("the app returned a body without calling start_response()")
            chunks: Any = result
            if len(chunks) == 1:
                # The usual [body]: head and body in one write, and nothing left to finish.
                body = chunks[0]
                size = len(body)
                self._prepare_head(size)
                if not (
                    self.head_only or self.chunked or (self.framed and self.content_length != size)
                ):
                    self.body_bytes = size
                    head = self._pending_head
                    self._pending_head = b""
                    self._sendall(head + body if size else head)
                    return
                self._send_body(body) if size else self._flush_head(b"")
                self.finish(size)
                return
            known_length = sum(map(len, chunks))
            if known_length <= JOIN_LIMIT:
                self._prepare_head(known_length)
                self._send_body(b"".join(chunks)) if known_length else self._flush_head(b"")
            else:
                self._prepare_head(known_length)
                for chunk in chunks:
                    if chunk:
                        self._send_body(chunk)
            self.finish(known_length)
            return
        if isinstance(result, FileWrapper) and self._try_sendfile(result):
            return
        for chunk in result:
            if chunk:
                if not self.headers_sent:
                    if self.status is None:
                        raise AssertionError(
                            "the app returned a body without calling start_response()"
                        )
                    self._prepare_head(None)
                self._send_body(chunk)
        self.finish(None)

    def finish(self, known_length: int | None = 0) -> None:
        if not self.headers_sent:
            if self.status is None:
                raise AssertionError("the app returned without calling start_response()")
            self._prepare_head(known_length if known_length is not None else 0)
        if self._pending_head:
            self._flush_head(b"")
        if self.chunked:
            self._sendall(b"0\r\n\r\n")
        elif (
            self.framed
            and not self.head_only
            and self.content_length is not None
            and self.body_bytes < self.content_length
        ):
            # The app promised more than it sent: the client cannot find the end.
            self.keep_alive = False

    def _prepare_head(self, known_length: int | None) -> None:
        """Decide the framing and build the head; it leaves with the first body bytes."""
        assert self.status is not None
        if self.keep_alive:
            body = self.request_body
            if body is not None and (body.failed or body.pending > DRAIN_LIMIT):
                self.keep_alive = False  # what the app left unread is too much to discard
        if self.keepalive_answer is not None:
            if self.keep_alive and self._framed_head(known_length, uwsgi=True):
                return
            self.keep_alive = False  # declined: the standard raw answer, then close
        elif self.http_framing:
            self._framed_head(known_length, uwsgi=False)
            return
        lines = [f"{self.protocol} {self.status}\r\n"]
        append = lines.append
        for name, value in self.headers:
            append(f"{name}: {value}\r\n")
        append("\r\n")
        head = "".join(lines).encode("latin-1")
        self._pending_head = head
        self.header_bytes = len(head)
        self.headers_sent = True

    def _framed_head(self, known_length: int | None, uwsgi: bool) -> bool:
        """Build a delimited head; False (nothing built) when a uwsgi offer must be declined."""
        status_code = self.status_code
        protocol = "HTTP/1.1" if uwsgi else self.protocol
        lines = [f"{protocol} {self.status}\r\n"]
        has_length = False
        for name, value in self.headers:
            lowered = name.lower()
            if lowered in _HOP_BY_HOP:
                if lowered == "connection" and "close" in value.lower():
                    if uwsgi:
                        return False
                    self.keep_alive = False
                continue
            if lowered == "content-length":
                has_length = True
                self.content_length = int(value) if value.isdigit() else None
            lines.append(f"{name}: {value}\r\n")
        if status_code in _NO_BODY_STATUSES or status_code < 200:
            self.head_only = True  # a body here would be read as the next response
        if not has_length and not self.head_only:
            if known_length is not None:
                lines.append(f"Content-Length: {known_length}\r\n")
                self.content_length = known_length
            elif uwsgi or (self.protocol == "HTTP/1.1" and self.keep_alive):
                lines.append("Transfer-Encoding: chunked\r\n")
                self.chunked = True
            else:
                self.keep_alive = False
        if self.keepalive_answer is not None:
            lines.append(self.keepalive_answer)
        else:
            lines.append(f"Date: {_date_cache.get()}\r\n")
            if not self.keep_alive:
                lines.append("Connection: close\r\n")
            elif self.protocol == "HTTP/1.0":
                lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        self.framed = self.keep_alive or self.chunked or self.content_length is not None
        head = "".join(lines).encode("latin-1")
        self._pending_head = head
        self.header_bytes = len(head)
        self.headers_sent = True
        return True

    def _flush_head(self, data: bytes) -> None:
        head = self._pending_head
        self._pending_head = b""
        self._sendall(head + data if data else head)

    def _send_body(self, data: bytes) -> None:
        if self.head_only:
            if self._pending_head:
                self._flush_head(b"")
            return
        if self.framed and self.content_length is not None:
            room = self.content_length - self.body_bytes
            if len(data) > room:
                data = data[: max(room, 0)]  # past the declared length: not sent
                if not data:
                    if self._pending_head:
                        self._flush_head(b"")
                    return
        self.body_bytes += len(data)
        if self.chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        if self._pending_head:
            self._flush_head(data)
        else:
            self._sendall(data)

    def _sendall(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except CLIENT_GONE_ERRORS as exc:
            raise ClientGone(
                f"client went away during the response: {exc.strerror or exc}"
            ) from exc

    def _try_sendfile(self, wrapper: FileWrapper) -> bool:
        """Zero-copy for ``wsgi.file_wrapper`` over a regular file; False to fall back to reads."""
        filelike = wrapper.filelike
        try:
            fileno = filelike.fileno()
            offset = filelike.tell()
            size = os.fstat(fileno).st_size
        except (AttributeError, OSError, ValueError):
            return False
        if self.status is None:
            raise AssertionError("the app returned a file without calling start_response()")
        length = max(size - offset, 0)
        if not self.headers_sent:
            self._prepare_head(length)
        if self.chunked:
            return False
        if self.framed and self.content_length is not None:
            length = min(length, max(self.content_length - self.body_bytes, 0))
        self._flush_head(b"")
        if self.head_only:
            return True
        if length:
            try:
                sent = send_file(self.sock, filelike, offset, length, self.send_timeout)
            except CLIENT_GONE_ERRORS as exc:
                raise ClientGone(f"client went away during sendfile: {exc}") from exc
            self.body_bytes += sent
        if (
            self.framed
            and self.content_length is not None
            and self.body_bytes < self.content_length
        ):
            self.keep_alive = False
        return True
