"""Logging glue: a handler that always writes to the *current* ``sys.stderr``.

``logging.StreamHandler`` binds the stream object once, when the logging config
is applied.  Servers and test runners swap ``sys.stderr`` after that (pytest's
capture, a daemonized worker), and a handler holding the old object then
writes into a closed file.  Looking the stream up at emit time avoids that.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO


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
