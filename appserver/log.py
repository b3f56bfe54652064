"""The server's log lines: per-request records, the startup summary, the log stream.

The worker fills one ``RequestRecord`` per request and hands it to the
formatter ``request_formatter(config.log_format)`` chose once at boot, so the
per-request cost is one function call: uWSGI's default line is a single
f-string, and a ``log-format`` template is compiled to one ``%``-format over a
tuple of getters.  Formatters return the line without its newline.

Request fields come from the wire, so string fields are made printable
before they reach a line: a CR/LF in a uwsgi var must not forge a second log
line.  A PEP 3333 native string holding UTF-8 bytes is shown as the text it
encodes, which is what uWSGI's raw byte write looks like in a UTF-8 log.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from appserver.config import AppServerConfig

__all__ = [
    "RequestRecord",
    "compile_template",
    "format_json",
    "format_startup",
    "format_uwsgi",
    "emit",
    "log_path",
    "redirect_output",
    "request_formatter",
]

RequestFormatter = Callable[["RequestRecord"], str]


@dataclass(slots=True)
class RequestRecord:
    """One finished request, as uWSGI's ``struct wsgi_request`` knows it at log time."""

    pid: int
    worker_id: int
    request_number: int  # this worker's requests so far, this one included
    total_requests: int  # the whole server's
    remote_addr: str
    remote_user: str  # "" when none
    vars_count: int  # uwsgi vars (or environ entries from HTTP) received
    vars_bytes: int  # size of the uwsgi vars block
    started_at: float  # epoch seconds
    method: str
    uri: str  # REQUEST_URI, as received
    response_bytes: int  # body bytes sent
    msecs: float  # wall time of the request
    protocol: str  # SERVER_PROTOCOL
    status: int
    headers_count: int
    headers_bytes: int  # status line and headers, as sent
    core: int  # thread index within the worker
    # Optional, for fidelity with uWSGI's line and its log-format variables.
    app_id: int = 0  # -1 when no app handled it (static-map files); uWSGI then logs req -1
    via: str = ""  # "sendfile" (static-map), "route" or "offload": uWSGI's " via x() "
    switches: int = 1  # uWSGI's async switches; always 1 for a synchronous request
    host: str = ""
    user_agent: str = ""
    referer: str = ""
    content_length: int = 0  # request body size (CONTENT_LENGTH)


# --- making wire text safe to log -------------------------------------------------


def _escape_char(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _printable(value: str) -> str:
    # Fast path: the overwhelming majority of fields are plain printable ASCII.
    if value.isascii() and value.isprintable():
        return value
    try:
        text = value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        text = value  # not UTF-8 underneath: escape the bytes as they are
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape_char(char) for char in text)


# --- uWSGI's default line ---------------------------------------------------------


def _ctime(started_at: float) -> str:
    # ctime_r(3) of the start second, without its newline: uWSGI prints 24
    # characters, local time, day of month space-padded ("Fri Jun  4 ...").
    return time.ctime(int(started_at))


def format_uwsgi(record: RequestRecord) -> str:
    """uWSGI 2.0's default request line (``uwsgi_logit_simple`` in ``core/logging.c``).

    Its format string is ``"... => generated %llu bytes in %llu %s%s(%.*s %d) ..."``
    where the third and fourth arguments are "msecs" and " " (or
    " via sendfile() "), so one space separates "msecs" from "(HTTP/1.1 200)".
    The milliseconds are truncated to an integer, as uWSGI divides microseconds.
    """
    via = f" via {record.via}() " if record.via else " "
    app_request = record.request_number if record.app_id >= 0 else -1
    return (
        f"[pid: {record.pid}|app: {record.app_id}|req: {app_request}/{record.total_requests}] "
        f"{_printable(record.remote_addr)} ({_printable(record.remote_user)}) "
        f"{{{record.vars_count} vars in {record.vars_bytes} bytes}} "
        f"[{_ctime(record.started_at)}] {_printable(record.method)} {_printable(record.uri)} "
        f"=> generated {record.response_bytes} bytes in {max(0, int(record.msecs))} msecs{via}"
        f"({_printable(record.protocol)} {record.status}) "
        f"{record.headers_count} headers in {record.headers_bytes} bytes "
        f"({record.switches} switches on core {record.core})"
    )


