"""Logging glue: the request ID on every line, and a handler that writes to the current stderr.

``request_id`` holds the ID of the request this thread (or task) is serving;
``RequestIdMiddleware`` sets it and ``RequestIdFilter`` copies it into every
record as ``%(request_id)s`` ("-" outside a request), so a Django log line
can be found next to edge's access line and appserver's request line.

``StderrHandler`` always writes to the *current* ``sys.stderr``.

``logging.StreamHandler`` binds the stream object once, when the logging config
is applied.  Servers and test runners swap ``sys.stderr`` after that (pytest's
capture, a daemonized worker), and a handler holding the old object then
writes into a closed file.  Looking the stream up at emit time avoids that.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import TextIO

request_id: ContextVar[str] = ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id``: the ID of the request being served, else "-"."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class StderrHandler(logging.StreamHandler[TextIO]):
    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        # StreamHandler.__init__ and setStream assign here; the property wins.
        pass
