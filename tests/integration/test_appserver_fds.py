"""Nothing leaks a file descriptor: a worker's fd count is the same after a storm of bad input."""

from __future__ import annotations

import json
import os
import socket
import struct

import uwsgiproto
from tests.integration.conftest import WSGI_APP
from tests.support.clients import recv_all, uwsgi_request
from tests.support.processes import ServerProcess, tcp_connections, wait_until


def _fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _abuse_uwsgi(address) -> None:
    for data in (
        b"\x00\x10",
        b"GET / HTTP/1.1\r\n\r\n",
        uwsgiproto.encode_packet({"HTTP_COOKIE": "c" * 5000}),
    ):
        with socket.create_connection(address, timeout=5) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            recv_all(sock, 5)
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(
        uwsgiproto.encode_packet(
            {"REQUEST_METHOD": "GET", "PATH_INFO": "/stream", "QUERY_STRING": "100000"}
        )
    )
    sock.recv(100)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    uwsgi_request(address, "GET", "/boom")
    uwsgi_request(address, "POST", "/echo", b"x" * 100_000)


def _abuse_http(address) -> None:
    for data in (
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n",  # keep-alive, then we just close
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort",
    ):
        with socket.create_connection(address, timeout=5) as sock:
            sock.sendall(data)
            sock.recv(65536)


def _wait_until_all_closed(server: ServerProcess, worker: int) -> None:
    # socket-timeout and keep-alive expiry (1 s each) close what the clients left open.
    wait_until(
        lambda: not tcp_connections(worker),
        timeout=10,
        what=f"worker {worker} to close every client connection",
        process=server,
    )


def test_no_fd_leak_under_bad_input(start_appserver) -> None:
    server = start_appserver(
        "--socket",
        "127.0.0.1:0",
        "--http-socket",
        "127.0.0.1:0",
        "--wsgi-file",
        str(WSGI_APP),
        "--master",
        "--threads",
        "2",
        "--socket-timeout",
        "1",
        "--http-keepalive",
        "1",
    )
    server.wait_ready(1)
    uwsgi_address = server.address("uwsgi")
    http_address = server.address("http")
    worker = json.loads(uwsgi_request(uwsgi_address, "GET", "/pid").body)["pid"]
    _abuse_uwsgi(uwsgi_address)
    _abuse_http(http_address)
    _wait_until_all_closed(server, worker)
    before = _fd_count(worker)
    for _ in range(5):
        _abuse_uwsgi(uwsgi_address)
        _abuse_http(http_address)
    _wait_until_all_closed(server, worker)
    assert (
        json.loads(uwsgi_request(uwsgi_address, "GET", "/pid").body)["pid"] == worker
    )  # same worker, alive
    assert _fd_count(worker) <= before
