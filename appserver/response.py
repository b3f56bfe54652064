"""start_response, write() and the response body, per PEP 3333.

Theory of operation
-------------------
A ``Response`` collects the status and headers from ``start_response`` and
sends nothing until the first non-empty body chunk (or the end), so that an
app may still replace them with ``exc_info``.  The head and the first chunk
leave in one ``sendall``.

Two framings:
- ``raw`` (uwsgi protocol, and HTTP connections that will close): the app's
  headers go out as they are and the end of the body is the end of the
  connection, which is what nginx expects from a uwsgi peer.
- ``http`` (``http-socket`` with keep-alive): the body must be delimited, so
  the response gets a Content-Length when the app gave one or when the body is
  a list we can measure, and is chunked otherwise (HTTP/1.1), or the
  connection closes (HTTP/1.0).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from typing import IO, Any

from httpproto import http_date

# Headers the server owns on a keep-alive connection (RFC 9110 §7.6.1).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
)
_NO_BODY_STATUSES = frozenset({204, 304})


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


class Response:
    __slots__ = (
        "sock",
        "protocol",
        "head_only",
        "http_framing",
        "keep_alive",
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
    ) -> None:
        self.sock = sock
        self.send_timeout = send_timeout
        self.protocol = protocol or "HTTP/1.0"
        self.head_only = head_only
        self.http_framing = http_framing
        self.keep_alive = keep_alive
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
        if (
            type(status) is not str
            or len(status) < 4
            or not status[:3].isdigit()
            or status[3] != " "
        ):
            raise ValueError(f"invalid WSGI status {status!r}: expected e.g. '200 OK'")
        for header in headers:
            name, value = header
            if type(name) is not str or type(value) is not str:
                raise TypeError(f"WSGI header {header!r} must be a pair of str")
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name or ":" in name:
                raise ValueError(f"WSGI header {name!r} holds a line break or colon")
        self.status = status
        self.status_code = int(status[:3])
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
        if isinstance(result, FileWrapper) and self._try_sendfile(result):
            return
        known_length: int | None = None
        if type(result) in (list, tuple) and not self.headers_sent:
            known_length = sum(map(len, result))
        for chunk in result:
            if chunk:
                if not self.headers_sent:
                    if self.status is None:
                        raise AssertionError(
                            "the app returned a body without calling start_response()"
                        )
                    self._prepare_head(known_length)
                self._send_body(chunk)
        self.finish(known_length)

    def finish(self, known_length: int | None = 0) -> None:
        if not self.headers_sent:
            if self.status is None:
                raise AssertionError("the app returned without calling start_response()")
            self._prepare_head(known_length if known_length is not None else 0)
            self._flush_head(b"")
        if self.chunked:
            self._sendall(b"0\r\n\r\n")

    def _prepare_head(self, known_length: int | None) -> None:
        """Decide the framing and build the head; it leaves with the first body bytes."""
        assert self.status is not None
        status_code = self.status_code
        lines = [f"{self.protocol} {self.status}\r\n"]
        if self.http_framing:
            has_length = False
            for name, value in self.headers:
                lowered = name.lower()
                if lowered in _HOP_BY_HOP:
                    if lowered == "connection" and "close" in value.lower():
                        self.keep_alive = False
                    continue
                if lowered == "content-length":
                    has_length = True
                    self.content_length = int(value) if value.isdigit() else None
                lines.append(f"{name}: {value}\r\n")
            no_body = self.head_only or status_code in _NO_BODY_STATUSES or status_code < 200
            if not has_length and not no_body:
                if known_length is not None:
                    lines.append(f"Content-Length: {known_length}\r\n")
                    self.content_length = known_length
                elif self.protocol == "HTTP/1.1" and self.keep_alive:
                    lines.append("Transfer-Encoding: chunked\r\n")
                    self.chunked = True
                else:
                    self.keep_alive = False
            lines.append(f"Date: {_date_cache.get()}\r\n")
            if not self.keep_alive:
                lines.append("Connection: close\r\n")
            elif self.protocol == "HTTP/1.0":
                lines.append("Connection: keep-alive\r\n")
        else:
            for name, value in self.headers:
                lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        self._pending_head = "".join(lines).encode("latin-1")
        self.header_bytes = len(self._pending_head)
        self.headers_sent = True

    def _flush_head(self, data: bytes) -> None:
        head = self._pending_head
        self._pending_head = b""
        self._sendall(head + data if data else head)

    def _send_body(self, data: bytes) -> None:
        if self.head_only:
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
        self._flush_head(b"")
        if self.head_only:
            return True
        if length:
            try:
                sent = send_file(self.sock, filelike, offset, length, self.send_timeout)
            except CLIENT_GONE_ERRORS as exc:
                raise ClientGone(f"client went away during sendfile: {exc}") from exc
            self.body_bytes += sent
        return True
