"""The master's small HTTP server for ``metrics-http``: /metrics, /status, /status.json.

Theory of operation
-------------------
It runs inside the master's loop, not in a thread or a process of its own:
the master is where the figures are exact (it folds a worker's counts into
the retained totals when it reaps it, in the same loop; ``appserver.metrics``),
and a thread in a process that forks would be a hazard (a lock held by it at
``fork`` stays held in the child).  So every socket here is non-blocking and
the master's ``select`` watches them: the listener, the connections still
sending their request head, and the ones whose answer did not fit the socket
buffer at once.

One request per connection, ``Connection: close``, GET and HEAD only, the
head at most ``MAX_HEAD`` bytes and ``TIMEOUT`` seconds from accept to the
last byte out; at most ``MAX_CONNECTIONS`` at once, later ones are closed at
accept.  A client that misbehaves costs the master a few system calls, never
a wait: scrapes are small (a few KB) and rare (every few seconds).

The answers are built by a callback (``Answer``: path -> status, content
type, body), which the master provides; this module knows only HTTP.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from httpproto.errors import HttpProtocolError
from httpproto.parser import RequestHead, RequestParser

MAX_HEAD = 8192
TIMEOUT = 5.0
MAX_CONNECTIONS = 32
ACCEPT_BATCH = 16

# path -> (status, content type, body); None: 404.
Answer = Callable[[str], "tuple[int, str, bytes] | None"]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
}


def _new_parser() -> RequestParser:
    return RequestParser(max_header_size=MAX_HEAD, max_line=MAX_HEAD)


@dataclass(slots=True)
class _Connection:
    sock: socket.socket
    deadline: float
    parser: RequestParser = field(default_factory=_new_parser)
    out: memoryview | None = None  # the answer still to send; None while reading
    lingering: bool = False  # answered and shut down for writing: reading until EOF


def response(status: int, content_type: str, body: bytes, *, head_only: bool = False) -> bytes:
    extra = "Allow: GET, HEAD\r\n" if status == 405 else ""
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        f"{extra}"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return head if head_only else head + body


def _error(status: int, message: str) -> bytes:
    return response(status, "text/plain; charset=utf-8", f"{message}\n".encode())


def answer_head(head: RequestHead, answer: Answer) -> bytes:
    """The whole response to one parsed request head."""
    if not head.target.startswith(b"/"):
        return _error(400, "bad request target: /metrics, /status or /status.json")
    if head.method not in ("GET", "HEAD"):
        return _error(405, f"{head.method} is not allowed here: GET or HEAD")
    path = head.path.decode("latin-1")
    found = answer(path)
    if found is None:
        return _error(404, f"{path}: not found (try /metrics, /status or /status.json)")
    status, content_type, body = found
    return response(status, content_type, body, head_only=head.method == "HEAD")


def _parse(parser: RequestParser) -> RequestHead | bytes | None:
    """The head once it is complete, an error answer, or None while it is not."""
    try:
        event = parser.next_event()
    except HttpProtocolError as exc:
        # httpproto's rule: the parser's text is for logs; the client gets the status.
        return _error(exc.status_hint, "bad request")
    if isinstance(event, RequestHead):
        return event
    return None


def answer_request(data: bytes, answer: Answer) -> bytes:
    """The response to a whole request head (pure: the unit tests call it directly)."""
    parser = _new_parser()
    parser.feed(data)
    parsed = _parse(parser)
    if parsed is None:
        return _error(400, "incomplete request head")
    return parsed if isinstance(parsed, bytes) else answer_head(parsed, answer)


class StatusServer:
    """The listener and its connections; the master calls ``step`` from its loop."""

    def __init__(self, sock: socket.socket, answer: Answer) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.answer = answer
        self.connections: dict[int, _Connection] = {}

    def read_fds(self) -> list[int]:
        fds = [fd for fd, conn in self.connections.items() if conn.out is None or conn.lingering]
        return [self.sock.fileno(), *fds]

    def write_fds(self) -> list[int]:
        return [
            fd
            for fd, conn in self.connections.items()
            if conn.out is not None and not conn.lingering
        ]

    def step(self, readable: Iterable[int], writable: Iterable[int], now: float) -> None:
        ready = set(readable)
        if self.sock.fileno() in ready:
            self._accept(now)
        for fd in ready:
            conn = self.connections.get(fd)
            if conn is not None and conn.lingering:
                self._discard(fd, conn)
            elif conn is not None and conn.out is None:
                self._read(fd, conn)
        for fd in writable:
            conn = self.connections.get(fd)
            if conn is not None and conn.out is not None and not conn.lingering:
                self._write(fd, conn)
        for fd, conn in list(self.connections.items()):
            if now > conn.deadline:
                if conn.out is None:
                    self._send_quietly(conn.sock, _error(408, "request head too slow"))
                    # (Also to one that sent nothing: it may be a TCP health check.)
                self._close(fd)

    def _accept(self, now: float) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                client, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # EMFILE and the like: the next wake-up tries again
            if len(self.connections) >= MAX_CONNECTIONS:
                client.close()
                continue
            client.setblocking(False)
            self.connections[client.fileno()] = _Connection(client, now + TIMEOUT)

    def _read(self, fd: int, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(MAX_HEAD + 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(fd)
            return
        if not data:
            self._close(fd)
            return
        conn.parser.feed(data)
        parsed = _parse(conn.parser)
        if parsed is None:
            return
        self._start_answer(
            fd, conn, parsed if isinstance(parsed, bytes) else answer_head(parsed, self.answer)
        )

    def _start_answer(self, fd: int, conn: _Connection, data: bytes) -> None:
        conn.out = memoryview(data)
        self._write(fd, conn)

    def _write(self, fd: int, conn: _Connection) -> None:
        assert conn.out is not None
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(fd)
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            self._linger(fd, conn)

    def _linger(self, fd: int, conn: _Connection) -> None:
        """nginx's lingering close: a client whose request bytes are still unread
        would get a reset that can destroy the answer in flight, so half-close
        and read until it closes too (or the deadline)."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(fd)
            return
        conn.lingering = True
        self._discard(fd, conn)

    def _discard(self, fd: int, conn: _Connection) -> None:
        try:
            while data := conn.sock.recv(65536):
                del data
            self._close(fd)  # EOF
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(fd)

    @staticmethod
    def _send_quietly(sock: socket.socket, data: bytes) -> None:
        try:
            sock.send(data)
        except OSError:
            pass

    def _close(self, fd: int) -> None:
        conn = self.connections.pop(fd, None)
        if conn is not None:
            conn.sock.close()

    def finish(self, seconds: float) -> None:
        """Answer the connections already accepted, for up to ``seconds``, accepting no
        more: before the master re-executes (the listener survives exec, they would not)."""
        deadline = time.monotonic() + seconds
        while True:
            pending = [fd for fd, conn in self.connections.items() if not conn.lingering]
            now = time.monotonic()
            if not pending or now >= deadline:
                break
            reading = [fd for fd in pending if self.connections[fd].out is None]
            writing = [fd for fd in pending if self.connections[fd].out is not None]
            try:
                readable, writable, _ = select.select(reading, writing, [], deadline - now)
            except InterruptedError:
                continue
            self.step(readable, writable, time.monotonic())
        for fd in list(self.connections):
            self._close(fd)

    def close(self) -> None:
        for fd in list(self.connections):
            self._close(fd)
        self.sock.close()
