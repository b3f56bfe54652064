"""appserver over --socket (the uwsgi protocol), driven by a byte-exact uwsgi client."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct

import pytest

import uwsgiproto
from tests.integration.conftest import WSGI_APP
from tests.support.clients import parse_response, recv_all, uwsgi_request


@pytest.fixture
def server(start_appserver):
    server = start_appserver(
        "--socket",
        "127.0.0.1:0",
        "--wsgi-file",
        str(WSGI_APP),
        "--processes",
        "2",
        "--threads",
        "2",
        "--master",
    )
    server.wait_ready(2)
    return server


def test_get_with_utf8_query_and_path(server) -> None:
    address = server.address("uwsgi")
    response = uwsgi_request(address, "GET", "/echo?q=caf%C3%A9&name=文字")
    assert response.status == 200
    data = json.loads(response.body)
    assert data["method"] == "GET"
    assert data["query"] == "q=caf%C3%A9&name=文字"
    response = uwsgi_request(address, "GET", "/utf8/caf%C3%A9")
    assert json.loads(response.body) == {"path": "/utf8/café"}


def test_post_5mb_body(server) -> None:
    body = os.urandom(5 * 1024 * 1024)
    response = uwsgi_request(server.address("uwsgi"), "POST", "/echo", body)
    assert response.status == 200
    data = json.loads(response.body)
    assert data["size"] == len(body)
    assert data["sha256"] == hashlib.sha256(body).hexdigest()


def test_streamed_and_written_and_file_responses(server) -> None:
    address = server.address("uwsgi")
    response = uwsgi_request(address, "GET", "/stream?50")
    assert response.status == 200
    assert response.body == b"".join(f"chunk {i}\n".encode() for i in range(50))
    assert uwsgi_request(address, "GET", "/write").body == b"written then returned\n"
    response = uwsgi_request(address, "GET", "/file")
    assert response.body == WSGI_APP.read_bytes()
    assert response.header("Content-Length") is None or int(
        response.header("Content-Length")
    ) == len(response.body)


def test_404_and_500_keep_the_worker_alive(server) -> None:
    address = server.address("uwsgi")
    assert uwsgi_request(address, "GET", "/nowhere").status == 404
    pids = set()
    for _ in range(6):
        response = uwsgi_request(address, "GET", "/boom")
        assert response.status == 500
        assert b"Internal Server Error" in response.body
    for _ in range(10):
        pids.add(json.loads(uwsgi_request(address, "GET", "/pid").body)["pid"])
    log = server.log()
    assert "RuntimeError: boom" in log  # the traceback is in the log
    assert "died" not in log and "killed" not in log
    assert server.count(r"=> generated .* \(HTTP/1.1 500\)") == 6


def test_https_var_sets_url_scheme(server) -> None:
    response = uwsgi_request(server.address("uwsgi"), "GET", "/echo", HTTPS="on")
    assert json.loads(response.body)["scheme"] == "https"
    response = uwsgi_request(server.address("uwsgi"), "GET", "/echo", UWSGI_SCHEME="https")
    assert json.loads(response.body)["scheme"] == "https"


def test_script_name_param_is_split_from_path_info(server) -> None:
    response = uwsgi_request(server.address("uwsgi"), "GET", "/app/echo", SCRIPT_NAME="/app")
    data = json.loads(response.body)
    assert data["script_name"] == "/app"
    assert data["path"] == "/echo"


def test_oversize_vars_block_is_refused_with_a_clear_log_line(server) -> None:
    address = server.address("uwsgi")
    with socket.create_connection(address, timeout=10) as sock:
        vars_ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/echo", "HTTP_COOKIE": "c" * 6000}
        sock.sendall(uwsgiproto.encode_packet(vars_))
        response = parse_response(recv_all(sock))
    assert response.status == 431
    server.wait_for_log(r"invalid request block size: \d+ \(max 4096\); raise buffer-size")
    # The server is unharmed.
    assert uwsgi_request(address, "GET", "/echo").status == 200


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x10",  # truncated header
        b"\x00\x20\x00\x00\x05\x00ABC",  # vars truncated by the peer closing
        struct.pack("<BHB", 0, 8, 0) + b"\x09\x00AB\x01\x00x\x00\x00",  # key runs past the block
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # HTTP sent to a uwsgi socket
    ],
)
def test_malformed_packets_never_hurt_the_server(server, data: bytes) -> None:
    address = server.address("uwsgi")
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        recv_all(sock)  # whatever the answer, the connection is closed
    assert uwsgi_request(address, "GET", "/echo").status == 200
    assert "Traceback" not in server.log()


def test_body_shorter_than_content_length(server) -> None:
    address = server.address("uwsgi")
    with socket.create_connection(address, timeout=10) as sock:
        packet = uwsgiproto.encode_packet(
            {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/echo",
                "CONTENT_LENGTH": "1000",
                "REQUEST_URI": "/echo",
            }
        )
        sock.sendall(packet + b"only a few bytes")
        sock.shutdown(socket.SHUT_WR)
        recv_all(sock)
    server.wait_for_log(r"client disconnected after 16 of 1000 body bytes")
    assert uwsgi_request(address, "GET", "/echo").status == 200


def test_client_disconnecting_mid_response(server) -> None:
    address = server.address("uwsgi")
    for _ in range(3):
        sock = socket.create_connection(address, timeout=10)
        sock.sendall(
            uwsgiproto.encode_packet(
                {
                    "REQUEST_METHOD": "GET",
                    "PATH_INFO": "/stream",
                    "QUERY_STRING": "200000",
                    "REQUEST_URI": "/stream?200000",
                }
            )
        )
        sock.recv(1000)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST
    server.wait_for_log(r"client went away")
    assert uwsgi_request(address, "GET", "/echo").status == 200
    log = server.log()
    assert "Traceback" not in log and "BrokenPipeError" not in log


def test_unix_socket_with_chmod_and_vacuum(start_appserver, tmp_path) -> None:
    path = tmp_path / "app.sock"
    server = start_appserver(
        "--socket",
        str(path),
        "--chmod-socket",
        "660",
        "--vacuum",
        "--wsgi-file",
        str(WSGI_APP),
        "--master",
    )
    server.wait_ready(1)
    server.wait_for_log("listening on uwsgi://unix:")
    assert oct(path.stat().st_mode & 0o777) == "0o660"
    assert uwsgi_request(str(path), "GET", "/echo").status == 200
    server.signal(15)
    assert server.wait() == 0
    assert not path.exists()
