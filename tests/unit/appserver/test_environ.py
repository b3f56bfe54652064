from __future__ import annotations

import io
import sys
from wsgiref.validate import check_environ

import pytest

from appserver.environ import base_environ, environ_from_http, environ_from_vars, url_scheme
from appserver.response import FileWrapper

# What nginx's uwsgi_params (plus two headers) sends for GET /caf%C3%A9?q=1.
NGINX_VARS = {
    "QUERY_STRING": "q=1",
    "REQUEST_METHOD": "GET",
    "CONTENT_TYPE": "",
    "CONTENT_LENGTH": "",
    "REQUEST_URI": "/caf%C3%A9?q=1",
    "PATH_INFO": "/café".encode().decode("latin-1"),
    "DOCUMENT_ROOT": "/usr/share/nginx/html",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REQUEST_SCHEME": "http",
    "REMOTE_ADDR": "10.0.0.7",
    "REMOTE_PORT": "51234",
    "SERVER_PORT": "80",
    "SERVER_NAME": "example.com",
    "HTTP_HOST": "example.com",
    "HTTP_CONTENT_TYPE": "text/plain",
    "HTTP_USER_AGENT": "curl/8",
}


@pytest.fixture
def base() -> dict:
    return base_environ(multithread=True, multiprocess=True)


def with_input(environ: dict) -> dict:
    environ["wsgi.input"] = io.BytesIO(b"")
    return environ


def test_base_environ_is_pep3333(base) -> None:
    assert base["wsgi.version"] == (1, 0)
    assert base["wsgi.errors"] is sys.stderr
    assert base["wsgi.multithread"] is True and base["wsgi.multiprocess"] is True
    assert base["wsgi.run_once"] is False
    assert base["wsgi.file_wrapper"] is FileWrapper


def test_environ_from_nginx_vars(base) -> None:
    environ = environ_from_vars(base, dict(NGINX_VARS))
    check_environ(with_input(environ))  # wsgiref's PEP 3333 checks
    assert environ["PATH_INFO"].encode("latin-1").decode() == "/café"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["QUERY_STRING"] == "q=1"
    assert environ["wsgi.url_scheme"] == "http"
    # Empty CONTENT_* are removed; nginx's HTTP_CONTENT_TYPE duplicate is dropped.
    assert "CONTENT_LENGTH" not in environ and "CONTENT_TYPE" not in environ
    assert "HTTP_CONTENT_TYPE" not in environ
    assert environ["HTTP_USER_AGENT"] == "curl/8"
    # The base is copied, never changed.
    assert "PATH_INFO" not in base


@pytest.mark.parametrize(
    ("extra", "scheme"),
    [
        ({}, "http"),
        ({"HTTPS": "on"}, "https"),
        ({"HTTPS": "1"}, "https"),
        ({"HTTPS": "off"}, "http"),
        ({"UWSGI_SCHEME": "https"}, "https"),
        ({"UWSGI_SCHEME": "http", "HTTPS": "on"}, "http"),
    ],
)
def test_url_scheme(extra, scheme) -> None:
    assert url_scheme(extra) == scheme


def test_script_name_var_moves_the_prefix(base) -> None:
    environ = environ_from_vars(
        base, {**NGINX_VARS, "PATH_INFO": "/app/items/3", "SCRIPT_NAME": "/app/"}
    )
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/app", "/items/3")
    environ = environ_from_vars(base, {**NGINX_VARS, "PATH_INFO": "/app", "SCRIPT_NAME": "/app"})
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/app", "")


def test_minimal_vars_get_the_required_keys(base) -> None:
    environ = environ_from_vars(base, {"REQUEST_URI": "/a%20b?x=1", "HTTP_HOST": "h:8080"})
    check_environ(with_input(environ))
    assert environ["PATH_INFO"] == "/a b"
    assert environ["QUERY_STRING"] == "x=1"
    assert environ["REQUEST_METHOD"] == "GET"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("h", "80")


def test_environ_from_http(base) -> None:
    environ = environ_from_http(
        base,
        method="POST",
        target=b"/caf%C3%A9?q=%E6%96%87",
        path=b"/caf%C3%A9",
        query=b"q=%E6%96%87",
        http_version="1.1",
        headers=[
            (b"host", b"example.com:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", b"2"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
            (b"accept", b"text/html"),
            (b"accept", b"*/*"),
            (b"x_forwarded_for", b"6.6.6.6"),  # underscore: dropped (spoofing)
        ],
        remote_addr="127.0.0.1",
        remote_port="40000",
        server_name="0.0.0.0",
        server_port="8000",
    )
    check_environ(with_input(environ))
    assert environ["PATH_INFO"].encode("latin-1").decode() == "/café"
    assert environ["REQUEST_URI"] == "/caf%C3%A9?q=%E6%96%87"
    assert environ["CONTENT_TYPE"] == "application/json" and environ["CONTENT_LENGTH"] == "2"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["HTTP_ACCEPT"] == "text/html, */*"
    assert "HTTP_X_FORWARDED_FOR" not in environ
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.com", "8000")
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
