"""Where edge's log lines go: log files that can be reopened, and the nginx-style error log.

Error-log lines copy nginx's layout so that existing habits (and grep
patterns) carry over::

    2026/11/25 20:00:00 [error] 1234#0: *5 open() "/srv/x" failed (2: No such file
    or directory), client: 10.0.0.1, server: example.com, request: "GET /x HTTP/1.1",
    host: "example.com"

(one line on the wire): local time, ``[level]``, ``PID#TID`` (always ``#0``:
one thread serves the event loop), ``*N`` the worker's connection number when
a connection is involved, the message, then the request context.  Levels are
nginx's, and a line is written when its level is at least as severe as the
configured one.

Lifecycle lines (``listening on ...``, ``spawned worker ...``, reloads,
stops) are written whatever the level: they are rare, and a server that says
nothing when it starts on port 0 cannot be found.  nginx logs them at
``notice``, which its default ``error`` level hides.

Writes are one ``os.write`` per line on an ``O_APPEND`` descriptor, so lines
from several workers sharing a file or pipe never interleave.  The write is
blocking, as nginx's is: a log that cannot keep up slows the server rather
than losing lines.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections import deque

from edge.config.schema import ErrorLogSettings

# nginx's severities, most severe first (ngx_log.h).
LEVELS: dict[str, int] = {
    "emerg": 0,
    "alert": 1,
    "crit": 2,
    "error": 3,
    "warn": 4,
    "notice": 5,
    "info": 6,
    "debug": 7,
}
RECENT_LEVEL = LEVELS["warn"]  # lines at this level or worse are kept for the status page
RECENT_LINES = 20


class LogFile:
    """A log destination: ``stdout``, ``stderr`` or a file path opened for appending.

    ``reopen()`` (SIGUSR1) opens the path again so logrotate's rename-then-signal works;
    the standard streams are never reopened.
    """

    __slots__ = ("path", "fd", "_owned")

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self._owned = False
        self.open()

    def open(self) -> None:
        if self.path == "stdout":
            self.fd, self._owned = sys.stdout.fileno(), False
        elif self.path == "stderr":
            self.fd, self._owned = sys.stderr.fileno(), False
        else:
            # Raises OSError: the caller reports it against the config (bad path, permissions).
            self.fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
            self._owned = True

    def reopen(self) -> None:
        if not self._owned:
            return
        old = self.fd
        self.open()
        os.close(old)

    def close(self) -> None:
        if self._owned and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def write(self, data: bytes) -> None:
        try:
            while data:
                written = os.write(self.fd, data)
                data = data[written:]
        except OSError:
            # A log that cannot be written (disk full, closed pipe) must not take the
            # server down with it; there is nowhere left to report it.
            pass

    def write_line(self, line: str) -> None:
        self.write(line.encode("utf-8", "backslashreplace") + b"\n")


class ErrorLog:
    """nginx-style error log at a configured level."""

    __slots__ = ("settings", "file", "threshold", "recent", "_second", "_stamp")

    def __init__(
        self, settings: ErrorLogSettings | None = None, file: LogFile | None = None
    ) -> None:
        self.settings = settings or ErrorLogSettings()
        self.file = file if file is not None else LogFile(self.settings.path)
        self.threshold = LEVELS[self.settings.level]
        # The last lines written at warn or worse (time, level, line without traceback).
        self.recent: deque[tuple[float, str, str]] = deque(maxlen=RECENT_LINES)
        self._second = -1
        self._stamp = ""

    def enabled(self, level: str) -> bool:
        return LEVELS.get(level, 3) <= self.threshold

    def log(
        self,
        level: str,
        message: str,
        *,
        connection: int | None = None,
        context: str = "",
        exc: BaseException | None = None,
        always: bool = False,
    ) -> None:
        """Write one line (plus a traceback for ``exc``) if ``level`` passes the threshold.

        ``context`` is the ``, client: ..., request: ...`` tail (see ``request_context``);
        ``always`` is for lifecycle lines that must show at any level.
        """
        if not always and LEVELS.get(level, 3) > self.threshold:
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(second))
        conn = f"*{connection} " if connection is not None else ""
        # A message built from client bytes must stay on one line.
        text = message.replace("\n", "\\n").replace("\r", "\\r")
        line = f"{self._stamp} [{level}] {os.getpid()}#0: {conn}{text}{context}"
        if LEVELS.get(level, 3) <= RECENT_LEVEL:
            self.recent.append((now, level, line))
        if exc is not None:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            line = line + "\n" + tb.rstrip("\n")
        self.file.write_line(line)

    def __call__(self, level: str, message: str) -> None:
        """The ``Callable[[str, str], None]`` shape the upstream runtime logs through."""
        self.log(level, message)

    def reopen(self) -> None:
        self.file.reopen()


def request_context(
    *,
    client: str,
    server: str,
    request: str | None,
    upstream: str | None = None,
    host: str | None = None,
) -> str:
    """nginx's tail: ``, client: IP, server: NAME, request: "...", upstream: "...", host: "..."``."""
    parts = [f", client: {client}, server: {server}"]
    if request is not None:
        parts.append(f', request: "{request}"')
    if upstream:
        parts.append(f', upstream: "{upstream}"')
    if host is not None:
        parts.append(f', host: "{host}"')
    return "".join(parts)
