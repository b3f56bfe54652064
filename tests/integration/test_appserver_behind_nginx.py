"""appserver behind Debian's real nginx: ``include uwsgi_params; uwsgi_pass``."""

from __future__ import annotations

import hashlib
import http.client
import json
import os

import pytest

from tests.support.nginx import Nginx, nginx_available

pytestmark = pytest.mark.nginx

if not nginx_available():
    # In CI .ci/run installs nginx, so this never skips there; say loudly why it would.
    pytest.fail(
        "nginx is not installed (apt-get install nginx); .ci/run installs it", pytrace=False
    )


@pytest.fixture
def stack(start_test_app, tmp_path):
    server = start_test_app(
        "--processes",
        "2",
        "--threads",
        "4",
    )
    server.wait_ready(2)
    host, port = server.address("uwsgi")
    nginx = Nginx(
        tmp_path / "nginx",
        f"""
        location / {{
            include PARAMS;
            uwsgi_pass {host}:{port};
            uwsgi_ignore_client_abort on;
        }}
        """,
    ).start()
    yield nginx, server
    nginx.stop()


def request(
    nginx: Nginx, method: str, path: str, body: bytes | None = None, headers: dict | None = None
):
    connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_get_with_utf8_query(stack) -> None:
    nginx, _ = stack
    status, _, body = request(nginx, "GET", "/echo?q=caf%C3%A9&x=%E6%96%87")
    assert status == 200
    data = json.loads(body)
    assert data["query"] == "q=caf%C3%A9&x=%E6%96%87"
    status, _, body = request(nginx, "GET", "/utf8/caf%C3%A9")
    assert json.loads(body) == {"path": "/utf8/café"}


def test_post_5mb(stack) -> None:
    nginx, _ = stack
    payload = os.urandom(5 * 1024 * 1024)
    status, _, body = request(
        nginx, "POST", "/echo", payload, {"Content-Type": "application/octet-stream"}
    )
    assert status == 200
    data = json.loads(body)
    assert (data["size"], data["sha256"]) == (len(payload), hashlib.sha256(payload).hexdigest())


def test_chunked_upload_is_dechunked_by_nginx(stack) -> None:
    nginx, _ = stack
    payload = os.urandom(300_000)

    def chunks():
        for start in range(0, len(payload), 65536):
            yield payload[start : start + 65536]

    connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
    connection.request("POST", "/echo", body=chunks(), encode_chunked=True)
    data = json.loads(connection.getresponse().read())
    connection.close()
    assert data["sha256"] == hashlib.sha256(payload).hexdigest()


def test_streamed_response(stack) -> None:
    nginx, _ = stack
    status, _, body = request(nginx, "GET", "/stream?1000")
    assert status == 200
    assert body == b"".join(f"chunk {i}\n".encode() for i in range(1000))


def test_404_and_500(stack) -> None:
    nginx, server = stack
    assert request(nginx, "GET", "/missing")[0] == 404
    status, _, body = request(nginx, "GET", "/boom")
    assert status == 500
    assert request(nginx, "GET", "/echo")[0] == 200
    assert "RuntimeError: boom" in server.log()


def test_big_cookie_gets_a_clear_answer(stack) -> None:
    nginx, server = stack
    status, _, body = request(nginx, "GET", "/echo", headers={"Cookie": "session=" + "x" * 6000})
    assert status == 431
    # The parser's message (which names buffer-size) goes to the log, never to the client.
    assert body == b"431 Request Header Fields Too Large\n"
    server.wait_for_log(r"invalid request block size: \d+ \(max 4096\); raise buffer-size")


def test_nginx_sees_no_upstream_errors(stack) -> None:
    nginx, _ = stack
    for path in ("/echo", "/stream?10", "/write", "/file", "/missing"):
        assert request(nginx, "GET", path)[0] in (200, 404)
    log = nginx.error_log()
    assert "upstream prematurely closed" not in log
    assert "[error]" not in log
