"""The master's metrics-http server: HTTP rules, and its non-blocking life on real sockets.

``StatusServer.step`` is driven here as the master's loop drives it (select on
its descriptors, then step), with real loopback sockets.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from appserver.status_http import MAX_HEAD, TIMEOUT, StatusServer, answer_request


def _answer(path: str) -> tuple[int, str, bytes] | None:
    if path == "/metrics":
        return 200, "text/plain; version=0.0.4; charset=utf-8", b"up 1\n"
    if path == "/big":
        return 200, "application/octet-stream", b"x" * 6_000_000
    return None


def _split(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], headers, body


def test_get_and_head() -> None:
    status, headers, body = _split(answer_request(b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", _answer))
    assert status == "HTTP/1.1 200 OK" and body == b"up 1\n"
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert headers["Content-Length"] == "5" and headers["Connection"] == "close"
    assert headers["Cache-Control"] == "no-store"
    status, headers, body = _split(answer_request(b"HEAD /metrics HTTP/1.0\r\n\r\n", _answer))
    assert status.endswith("200 OK") and headers["Content-Length"] == "5" and body == b""


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n", "404 Not Found"),
        (b"GET /metricsx HTTP/1.1\r\nHost: x\r\n\r\n", "404 Not Found"),
        (b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "405 Method Not Allowed"),
        (b"GET metrics HTTP/1.1\r\nHost: x\r\n\r\n", "400 Bad Request"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "400 Bad Request"),  # TLS
        (b"GET /metrics\r\n\r\n", "400 Bad Request"),
        (b"GET /metrics HTTP/1.1\r\n\r\n", "400 Bad Request"),  # HTTP/1.1 needs a Host
        (b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400 Bad Request"),
    ],
)
def test_refusals(head: bytes, status: str) -> None:
    line, headers, _ = _split(answer_request(head, _answer))
    assert line == f"HTTP/1.1 {status}"
    if status.startswith("405"):
        assert headers["Allow"] == "GET, HEAD"


@pytest.fixture
def server() -> Iterator[StatusServer]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    server = StatusServer(listener, _answer)
    yield server
    server.close()


def _run(server: StatusServer, until: float, now: float | None = None) -> None:
    """The master's loop, for ``until`` seconds or until no connection is left."""
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        reading, writing = server.read_fds(), server.write_fds()
        ready_r, ready_w, _ = select.select(reading, writing, [], 0.05)
        server.step(ready_r, ready_w, now if now is not None else time.monotonic())
        if not server.connections and not ready_r:
            return


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_request_in_pieces_and_a_big_answer_never_block_the_loop(server: StatusServer) -> None:
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(server.sock.getsockname())
    client.sendall(b"GET /big HT")
    _run(server, 0.2)
    assert len(server.connections) == 1  # waiting for the rest of the head
    client.sendall(b"TP/1.1\r\nHost: x\r\n\r\n")
    # The client reads nothing yet: 6 MB do not fit the socket buffers, so the answer
    # waits for writability while the loop goes on.
    _run(server, 0.3)
    assert server.write_fds(), "the rest of the answer should wait for POLLOUT"
    # Now the loop runs on (in a thread, as the master's would) while the client reads.
    loop = threading.Thread(target=_run, args=(server, 20.0))
    loop.start()
    client.settimeout(20)
    received = _read_all(client)
    client.close()  # the server lingers until the client closes too
    loop.join()
    status, headers, body = _split(received)
    assert status.endswith("200 OK") and len(body) == 6_000_000 == int(headers["Content-Length"])
    assert not server.connections


def test_a_silent_client_is_dropped_at_the_deadline(server: StatusServer) -> None:
    quiet = socket.create_connection(server.sock.getsockname())
    slow = socket.create_connection(server.sock.getsockname())
    slow.sendall(b"GET /metrics HTTP/1.1\r\n")
    _run(server, 0.2)
    assert len(server.connections) == 2
    _run(server, 0.2, now=time.monotonic() + TIMEOUT + 1)
    assert not server.connections
    quiet.settimeout(5)
    slow.settimeout(5)
    assert _read_all(quiet).startswith(b"HTTP/1.1 408 ")
    assert _read_all(slow).startswith(b"HTTP/1.1 408 ")
    quiet.close()
    slow.close()


def test_a_head_too_large_is_refused(server: StatusServer) -> None:
    client = socket.create_connection(server.sock.getsockname())
    client.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * MAX_HEAD)
    _run(server, 1.0)
    client.settimeout(5)
    assert _read_all(client).startswith(b"HTTP/1.1 431 ")
    client.close()


def test_finish_answers_what_was_accepted_and_accepts_no_more(server: StatusServer) -> None:
    early = socket.create_connection(server.sock.getsockname())
    _run(server, 0.1)  # accepted, its head not sent yet
    assert len(server.connections) == 1
    late = socket.create_connection(server.sock.getsockname())
    early.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    server.finish(2.0)
    assert not server.connections
    early.settimeout(5)
    assert _read_all(early).endswith(b"\r\n\r\nup 1\n")
    early.close()
    late.settimeout(0.2)
    with pytest.raises(TimeoutError):
        late.recv(1)  # still in the listener's queue, for the next master
    late.close()
