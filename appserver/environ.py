"""PEP 3333 environ, from uwsgi vars or from a parsed HTTP request.

The constant part of every environ (wsgi.version, wsgi.errors, ...) is built
once per worker as ``base``; a request copies it and adds its own keys, which
costs two dict operations in C instead of a dozen item assignments.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import unquote_to_bytes

from appserver.response import FileWrapper

SERVER_SOFTWARE = "appserver/0.1"


def base_environ(*, multithread: bool, multiprocess: bool) -> dict[str, Any]:
    return {
        "wsgi.version": (1, 0),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "SCRIPT_NAME": "",
    }


def url_scheme(request_vars: dict[str, str]) -> str:
    # uWSGI's rule (plugins/python/wsgi_subhandler.c): UWSGI_SCHEME wins, then HTTPS on/1.
    scheme = request_vars.get("UWSGI_SCHEME")
    if scheme:
        return scheme
    https = request_vars.get("HTTPS")
    if https and https.lower() in ("on", "1"):
        return "https"
    return "http"


def environ_from_vars(base: dict[str, Any], request_vars: dict[str, str]) -> dict[str, Any]:
    """The environ for a uwsgi request: nginx's uwsgi_params plus HTTP_* headers."""
    environ = base.copy()
    environ.update(request_vars)
    # nginx forwards every header as HTTP_*, Content-Type and Content-Length too;
    # CGI (and PEP 3333) name those two without the prefix, and only that way.
    environ.pop("HTTP_CONTENT_TYPE", None)
    environ.pop("HTTP_CONTENT_LENGTH", None)
    environ["wsgi.url_scheme"] = url_scheme(request_vars)
    if "PATH_INFO" not in request_vars:
        # Not every client sends nginx's full set; derive what PEP 3333 requires.
        uri = request_vars.get("REQUEST_URI", "/")
        path, _, query = uri.partition("?")
        environ["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1")
        environ.setdefault("QUERY_STRING", query)
    else:
        environ.setdefault("QUERY_STRING", "")
    script_name = request_vars.get("SCRIPT_NAME")
    if script_name:
        # nginx sends the full path in PATH_INFO; a SCRIPT_NAME param means "mounted here".
        script_name = script_name.rstrip("/")
        path_info = environ["PATH_INFO"]
        if path_info == script_name or path_info.startswith(script_name + "/"):
            environ["PATH_INFO"] = path_info[len(script_name) :]
        environ["SCRIPT_NAME"] = script_name
    environ.setdefault("REQUEST_METHOD", "GET")
    environ.setdefault("SERVER_PROTOCOL", "HTTP/1.0")
    if "SERVER_NAME" not in environ:
        host = request_vars.get("HTTP_HOST", "localhost")
        environ["SERVER_NAME"] = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    environ.setdefault("SERVER_PORT", "80")
    if not environ.get("CONTENT_LENGTH"):
        environ.pop("CONTENT_LENGTH", None)
    if not environ.get("CONTENT_TYPE"):
        environ.pop("CONTENT_TYPE", None)
    return environ


def environ_from_http(
    base: dict[str, Any],
    *,
    method: str,
    target: bytes,
    path: bytes,
    query: bytes,
    http_version: str,
    headers: list[tuple[bytes, bytes]],
    remote_addr: str,
    remote_port: str,
    server_name: str,
    server_port: str,
    scheme: str = "http",
) -> dict[str, Any]:
    """The environ for a request parsed from HTTP/1.x (``http-socket``)."""
    environ = base.copy()
    environ["REQUEST_METHOD"] = method
    environ["REQUEST_URI"] = target.decode("latin-1")
    environ["PATH_INFO"] = (
        unquote_to_bytes(path).decode("latin-1") if b"%" in path else path.decode("latin-1")
    )
    environ["QUERY_STRING"] = query.decode("latin-1")
    environ["SERVER_PROTOCOL"] = "HTTP/" + http_version
    environ["REMOTE_ADDR"] = remote_addr
    environ["REMOTE_PORT"] = remote_port
    environ["SERVER_NAME"] = server_name
    environ["SERVER_PORT"] = server_port
    environ["wsgi.url_scheme"] = scheme
    for raw_name, raw_value in headers:
        if b"_" in raw_name:
            # A header spelled with "_" would alias a "-" one in the environ (X_Forwarded_For
            # vs X-Forwarded-For); nginx and gunicorn drop them, and so do we.
            continue
        value = raw_value.decode("latin-1")
        if raw_name == b"content-type":
            environ["CONTENT_TYPE"] = value
            continue
        if raw_name == b"content-length":
            environ["CONTENT_LENGTH"] = value
            continue
        key = "HTTP_" + raw_name.decode("latin-1").upper().replace("-", "_")
        previous = environ.get(key)
        if previous is not None:
            value = previous + ("; " if key == "HTTP_COOKIE" else ", ") + value
        environ[key] = value
    if "HTTP_HOST" in environ:
        host = environ["HTTP_HOST"]
        name, sep, port = host.rpartition(":")
        if sep and port.isdigit() and not name.endswith(":"):
            environ["SERVER_NAME"] = name
        else:
            environ["SERVER_NAME"] = host
    return environ