# --- JSON lines -------------------------------------------------------------------


def format_json(record: RequestRecord) -> str:
    """One JSON object per line, keys in a fixed order; time is ISO-8601 UTC, ms precision."""
    return json.dumps(
        {
            "time": datetime.fromtimestamp(record.started_at, UTC).isoformat(
                timespec="milliseconds"
            ),
            "pid": record.pid,
            "worker": record.worker_id,
            "method": _printable(record.method),
            "uri": _printable(record.uri),
            "status": record.status,
            "bytes": record.response_bytes,
            "msecs": round(record.msecs, 3),
            "remote_addr": _printable(record.remote_addr),
            "protocol": _printable(record.protocol),
            "core": record.core,
        },
        separators=(",", ":"),
    )


# --- log-format templates ---------------------------------------------------------


def _ltime(started_at: float) -> str:
    # uWSGI's %(ltime): strftime("%d/%b/%Y:%H:%M:%S %z", localtime(start)), Apache style.
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(int(started_at)))


# Each getter returns text; uWSGI prints "-" for an empty value, applied by the
# compiled formatter.  Semantics follow uwsgi_register_logchunks().
_VARIABLES: dict[str, Callable[[RequestRecord], str]] = {
    # Request fields (uWSGI "offsetof" chunks).
    "uri": lambda r: _printable(r.uri),
    "method": lambda r: _printable(r.method),
    "user": lambda r: _printable(r.remote_user),
    "addr": lambda r: _printable(r.remote_addr),
    "host": lambda r: _printable(r.host),
    "proto": lambda r: _printable(r.protocol),
    "uagent": lambda r: _printable(r.user_agent),
    "referer": lambda r: _printable(r.referer),
    # Sizes and counts.
    "status": lambda r: str(r.status),
    "rsize": lambda r: str(r.response_bytes),
    "hsize": lambda r: str(r.headers_bytes),
    "size": lambda r: str(r.headers_bytes + r.response_bytes),
    "cl": lambda r: str(r.content_length),
    "vars": lambda r: str(r.vars_count),
    "pktsize": lambda r: str(r.vars_bytes),
    "headers": lambda r: str(r.headers_count),
    "switches": lambda r: str(r.switches),
    # Durations: uWSGI's msecs and micros are integers, secs a %f float.
    "msecs": lambda r: str(max(0, int(r.msecs))),
    "micros": lambda r: str(max(0, int(r.msecs * 1000))),
    "secs": lambda r: f"{max(0.0, r.msecs / 1000):f}",
    # Times of the start of the request...
    "time": lambda r: str(int(r.started_at)),
    "tmsecs": lambda r: str(int(r.started_at * 1000)),
    "tmicros": lambda r: str(int(r.started_at * 1_000_000)),
    "ctime": lambda r: _ctime(r.started_at),
    "ltime": lambda r: _ltime(r.started_at),
    # ...uWSGI's %(ftime) is ltime unless log-strftime is set, which we do not offer.
    "ftime": lambda r: _ltime(r.started_at),
    # ...and uWSGI's %(epoch) is "now" at log time, i.e. the end of the request.
    "epoch": lambda r: str(int(r.started_at + max(0.0, r.msecs) / 1000)),
    # Who served it.
    "pid": lambda r: str(r.pid),
    "wid": lambda r: str(r.worker_id),
    "core": lambda r: str(r.core),
}


