"""start_response / write / framing, over a real socketpair."""

from __future__ import annotations

import socket
import sys

import pytest

from appserver.response import FileWrapper, Response


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    client.settimeout(5)
    yield server, client
    server.close()
    client.close()


def received(server: socket.socket, client: socket.socket) -> bytes:
    server.shutdown(socket.SHUT_WR)
    chunks = []
    while data := client.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def test_raw_framing_sends_the_apps_headers_as_they_are(pair) -> None:
    server, client = pair
    response = Response(server, "HTTP/1.1")
    response.start_response("200 OK", [("Content-Type", "text/plain")])
    response.send_result([b"hello"])
    assert received(server, client) == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"


def test_http_framing_measures_lists_and_chunks_generators(pair) -> None:
    server, client = pair
    response = Response(server, "HTTP/1.1", http_framing=True, keep_alive=True)
    response.start_response("200 OK", [("Content-Type", "text/plain")])
    response.send_result([b"ab", b"cd"])
    response = Response(server, "HTTP/1.1", http_framing=True, keep_alive=True)
    response.start_response("200 OK", [])
    response.send_result(iter([b"xy", b"", b"z"]))
    data = received(server, client)
    first, second = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert b"Content-Length: 4\r\n" in first and first.endswith(b"\r\n\r\nabcd")
    assert b"Transfer-Encoding: chunked\r\n" in second
    assert second.endswith(b"\r\n\r\n2\r\nxy\r\n1\r\nz\r\n0\r\n\r\n")


def test_http_10_without_length_closes(pair) -> None:
    server, client = pair
    response = Response(server, "HTTP/1.0", http_framing=True, keep_alive=True)
    response.start_response("200 OK", [])
    response.send_result(iter([b"x"]))
    assert not response.keep_alive
    assert b"Connection: close\r\n" in received(server, client)


def test_head_sends_no_body(pair) -> None:
    server, client = pair
    response = Response(server, "HTTP/1.1", head_only=True, http_framing=True, keep_alive=True)
    response.start_response("200 OK", [("Content-Length", "5")])
    response.send_result([b"hello"])
    data = received(server, client)
    assert data.endswith(b"\r\n\r\n") and b"hello" not in data


def test_exc_info_replaces_headers_before_they_are_sent(pair) -> None:
    server, client = pair
    response = Response(server, "HTTP/1.1")
    response.start_response("200 OK", [("X-A", "1")])
    try:
        raise ValueError("late failure")
    except ValueError:
        response.start_response("500 Internal Server Error", [("X-B", "2")], sys.exc_info())
    response.send_result([b"oops"])
    data = received(server, client)
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\nX-B: 2\r\n")


def test_exc_info_after_headers_were_sent_reraises(pair) -> None:
    server, _ = pair
    response = Response(server, "HTTP/1.1")
    write = response.start_response("200 OK", [])
    write(b"already out")
    with pytest.raises(ValueError, match="too late"):
        try:
            raise ValueError("too late")
        except ValueError:
            response.start_response("500 Internal Server Error", [], sys.exc_info())


def test_second_start_response_without_exc_info_is_an_error(pair) -> None:
    server, _ = pair
    response = Response(server, "HTTP/1.1")
    response.start_response("200 OK", [])
    with pytest.raises(AssertionError):
        response.start_response("200 OK", [])


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        ("200", []),
        (b"200 OK", []),
        ("200 OK", [("X", 1)]),
        ("200 OK", [("X", "a\r\nInjected: 1")]),
        ("200 OK", [("Bad:Name", "v")]),
    ],
)
def test_invalid_status_and_headers_are_refused(pair, status, headers) -> None:
    server, _ = pair
    with pytest.raises((ValueError, TypeError)):
        Response(server, "HTTP/1.1").start_response(status, headers)


def test_file_wrapper_goes_out_with_sendfile(pair, tmp_path) -> None:
    server, client = pair
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 100)
    response = Response(server, "HTTP/1.1", http_framing=True, keep_alive=True)
    response.start_response("200 OK", [])
    with open(path, "rb") as handle:
        handle.seek(56)
        wrapper = FileWrapper(handle)
        assert response._try_sendfile(wrapper) is True
    data = received(server, client)
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"Content-Length: 25544" in head
    assert body == path.read_bytes()[56:]
