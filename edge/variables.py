"""nginx's ``$variables``: one table, one expansion, for every place that expands them.

Theory of operation
-------------------
A variable's value is bytes, computed from the ``Request`` by one getter in
``_GETTERS`` (or, for ``$http_NAME``, ``$cookie_NAME`` and ``$arg_NAME``, by
the getter of its prefix).  Every user goes through this module: the uwsgi
and HTTP proxy params, ``host_header``, ``try_files``, ``return`` bodies and
redirects; and the config loader takes the names it accepts from ``KNOWN``
and ``PREFIXES`` here, so a name that passes ``edge -t`` has a value
everywhere.

``compile`` turns a template into literal bytes and getters once (per
location, when the worker starts); ``expand`` is then one join.  The
semantics are nginx's:

- ``$http_NAME``: every value of the header, repeats joined with ``", "``
  (``"; "`` for Cookie, as nginx 1.23+); the name's ``_`` stand for ``-``.
- ``$arg_NAME``: the first argument of that name, compared case-insensitively
  (``ngx_http_arg``), not decoded.  ``$cookie_NAME``: the first cookie of that
  exact name.
- ``$request_uri``: the request target as received (path and query), and for
  an absolute-form target its path and query.
- ``$uri`` / ``$document_uri``: the normalized (decoded) path, which follows
  internal redirects.
- ``$content_length``: the body's length, which for a chunked body is known
  once the body has been read whole (the uwsgi proxy does that first).
- ``$request_id``: 32 lowercase hex digits, random, made the first time it is
  asked for and then fixed for the request (nginx 1.11.0+).  With
  ``request_id: {trust_incoming: true}`` a client's ``X-Request-ID`` of 1 to
  128 visible ASCII characters is used instead.  The random bytes are read
  from ``os.urandom`` a few KB at a time: one system call per 128 IDs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Final

from edge.exchange import Request
from httpproto.request_id import RequestIdSource, sane_request_id

Getter = Callable[[Request], bytes]
Template = tuple[bytes | Getter, ...]  # literal bytes and getters, in order

_VARIABLE: Final = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def _text(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def header(request: Request, name: bytes) -> bytes:
    """All values of a header (``name`` lower-case), repeats joined as nginx joins them."""
    values = [value for key, value in request.headers if key == name]
    if len(values) == 1:
        return values[0]
    return (b"; " if name == b"cookie" else b", ").join(values)


def cookie(request: Request, name: bytes) -> bytes:
    for key, value in request.headers:
        if key != b"cookie":
            continue
        for pair in value.split(b";"):
            cookie_name, sep, cookie_value = pair.strip().partition(b"=")
            if sep and cookie_name == name:
                return cookie_value
    return b""


def argument(request: Request, name: bytes) -> bytes:
    lowered = name.lower()
    for pair in request.query.split(b"&"):
        arg_name, _sep, arg_value = pair.partition(b"=")
        if arg_name.lower() == lowered:
            return arg_value
    return b""


def request_uri(request: Request) -> bytes:
    if request.target[:1] == b"/":
        return request.target
    return request.raw_path + (b"?" + request.query if request.query else b"")


_ids = RequestIdSource()  # one per process: a worker serves on one thread
os.register_at_fork(after_in_child=_ids.forget)
new_request_id = _ids.new


def request_id(request: Request) -> str:
    """``$request_id`` as text: made (or taken from the client) once per request."""
    found = request.request_id
    if found is None:
        incoming = request.header(b"x-request-id") if request.trusts_request_id else None
        if incoming is not None and sane_request_id(incoming):
            found = incoming.decode("ascii")
        else:
            found = new_request_id()
        request.request_id = found
    return found


def forwarded_for(request: Request) -> bytes:
    """``$proxy_add_x_forwarded_for``: the incoming X-Forwarded-For plus the client."""
    incoming = header(request, b"x-forwarded-for")
    address = request.client_ip.encode("ascii")
    return incoming + b", " + address if incoming else address


def _document_root(request: Request) -> bytes:
    # A static location's directory; a proxied one has none (nginx would show its
    # compiled-in "html" prefix, which means nothing here).
    location = request.location
    base = getattr(location.handler, "base_dir", None) if location is not None else None
    return _text(base) if base else b""


_GETTERS: Final[dict[str, Getter]] = {
    "args": lambda r: r.query,
    "query_string": lambda r: r.query,
    "is_args": lambda r: b"?" if r.query else b"",
    # nginx configs build this with a map ($http_upgrade -> "upgrade", "" -> "close");
    # ours is built in, and empty rather than "close" so that proxy_set_header leaves the
    # header out and an ordinary request keeps its pooled upstream connection.
    "connection_upgrade": lambda r: b"upgrade" if header(r, b"upgrade") else b"",
    "content_length": lambda r: b"" if r.content_length is None else b"%d" % r.content_length,
    "content_type": lambda r: header(r, b"content-type"),
    "document_root": _document_root,
    "document_uri": lambda r: _text(r.path),
    "uri": lambda r: _text(r.path),
    "host": lambda r: _text(r.host),
    "https": lambda r: b"on" if r.scheme == "https" else b"",
    "proxy_add_x_forwarded_for": forwarded_for,
    "remote_addr": lambda r: r.client_ip.encode("ascii"),
    "remote_port": lambda r: b"%d" % r.client_port,
    "request_id": lambda r: request_id(r).encode("ascii"),
    "request_method": lambda r: r.method.encode("ascii"),
    "request_uri": request_uri,
    "scheme": lambda r: r.scheme.encode("ascii"),
    "server_addr": lambda r: r.server_addr.encode("ascii"),
    "server_name": lambda r: _text(r.server.server_name[0] if r.server.server_name else ""),
    "server_port": lambda r: b"%d" % r.server_port,
    "server_protocol": lambda r: b"HTTP/" + r.http_version.encode("ascii"),
}

_PREFIXED: Final[dict[str, Callable[[Request, bytes], bytes]]] = {
    "http_": lambda r, name: header(r, name.replace(b"_", b"-")),
    "cookie_": cookie,
    "arg_": argument,
}

KNOWN: Final = frozenset(_GETTERS)
PREFIXES: Final = tuple(_PREFIXED)


def getter(name: str) -> Getter | None:
    """The getter of ``$name``, or None for a name nginx has and we do not."""
    found = _GETTERS.get(name)
    if found is not None:
        return found
    for prefix, prefixed in _PREFIXED.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            suffix = name[len(prefix) :].lower().encode("ascii")
            if prefix == "cookie_":
                suffix = name[len(prefix) :].encode("ascii")  # cookie names are case-sensitive
            return _bound(prefixed, suffix)
    return None


def _bound(prefixed: Callable[[Request, bytes], bytes], name: bytes) -> Getter:
    def get(request: Request) -> bytes:
        return prefixed(request, name)

    return get


def unknown(text: str) -> list[str]:
    """The ``$variables`` in ``text`` that have no value here ("" for a lone ``$``)."""
    bad = [
        match.group(1) or match.group(2)
        for match in _VARIABLE.finditer(text)
        if getter(match.group(1) or match.group(2)) is None
    ]
    if "$" in _VARIABLE.sub("", text):
        bad.append("")  # a lone "$" or "${" that names nothing
    return bad


def compile_template(text: str) -> Template:
    """``"$scheme://$host"`` -> ``(<scheme getter>, b"://", <host getter>)``, checked by the loader."""
    parts: list[bytes | Getter] = []
    position = 0
    for match in _VARIABLE.finditer(text):
        if match.start() > position:
            parts.append(_text(text[position : match.start()]))
        found = getter(match.group(1) or match.group(2))
        if found is None:
            raise ValueError(f"unknown variable ${match.group(1) or match.group(2)}")
        parts.append(found)
        position = match.end()
    if position < len(text) or not parts:
        parts.append(_text(text[position:]))
    return tuple(parts)


def compile_getter(text: str) -> Getter:
    """A template as one call: a constant, a single variable, or their join."""
    template = compile_template(text)
    if len(template) == 1:
        part = template[0]
        if isinstance(part, bytes):
            return _constant(part)
        return part
    return lambda request: expand(template, request)


def _constant(value: bytes) -> Getter:
    def get(_request: Request) -> bytes:
        return value

    return get


def expand(template: Template, request: Request) -> bytes:
    return b"".join(part if isinstance(part, bytes) else part(request) for part in template)


def expand_text(text: str, request: Request) -> str:
    """A template's value as text (``try_files`` paths, ``return`` bodies): bytes kept exactly."""
    if "$" not in text:
        return text
    return expand(compile_template(text), request).decode("utf-8", "surrogateescape")


def is_constant(text: str) -> bool:
    return "$" not in text