def compile_template(fmt: str) -> RequestFormatter:
    """Compile a uWSGI ``log-format`` template once; the result formats one record.

    ``%(name)`` is a variable; any other text (a lone ``%`` included) is
    literal, as in uWSGI's parser.  An unknown name raises ValueError naming
    it: uWSGI would treat it as an app-set logvar and print "-", which hides
    typos, and we have no ``uwsgi.set_logvar``.  ``%(var.X)``, ``%(metric.X)``
    and the memory variables (vsz, rss...) are not supported.
    """
    literal_parts: list[str] = []
    getters: list[Callable[[RequestRecord], str]] = []
    position = 0
    while True:
        start = fmt.find("%(", position)
        if start < 0:
            literal_parts.append(fmt[position:])
            break
        end = fmt.find(")", start + 2)
        if end < 0:
            raise ValueError(f"log-format: unterminated %( at offset {start} in {fmt!r}")
        name = fmt[start + 2 : end]
        getter = _VARIABLES.get(name)
        if getter is None:
            raise ValueError(f"log-format: unknown variable %({name})")
        literal_parts.append(fmt[position:start])
        getters.append(getter)
        position = end + 1

    # One %-format with a %s per variable: literal '%' doubled so it stays text.
    template = "%s".join(part.replace("%", "%%") for part in literal_parts)
    bound = tuple(getters)

    def format_template(record: RequestRecord) -> str:
        return template % tuple([getter(record) or "-" for getter in bound])

    return format_template


def request_formatter(log_format: str | None) -> RequestFormatter:
    """The formatter for ``log-format``: None is uWSGI's line, "json" is JSON lines."""
    if log_format is None:
        return format_uwsgi
    if log_format == "json":
        return format_json
    return compile_template(log_format)


# --- the startup line -------------------------------------------------------------


def _number(value: float) -> str:
    # Whole numbers without ".0"; small rates keep three significant digits.
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def format_startup(
    config: AppServerConfig, app_description: str, mean_latency_ms: float = 100.0
) -> str:
    """One line: listeners, app, and what processes x threads can carry.

    The throughput bound is Little's law: at most ``concurrency`` requests are
    in flight, each holding its slot for the mean latency, so the server
    completes at most concurrency / latency requests per second (4 processes x
    50 threads at 500 ms is 400/s, whatever a tutorial says).  It is a ceiling:
    the GIL and CPU-bound views lower it.  ASCII only: stderr may not be UTF-8.
    """
    if mean_latency_ms <= 0:
        raise ValueError(f"mean latency must be positive, got {mean_latency_ms!r} ms")
    listeners = [
        *(f"uwsgi {address}" for address in config.sockets),
        *(f"http-socket {address}" for address in config.http_sockets),
        *(f"http {address}" for address in config.http),
    ]
    where = ", ".join(listeners) if listeners else "no listeners"
    in_flight = config.concurrency
    rate = in_flight * 1000.0 / mean_latency_ms
    processes = "process" if config.processes == 1 else "processes"
    threads = "thread" if config.threads == 1 else "threads"
    return (
        f"appserver on {where} serving {app_description}: "
        f"{config.processes} {processes} x {config.threads} {threads} = "
        f"{in_flight} requests in flight; at a mean latency of {_number(mean_latency_ms)} ms "
        f"that bounds throughput at ~{_number(rate)} requests/s"
    )


# --- the log stream ---------------------------------------------------------------
#
# Every process writes its log lines with one write(2) on file descriptor 2, so
# lines from threads and from several workers never interleave (O_APPEND keeps
# them whole in a file too).  logto/daemonize point fds 1 and 2 at the log file,
# which also catches what the app prints, as uWSGI does.


def emit(line: str) -> None:
    """Write one log line (the newline is added)."""
    os.write(2, (line + "\n").encode("utf-8", "backslashreplace"))


def log_path(config: AppServerConfig) -> str | None:
    # logto names a file without detaching; daemonize names one and detaches.
    # uWSGI keeps whichever it parsed last; we prefer the explicit logto.
    return config.logto or config.daemonize


def redirect_output(path: str) -> None:
    """Point stdout and stderr at ``path`` (appended).  Call again to reopen after rotation.

    0o640 is uWSGI's mode for its logfile.  OSError (missing directory,
    permission) propagates for the caller to report at boot.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)
