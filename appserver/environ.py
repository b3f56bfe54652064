"""PEP 3333 environ, from uwsgi vars or from a parsed HTTP request.

The constant part of every environ (wsgi.version, wsgi.errors, the CGI
defaults a request may override...) is built once per listener as a
template; a request copies it and adds its own keys, which costs two dict
operations in C instead of a dozen item assignments.
"""

from __future__ import annotations

import os
import sys
from typing import Any
from urllib.parse import unquote_to_bytes

from appserver.response import FileWrapper

SERVER_SOFTWARE = "appserver/0.1"

# --- request IDs ------------------------------------------------------------------
#
# Every request gets environ["REQUEST_ID"]: the X-Request-ID that edge (or another
# proxy) sent, when it is sane, else 32 random lowercase hex digits made here.  The
# rule is edge's (edge.variables.sane_request_id): 1 to 128 visible ASCII
# characters, so no space, control character or non-ASCII byte can reach a log
# line through it.  HTTP_X_REQUEST_ID is left as the client sent it.

REQUEST_ID_MAX = 128
_ID_BATCH = 2048  # random bytes read at once: 128 IDs per os.urandom call


def sane_request_id(value: str) -> bool:
    """1 to 128 visible ASCII characters (0x21-0x7e)."""
    # For ASCII, isprintable() is 0x20-0x7e; the space is the one to exclude.
    return 0 < len(value) <= REQUEST_ID_MAX and value.isascii() and value.isprintable() and (
        " " not in value
    )


class RequestIds:
    """Makes new request IDs: 32 lowercase hex digits (128 random bits) each.

    One per handler thread, so no lock: each takes from its own batch cut from
    one ``os.urandom`` call (128 IDs a call).  Handlers are built in the worker
    after fork, so two workers never share a batch.
    """

    __slots__ = ("_batch",)

    def __init__(self) -> None:
        self._batch: list[str] = []

    def new(self) -> str:
        try:
            return self._batch.pop()
        except IndexError:
            digits = os.urandom(_ID_BATCH).hex()
            self._batch = [digits[at : at + 32] for at in range(0, len(digits), 32)]
            return self._batch.pop()

    def for_environ(self, environ: dict[str, Any]) -> str:
        """The request's ID: a sane incoming HTTP_X_REQUEST_ID, else a new one."""
        incoming: str | None = environ.get("HTTP_X_REQUEST_ID")
        # sane_request_id, inlined: this runs once per request.
        if (
            incoming is not None
            and 0 < len(incoming) <= REQUEST_ID_MAX
            and incoming.isascii()
            and incoming.isprintable()
            and " " not in incoming
        ):
            return incoming
        try:
            return self._batch.pop()
        except IndexError:
            return self.new()
