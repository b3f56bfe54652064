"""The WSGISTACK_KEEPALIVE extension (docs/uwsgi-keepalive.md) against a real appserver process.

The client here is a plain socket speaking the extension's client rules: it
offers keep-alive in each packet, reads each framed response exactly, and
sends the next packet on the same connection only if the response carried
``Wsgistack-Keepalive``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable

import pytest

import uwsgiproto
from tests.support.clients import uwsgi_vars
from tests.support.processes import ServerProcess


class KeepAliveClient:
    """One uwsgi connection that offers keep-alive in every packet."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        self.unread = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, method: str = "GET", uri: str = "/pid", body: bytes = b"", **extra: str) -> None:
        vars_ = uwsgi_vars(method, uri, body, WSGISTACK_KEEPALIVE="1", **extra)
        self.sock.sendall(uwsgiproto.encode_packet(vars_) + body)

    def _more(self) -> bytes:
        data = self.sock.recv(65536)
        self.unread += data
        return data

    def response(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        """Read one response: a framed one exactly, a raw one to the end of the connection."""
        while b"\r\n\r\n" not in self.unread:
            if not self._more():
                raise ConnectionError(f"closed before a complete head: {self.unread!r}")
        head, _, self.unread = self.unread.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "wsgistack-keepalive" not in headers:
            while self._more():  # raw: the body ends with the connection
                pass
            body, self.unread = self.unread, b""
            return status, headers, body
        if head_only or status in (204, 304):
            return status, headers, b""
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(self.unread) < length:
                if not self._more():
                    raise ConnectionError("framed body cut short")
            body, self.unread = self.unread[:length], self.unread[length:]
            return status, headers, body
        assert headers.get("transfer-encoding") == "chunked", headers
        body = b""
        while True:
            while b"\r\n" not in self.unread:
                if not self._more():
                    raise ConnectionError("chunked body cut short")
            size_line, _, self.unread = self.unread.partition(b"\r\n")
            size = int(size_line, 16)
            while len(self.unread) < size + 2:
                if not self._more():
                    raise ConnectionError("chunked body cut short")
            body, self.unread = body + self.unread[:size], self.unread[size + 2 :]
            if not size:
                return status, headers, body

    def closed_by_server(self, timeout: float = 10.0) -> bool:
        """True once the server closes the connection (EOF) within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def server(start_test_app: Callable[..., ServerProcess]) -> ServerProcess:
    server = start_test_app("--processes", "1", "--threads", "2", "--http-keepalive", "2")
    server.wait_ready(1)
    return server


def test_many_packets_on_one_connection(server: ServerProcess) -> None:
    client = KeepAliveClient(server.address())
    try:
        client.send("GET", "/pid")
        status, headers, body = client.response()
        assert status == 200 and headers["wsgistack-keepalive"] == "timeout=2"
        pid = json.loads(body)["pid"]

        payload = os.urandom(300_000)
        client.send("POST", "/echo", payload)
        status, headers, body = client.response()
        assert status == 200 and headers["wsgistack-keepalive"] == "timeout=2"
        assert json.loads(body)["sha256"] == hashlib.sha256(payload).hexdigest()

        client.send("HEAD", "/pid")
        status, headers, body = client.response(head_only=True)
        assert status == 200 and body == b"" and "content-length" in headers

        client.send("GET", "/stream?200")
        status, headers, body = client.response()
        assert headers["transfer-encoding"] == "chunked"
        assert body == b"".join(f"chunk {i}\n".encode() for i in range(200))

        client.send("POST", "/pid", b"an unread body " * 100)  # the app never reads it
        status, headers, body = client.response()
        assert status == 200 and "wsgistack-keepalive" in headers

        client.send("GET", "/environ")
        status, headers, body = client.response()
        environ = json.loads(body)
        assert "WSGISTACK_KEEPALIVE" not in environ  # the app never sees the offer
        assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"

        client.send("GET", "/pid")
        assert json.loads(client.response()[2])["pid"] == pid  # the same worker all along
    finally:
        client.close()
    # Each request line is written after its response has left: wait for the seventh.
    server.wait_for_log(r"(?s)(=> generated [^\n]* \(HTTP/1\.1 200\).*){7}")
    assert server.count(r"=> generated .* \(HTTP/1.1 200\)") == 7
    assert "Traceback" not in server.log()


def test_an_app_error_declines_with_the_raw_500_and_closes(server: ServerProcess) -> None:
    client = KeepAliveClient(server.address())
    try:
        client.send("GET", "/pid")
        assert client.response()[0] == 200
        client.send("GET", "/boom")
        status, headers, body = client.response()
        assert status == 500 and "wsgistack-keepalive" not in headers
        assert body == b"500 Internal Server Error\n"
        assert client.closed_by_server()
    finally:
        client.close()
    server.wait_for_log(r"RuntimeError: boom")


def test_a_malformed_second_packet_gets_400_and_a_close(server: ServerProcess) -> None:
    client = KeepAliveClient(server.address())
    try:
        client.send("GET", "/pid")
        assert client.response()[0] == 200
        client.sock.sendall(b"\x00\x05\x00\x00\x09\x00ABC")  # a key running past its block
        status, headers, body = client.response()
        assert status == 400 and body == b"400 Bad Request\n"
        assert client.closed_by_server()
    finally:
        client.close()
    server.wait_for_log(r"uwsgi request refused from 127\.0\.0\.1:\d+: uwsgi")


def test_without_the_offer_nothing_changes(server: ServerProcess) -> None:
    with socket.create_connection(server.address(), timeout=10) as sock:
        sock.sendall(uwsgiproto.encode_packet(uwsgi_vars("GET", "/write")))
        raw = b""
        while data := sock.recv(65536):
            raw += data
    # Raw: the app's headers as they are, no framing, and the connection closed.
    assert raw == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nwritten then returned\n"


def test_an_idle_kept_connection_is_closed_after_its_timeout(server: ServerProcess) -> None:
    client = KeepAliveClient(server.address())
    try:
        client.send("GET", "/pid")
        assert client.response()[1]["wsgistack-keepalive"] == "timeout=2"
        started = time.monotonic()
        assert client.closed_by_server(timeout=10)
        idle = time.monotonic() - started
    finally:
        client.close()
    # Closed after N (2) idle seconds, by the once-a-second sweep: between 2 and 3 s.
    assert 1.9 <= idle < 4.0, idle


def test_parked_connections_hold_no_thread(start_test_app: Callable[..., ServerProcess]) -> None:
    # One thread: ten idle kept connections must not block an eleventh client.
    server = start_test_app("--processes", "1", "--threads", "1")
    server.wait_ready(1)
    clients = [KeepAliveClient(server.address()) for _ in range(10)]
    try:
        for client in clients:
            client.send("GET", "/pid")
            assert "wsgistack-keepalive" in client.response()[1]
        fresh = KeepAliveClient(server.address())
        started = time.monotonic()
        fresh.send("GET", "/pid")
        assert fresh.response()[0] == 200
        assert time.monotonic() - started < 1.0
        fresh.close()
        for client in clients:  # and each kept one is served again
            client.send("GET", "/pid")
            assert client.response()[0] == 200
    finally:
        for client in clients:
            client.close()


def test_a_graceful_stop_closes_parked_connections(server: ServerProcess) -> None:
    clients = [KeepAliveClient(server.address()) for _ in range(3)]
    try:
        for client in clients:
            client.send("GET", "/pid")
            assert client.response()[0] == 200
        server.signal(15)
        for client in clients:
            assert client.closed_by_server(timeout=10)
        assert server.wait(timeout=30) == 0
    finally:
        for client in clients:
            client.close()


def test_no_fd_leak(server: ServerProcess) -> None:
    address = server.address()
    plain = socket.create_connection(address, timeout=10)
    plain.sendall(uwsgiproto.encode_packet(uwsgi_vars("GET", "/pid")))
    worker = json.loads(plain.recv(65536).partition(b"\r\n\r\n")[2])["pid"]
    plain.close()

    def storm() -> None:
        clients = []
        for index in range(20):
            client = KeepAliveClient(address)
            clients.append(client)
            client.send("POST", "/echo", b"x" * 1000)
            assert client.response()[0] == 200
            if index % 4 == 0:
                client.send("GET", "/boom")  # declined and closed by the server
                assert client.response()[0] == 500
            elif index % 4 == 1:
                client.sock.sendall(b"\x00\x00\x00\x00")  # an empty vars block: 400
                assert client.response()[0] == 400
            elif index % 4 == 2:
                client.close()  # the client walks away from a parked connection
        for client in clients:
            client.close()

    before = _fds(worker)  # listeners, pipes, the log: no client connection open
    for _ in range(3):
        storm()
    # The idle sweep (http-keepalive 2) closes what the clients left parked.
    deadline = time.monotonic() + 15
    while _fds(worker) > before:
        assert time.monotonic() < deadline, f"{_fds(worker)} fds open, {before} before"
        time.sleep(0.1)
