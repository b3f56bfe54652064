"""PEP 3333 environ, from uwsgi vars or from a parsed HTTP request.

The constant part of every environ (wsgi.version, wsgi.errors, the CGI
defaults a request may override...) is built once per listener as a
template; a request copies it and adds its own keys, which costs two dict
operations in C instead of a dozen item assignments.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import unquote_to_bytes

from appserver.response import FileWrapper
from httpproto.request_id import RequestIdSource, sane_request_id

SERVER_SOFTWARE = "appserver/0.1"


# --- request IDs ------------------------------------------------------------------
#
# Every request gets environ["REQUEST_ID"]: the X-Request-ID that edge (or another
# proxy) sent, when it is sane by httpproto.request_id's rule, else a new one.
# HTTP_X_REQUEST_ID is left as the client sent it.


class RequestIds(RequestIdSource):
    """One per handler thread (no lock); handlers are built after fork."""

    __slots__ = ()

    def for_environ(self, environ: dict[str, Any]) -> str:
        """The request's ID: a sane incoming HTTP_X_REQUEST_ID, else a new one."""
        incoming: str | None = environ.get("HTTP_X_REQUEST_ID")
        if incoming is not None and sane_request_id(incoming):
            return incoming
        return self.new()


def base_environ(*, multithread: bool, multiprocess: bool) -> dict[str, Any]:
    """The keys every environ of this worker starts with.

    The CGI defaults (method, query, protocol, port, scheme) are here so that a
    uwsgi packet that leaves them out still gives a PEP 3333 environ: the
    packet's own vars replace them.
    """
    return {
        "wsgi.version": (1, 0),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.url_scheme": "http",
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "SCRIPT_NAME": "",
        "REQUEST_METHOD": "GET",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.0",
        "SERVER_PORT": "80",
    }


def http_listener_environ(
    base: dict[str, Any], server_name: str, server_port: str
) -> dict[str, Any]:
    """The template of one ``http-socket``: its address is the default SERVER_NAME/PORT."""
    return {**base, "SERVER_NAME": server_name, "SERVER_PORT": server_port}


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
    if "HTTP_CONTENT_TYPE" in request_vars:
        del environ["HTTP_CONTENT_TYPE"]
    if "HTTP_CONTENT_LENGTH" in request_vars:
        del environ["HTTP_CONTENT_LENGTH"]
    if "UWSGI_SCHEME" in request_vars or "HTTPS" in request_vars:
        environ["wsgi.url_scheme"] = url_scheme(request_vars)
    else:
        environ["wsgi.url_scheme"] = "http"  # a var spelled wsgi.url_scheme sets nothing
    if "PATH_INFO" not in request_vars:
        # Not every client sends nginx's full set; derive what PEP 3333 requires.
        uri = request_vars.get("REQUEST_URI", "/")
        path, _, query = uri.partition("?")
        environ["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1")
        if "QUERY_STRING" not in request_vars:
            environ["QUERY_STRING"] = query
    script_name = request_vars.get("SCRIPT_NAME")
    if script_name:
        # nginx sends the full path in PATH_INFO; a SCRIPT_NAME param means "mounted here".
        script_name = script_name.rstrip("/")
        path_info = environ["PATH_INFO"]
        if path_info == script_name or path_info.startswith(script_name + "/"):
            environ["PATH_INFO"] = path_info[len(script_name) :]
        environ["SCRIPT_NAME"] = script_name
    if "SERVER_NAME" not in request_vars:
        host = request_vars.get("HTTP_HOST", "localhost")
        environ["SERVER_NAME"] = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if not request_vars.get("CONTENT_LENGTH"):
        environ.pop("CONTENT_LENGTH", None)
    if not request_vars.get("CONTENT_TYPE"):
        environ.pop("CONTENT_TYPE", None)
    return environ


# Header name as received (lower case) -> its environ key; None for a name to drop.
_HEADER_KEYS: dict[bytes, str | None] = {
    b"content-type": "CONTENT_TYPE",
    b"content-length": "CONTENT_LENGTH",
}
_HEADER_KEYS_KEPT = 512


def _header_key(raw_name: bytes) -> str | None:
    if b"_" in raw_name:
        # A header spelled with "_" would alias a "-" one in the environ (X_Forwarded_For
        # vs X-Forwarded-For); nginx and gunicorn drop them, and so do we.
        key = None
    else:
        key = "HTTP_" + raw_name.decode("latin-1").upper().replace("-", "_")
    if len(_HEADER_KEYS) >= _HEADER_KEYS_KEPT:  # the client chooses the names: bounded
        _HEADER_KEYS.clear()
        _HEADER_KEYS[b"content-type"] = "CONTENT_TYPE"
        _HEADER_KEYS[b"content-length"] = "CONTENT_LENGTH"
    _HEADER_KEYS[raw_name] = key
    return key


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
    server_name: str | None = None,
    server_port: str | None = None,
    scheme: str = "http",
) -> dict[str, Any]:
    """The environ for a request parsed from HTTP/1.x (``http-socket``).

    ``base`` is the listener's template (``http_listener_environ``); a
    ``server_name``/``server_port`` given here replaces the template's.
    """
    environ = base.copy()
    environ["REQUEST_METHOD"] = method
    environ["REQUEST_URI"] = target.decode("latin-1")
    environ["PATH_INFO"] = (
        unquote_to_bytes(path).decode("latin-1") if b"%" in path else path.decode("latin-1")
    )
    environ["QUERY_STRING"] = query.decode("latin-1")
    environ["SERVER_PROTOCOL"] = "HTTP/1.1" if http_version == "1.1" else "HTTP/" + http_version
    environ["REMOTE_ADDR"] = remote_addr
    environ["REMOTE_PORT"] = remote_port
    if server_name is not None:
        environ["SERVER_NAME"] = server_name
    if server_port is not None:
        environ["SERVER_PORT"] = server_port
    if scheme != "http":
        environ["wsgi.url_scheme"] = scheme
    keys = _HEADER_KEYS
    for raw_name, raw_value in headers:
        key = keys.get(raw_name, "")
        if key == "":
            key = _header_key(raw_name)
        if key is None:
            continue
        value = raw_value.decode("latin-1")
        if key in environ and key[0] == "H":  # a repeated header: join (RFC 9110 §5.3)
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ", ") + value
        environ[key] = value
    host = environ.get("HTTP_HOST")
    if host is not None:
        name, sep, port = host.rpartition(":")
        if sep and port.isdigit() and not name.endswith(":"):
            environ["SERVER_NAME"] = name
        else:
            environ["SERVER_NAME"] = host
    return environ
