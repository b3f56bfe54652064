"""appserver over --http-socket: HTTP/1.1 served by the workers themselves."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import threading
import time

import pytest

from tests.integration.conftest import WSGI_APP
from tests.support.clients import parse_response, raw_exchange, recv_all


@pytest.fixture
def server(start_appserver):
    server = start_appserver(
        "--http-socket",
        "127.0.0.1:0",
        "--wsgi-file",
        str(WSGI_APP),
        "--master",
        "--processes",
        "1",
        "--threads",
        "2",
    )
    server.wait_ready(1)
    return server


def request(address, method: str, path: str, body=None, headers=None, connection=None):
    own = connection is None
    connection = connection or http.client.HTTPConnection(*address, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        if own:
            connection.close()


def test_get_post_utf8_stream_404_500(server) -> None:
    address = server.address("http")
    status, _, body = request(address, "GET", "/echo?q=caf%C3%A9")
    assert status == 200 and json.loads(body)["query"] == "q=caf%C3%A9"
    status, _, body = request(address, "GET", "/utf8/caf%C3%A9")
    assert json.loads(body) == {"path": "/utf8/café"}
    payload = os.urandom(5 * 1024 * 1024)
    status, _, body = request(address, "POST", "/echo", payload)
    assert json.loads(body)["sha256"] == hashlib.sha256(payload).hexdigest()
    status, headers, body = request(address, "GET", "/stream?300")
    assert headers.get("transfer-encoding") == "chunked"
    assert body == b"".join(f"chunk {i}\n".encode() for i in range(300))
    assert request(address, "GET", "/missing")[0] == 404
    assert request(address, "GET", "/boom")[0] == 500
    assert request(address, "GET", "/echo")[0] == 200


def test_keep_alive_serves_many_requests_on_one_connection(server) -> None:
    address = server.address("http")
    connection = http.client.HTTPConnection(*address, timeout=30)
    pids = set()
    for _ in range(20):
        status, headers, body = request(address, "GET", "/pid", connection=connection)
        assert status == 200
        pids.add(json.loads(body)["pid"])
    for path in ("/stream?3", "/write", "/missing", "/file"):
        assert request(address, "GET", path, connection=connection)[0] in (200, 404)
    connection.close()
    assert len(pids) == 1


def test_pipelined_requests_answer_in_order(server) -> None:
    address = server.address("http")
    data = (
        b"".join(f"GET /echo?n={n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in range(3))
        + b"GET /echo?n=last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    raw = raw_exchange(address, data)
    assert raw.count(b"HTTP/1.1 200 OK") == 4
    queries = [
        json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["query"]
        for part in raw.split(b"HTTP/1.1 200 OK")[1:]
    ]
    assert queries == ["n=0", "n=1", "n=2", "n=last"]


def test_http_10_and_chunked_upload_and_100_continue(server) -> None:
    address = server.address("http")
    raw = raw_exchange(address, b"GET /echo HTTP/1.0\r\n\r\n")
    response = parse_response(raw)
    assert response.status == 200 and response.protocol == "HTTP/1.0"
    body = b"abc" * 1000
    chunked = (
        b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 700]), body[i : i + 700])
            for i in range(0, len(body), 700)
        )
        + b"0\r\n\r\n"
    )
    raw = raw_exchange(
        address,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + chunked,
    )
    assert json.loads(parse_response(raw).body)["size"] == 3000
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        assert json.loads(parse_response(recv_all(sock)).body)["size"] == 5


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    ],
)
def test_malformed_requests_get_a_status_and_a_closed_connection(
    server, data: bytes, status: int
) -> None:
    address = server.address("http")
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(data)
        raw = recv_all(sock)  # returns only once the server has closed the connection
    response = parse_response(raw)
    assert response.status == status
    assert response.header("Connection") == "close"
    assert request(address, "GET", "/echo")[0] == 200


def test_idle_keep_alive_clients_do_not_hold_the_threads(start_appserver) -> None:
    # One worker with one thread: ten idle keep-alive connections must not block an eleventh client.
    server = start_appserver(
        "--http-socket", "127.0.0.1:0", "--wsgi-file", str(WSGI_APP), "--master", "--threads", "1"
    )
    server.wait_ready(1)
    address = server.address("http")
    idle = []
    for _ in range(10):
        connection = http.client.HTTPConnection(*address, timeout=10)
        assert request(address, "GET", "/pid", connection=connection)[0] == 200
        idle.append(connection)
    started = time.monotonic()
    assert request(address, "GET", "/echo")[0] == 200
    assert time.monotonic() - started < 1.0
    for connection in idle:
        connection.close()


def test_slow_requests_on_one_thread_do_not_starve_others_with_threads(start_appserver) -> None:
    server = start_appserver(
        "--http-socket", "127.0.0.1:0", "--wsgi-file", str(WSGI_APP), "--master", "--threads", "4",
        "--stats", "127.0.0.1:0",
    )  # fmt: skip
    server.wait_ready(1)
    address = server.address("http")
    statuses: list[int] = []
    slow = [
        threading.Thread(target=lambda: statuses.append(request(address, "GET", "/slow?3")[0]))
        for _ in range(3)
    ]
    for thread in slow:
        thread.start()
    # Three of the four threads are inside the app: only the fourth is left for /echo.
    server.wait_for_requests_in_flight("GET /slow?3", count=3)
    started = time.monotonic()
    assert request(address, "GET", "/echo")[0] == 200
    assert time.monotonic() - started < 1.0
    assert all(thread.is_alive() for thread in slow), "the slow requests ended before /echo"
    for thread in slow:
        thread.join()
    assert statuses == [200, 200, 200]


def test_http_front_proxies_to_the_workers_and_survives_reload(start_appserver, tmp_path) -> None:
    # --http: a front process (our edge) speaks HTTP and hands requests to the workers over uwsgi.
    import re

    from tests.support.nginx import free_port

    port = free_port()
    pidfile = tmp_path / "app.pid"
    server = start_appserver(
        "--http",
        f"127.0.0.1:{port}",
        "--wsgi-file",
        str(WSGI_APP),
        "--master",
        "--processes",
        "2",
        "--pidfile",
        str(pidfile),
    )
    server.wait_ready(2)
    server.wait_for_log(rf"listening on http://127.0.0.1:{port}")
    address = ("127.0.0.1", port)
    payload = os.urandom(300_000)
    status, _, body = request(address, "POST", "/echo", payload)
    assert status == 200 and json.loads(body)["sha256"] == hashlib.sha256(payload).hexdigest()
    front_pid = int(re.search(r"spawned http front on \S+ \(pid: (\d+)\)", server.log()).group(1))

    from appserver.cli import main as cli_main

    assert cli_main(["--reload", str(pidfile)]) == 0
    server.wait_for_log(r"reload: the new workers are ready")
    assert request(address, "GET", "/echo")[0] == 200
    assert server.count(r"spawned http front") == 1  # the front was kept across the reload
    os.kill(front_pid, 0)

    server.signal(15)
    assert server.wait(timeout=30) == 0
    log = server.log()
    assert f"http front on 127.0.0.1:{port} (pid: {front_pid}) exited with status 0" in log
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=2)
