"""socket-timeout bounds every wait on a client, whichever way the socket is read or written.

The worker sets the timeout once on the listening socket (Linux copies it, with
TCP_NODELAY, to each accepted socket) instead of a Python socket timeout, which
polls before every recv and send.  These tests hold it to what a user sees: a
silent client is cut after the timeout, one that stops reading a large file does
not hold the worker, and the worker goes on serving.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import WSGI_APP
from tests.support.clients import recv_all, uwsgi_request
from tests.support.processes import ServerProcess


def test_a_client_that_sends_half_a_packet_is_cut_after_socket_timeout(
    start_test_app: Callable[..., ServerProcess],
) -> None:
    server = start_test_app("--socket-timeout", "1")
    server.wait_ready(1)
    address = server.address("uwsgi")
    started = time.monotonic()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"\x00\x10")  # a header promising vars that never come
        assert recv_all(sock, 10) == b""  # closed by the server
    waited = time.monotonic() - started
    assert 0.8 <= waited < 5, waited
    server.wait_for_log(r"read failed before the vars arrived: timed out \(socket-timeout\)")
    assert uwsgi_request(address, "GET", "/pid").status == 200  # the worker goes on


def test_a_client_that_stops_reading_a_large_file_does_not_hold_the_worker(
    start_appserver: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    static = tmp_path / "static"
    static.mkdir()
    (static / "big.bin").write_bytes(b"\0" * (64 << 20))
    server = start_appserver(
        "--http-socket", "127.0.0.1:0", "--wsgi-file", str(WSGI_APP), "--master",
        "--static-map", f"/static={static}", "--socket-timeout", "1",
    )  # fmt: skip
    server.wait_ready(1)
    address = server.address("http")
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(address)
    try:
        stalled.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        # Never read: the kernel buffers fill and sendfile stops making progress.
        server.wait_for_log(r"client went away during sendfile", timeout=15)
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert recv_all(sock, 10).startswith(b"HTTP/1.1 200")
    finally:
        stalled.close()
