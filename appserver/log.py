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
import re
import sys
import time
import traceback as _traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from appserver.config import AppServerConfig

__all__ = [
    "LogEvent",
    "RequestRecord",
    "compile_encoders",
    "compile_template",
    "configure",
    "emit_app_exception",
    "emit_request",
    "format_app_exception",
    "parse_encoder",
    "raised_at",
    "request_fields",
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
    request_id: str = ""  # environ["REQUEST_ID"]: the edge's X-Request-ID, or made here


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
            "request_id": _printable(record.request_id),
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
    # Ours, not uWSGI's: the request's ID (see appserver.environ.request_id).
    "request_id": lambda r: _printable(r.request_id),
}


def _placeholders(
    text: str, opener: str, closer: str, context: str = ""
) -> Iterator[tuple[str, str | None]]:
    """(literal text, placeholder name) pairs of a template; the last has name None.

    Both template syntaxes use it: log-format's ``%(name)`` and the encoders'
    ``${name}``.  An opener with no closer raises ValueError with its offset.
    """
    position = 0
    while True:
        start = text.find(opener, position)
        if start < 0:
            yield text[position:], None
            return
        end = text.find(closer, start + len(opener))
        if end < 0:
            raise ValueError(f"{context}unterminated {opener} at offset {start} in {text!r}")
        yield text[position:start], text[start + len(opener) : end]
        position = end + len(closer)


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
    for literal, name in _placeholders(fmt, "%(", ")", "log-format: "):
        literal_parts.append(literal)
        if name is None:
            break
        getter = _VARIABLES.get(name)
        if getter is None:
            raise ValueError(f"log-format: unknown variable %({name})")
        getters.append(getter)

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


#
# Between a line and its write(2) sit two optional steps, set once per process by
# ``configure`` (the master calls it at boot; workers inherit it across fork):
#
# 1. ``log-drain`` regexps: a line any of them matches (``re.search``) is dropped.
#    They see the line as it would be printed unencoded (for a request, the
#    ``log-format`` output), as uWSGI's drains see the raw line.
# 2. the ``log-encoder`` chain (``log-req-encoder`` for request lines, when set):
#    each step turns the text into new text.  ``json`` alone is appserver's
#    structured encoder (one JSON object with fixed keys); ``json TEMPLATE``,
#    ``format TEMPLATE``, ``prefix``, ``suffix`` and ``nl`` are uWSGI's.
#
# With neither configured a line costs what it always did: one encode, one write.


@dataclass(frozen=True, slots=True)
class LogEvent:
    """What a log line is about, for the structured encoder."""

    level: str  # "info" or "error"
    record: RequestRecord | None = None  # set for a request line
    fields: dict[str, Any] | None = None  # extra keys (an app exception's)
    traceback: str | None = None  # appended to the text, or its own JSON key


EncoderStep = Callable[[str, LogEvent], str]

_ENCODERS = ("json", "format", "prefix", "suffix", "nl")
_REFUSED_ENCODERS = {
    "gzip": "compressed lines are not supported; compress the log file instead",
    "compress": "compressed lines are not supported; compress the log file instead",
}
_TEMPLATE_VARIABLES = ("msg", "msgnl", "unix", "micros", "millis", "strftime:FORMAT")


def parse_encoder(raw: str) -> tuple[str, str]:
    """``NAME[ ARGS]`` of one log-encoder entry -> (name, args); ValueError if unusable."""
    # Everything after the first space is the argument, as in uWSGI ("prefix >> ").
    name, _, args = raw.lstrip().partition(" ")
    if name.partition(":")[2]:
        raise ValueError(
            f"{name!r}: named loggers (ENCODER:LOGGER) are not supported; there is one log stream"
        )
    name = name.rstrip(":")
    if name in _REFUSED_ENCODERS:
        raise ValueError(f"encoder {name!r} is not supported ({_REFUSED_ENCODERS[name]})")
    if name not in _ENCODERS:
        raise ValueError(f"unknown encoder {name!r} (supported: {', '.join(_ENCODERS)})")
    if name in ("format", "prefix", "suffix") and not args:
        raise ValueError(f"encoder {name!r} needs an argument, e.g. {name} TEXT")
    if name == "nl" and args:
        raise ValueError("encoder 'nl' takes no argument")
    if name in ("json", "format") and args:
        _compile_encoder_template(args, escape=name == "json")  # raises on a bad ${var}
    return name, args


def _json_text(text: str) -> str:
    return json.dumps(text)[1:-1]  # the escaped body of a JSON string, without quotes


def _compile_encoder_template(template: str, *, escape: bool) -> EncoderStep:
    """uWSGI's ``format``/``json`` template: text with ``${var}`` placeholders."""
    parts: list[str | Callable[[str], str]] = []
    for literal, name in _placeholders(template, "${", "}"):
        parts.append(literal)
        if name is not None:
            parts.append(_encoder_variable(name, escape))

    def encode(text: str, event: LogEvent) -> str:
        return "".join(part if isinstance(part, str) else part(text) for part in parts)

    return encode


def _encoder_variable(name: str, escape: bool) -> Callable[[str], str]:
    quote = _json_text if escape else str
    if name == "msg":
        return quote
    if name == "msgnl":
        return lambda text: quote(text + "\n")
    if name == "unix":
        return lambda text: str(int(time.time()))
    if name == "micros":
        return lambda text: str(int(time.time() * 1_000_000))
    if name == "millis":
        return lambda text: str(int(time.time() * 1000))
    if name.startswith("strftime:"):
        pattern = name[len("strftime:") :]
        return lambda text: quote(time.strftime(pattern, time.localtime()))
    raise ValueError(
        f"unknown variable ${{{name}}} (supported: "
        + ", ".join(f"${{{variable}}}" for variable in _TEMPLATE_VARIABLES)
        + ")"
    )


_second_text: tuple[int, str] = (-1, "")


def _iso_now() -> str:
    """Now as ISO-8601 UTC with milliseconds; the text of the second is kept (a hot path)."""
    global _second_text
    now = time.time()
    second = int(now)
    cached, text = _second_text
    if cached != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_text = (second, text)
    return f"{text}.{int((now - second) * 1000):03d}+00:00"


# One encoder, made once: json.dumps(separators=...) builds a new one every call.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii


def request_fields(record: RequestRecord) -> dict[str, Any]:
    """A request's keys in the structured JSON line."""
    return {
        "request_id": _printable(record.request_id),
        "method": _printable(record.method),
        "uri": _printable(record.uri),
        "protocol": _printable(record.protocol),
        "status": record.status,
        "size": record.response_bytes,
        "duration_ms": round(max(0.0, record.msecs), 3),
        "remote_addr": _printable(record.remote_addr),
        "host": _printable(record.host),
        "user_agent": _printable(record.user_agent),
        "referer": _printable(record.referer),
        "worker": record.worker_id,
        "core": record.core,
    }


def _structured_json(text: str, event: LogEvent) -> str:
    """appserver's ``log-encoder = json``: one object, fixed keys, one line."""
    record = event.record
    if record is not None and not event.fields:
        return _request_json(text, record)
    tb = event.traceback
    if tb and text.endswith("\n" + tb):
        text = text[: -len(tb) - 1]  # the traceback gets its own key
    line: dict[str, Any] = {
        "time": _iso_now(),
        "level": event.level,
        "type": "request" if record is not None else "server",
        "pid": record.pid if record is not None else os.getpid(),
        "msg": text,
    }
    if record is not None:
        line.update(request_fields(record))
    if event.fields:
        line.update(event.fields)
    if tb:
        line["traceback"] = tb
    return _compact_json(line)


def _request_json(text: str, r: RequestRecord) -> str:
    """The request line's object, written directly: the keys and order of request_fields.

    Four times cheaper than a dict through json (every request pays it): the
    strings go through the C escaper one by one and the rest is an f-string.
    """
    q = _quote
    return (
        f'{{"time":"{_iso_now()}","level":"info","type":"request","pid":{r.pid},'
        f'"msg":{q(text)},"request_id":{q(_printable(r.request_id))},'
        f'"method":{q(_printable(r.method))},"uri":{q(_printable(r.uri))},'
        f'"protocol":{q(_printable(r.protocol))},"status":{r.status},'
        f'"size":{r.response_bytes},"duration_ms":{round(max(0.0, r.msecs), 3)!r},'
        f'"remote_addr":{q(_printable(r.remote_addr))},"host":{q(_printable(r.host))},'
        f'"user_agent":{q(_printable(r.user_agent))},"referer":{q(_printable(r.referer))},'
        f'"worker":{r.worker_id},"core":{r.core}}}'
    )


def _prefix_step(prefix: str) -> EncoderStep:
    return lambda text, event: prefix + text


def _suffix_step(suffix: str) -> EncoderStep:
    return lambda text, event: text + suffix


def compile_encoders(specs: tuple[tuple[str, str], ...]) -> tuple[EncoderStep, ...]:
    """The encoder chain for parsed ``log-encoder`` entries, in order."""
    steps: list[EncoderStep] = []
    for name, args in specs:
        if name == "json" and not args:
            steps.append(_structured_json)
        elif name in ("json", "format"):
            steps.append(_compile_encoder_template(args, escape=name == "json"))
        elif name == "prefix":
            steps.append(_prefix_step(args))
        elif name == "suffix":
            steps.append(_suffix_step(args))
        elif name == "nl":
            steps.append(lambda text, event: text + "\n")
        else:  # parse_encoder admits nothing else
            raise ValueError(f"unknown encoder {name!r}")
    return tuple(steps)


@dataclass(slots=True)
class _Pipeline:
    drains: tuple[re.Pattern[str], ...] = ()
    encoders: tuple[EncoderStep, ...] = ()
    request_encoders: tuple[EncoderStep, ...] = ()
    tracebacks: bool = True


_pipeline = _Pipeline()


def configure(config: AppServerConfig) -> None:
    """Set this process's drains, encoders and traceback switch from the config."""
    global _pipeline
    encoders = compile_encoders(config.log_encoders)
    _pipeline = _Pipeline(
        drains=tuple(re.compile(pattern) for pattern in config.log_drains),
        encoders=encoders,
        request_encoders=compile_encoders(config.log_req_encoders)
        if config.log_req_encoders
        else encoders,
        tracebacks=config.log_traceback,
    )


def _write(text: str) -> None:
    os.write(2, text.encode("utf-8", "backslashreplace"))


def _drained(pipeline: _Pipeline, text: str) -> bool:
    return any(pattern.search(text) for pattern in pipeline.drains)


def _encoded(steps: tuple[EncoderStep, ...], text: str, event: LogEvent) -> str:
    for step in steps:
        text = step(text, event)
    return text if text.endswith("\n") else text + "\n"  # `nl` or ${msgnl}: one newline


def emit(line: str, *, level: str = "info", fields: dict[str, Any] | None = None) -> None:
    """Write one log line (the newline is added)."""
    pipeline = _pipeline
    if pipeline.drains and _drained(pipeline, line):
        return
    if pipeline.encoders:
        _write(_encoded(pipeline.encoders, line, LogEvent(level, fields=fields)))
    else:
        _write(line + "\n")


def emit_request(line: str, record: RequestRecord) -> None:
    """Write one request line, ``line`` being ``record`` as the request formatter made it."""
    pipeline = _pipeline
    if pipeline.drains and _drained(pipeline, line):
        return
    if pipeline.request_encoders:
        _write(_encoded(pipeline.request_encoders, line, LogEvent("info", record=record)))
    else:
        _write(line + "\n")


# --- app exceptions -----------------------------------------------------------------


def _exception_name(exc: BaseException) -> str:
    # As a traceback names it: builtins bare, everything else with its module.
    kind = type(exc)
    module = kind.__module__
    if module in ("builtins", "__main__"):
        return kind.__qualname__
    return f"{module}.{kind.__qualname__}"


_MESSAGE_MAX = 1000


def _exception_message(exc: BaseException) -> str:
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not cost the log line
        message = f"<{type(exc).__name__}.__str__ failed>"
    if len(message) > _MESSAGE_MAX:
        message = message[:_MESSAGE_MAX] + "..."
    return _printable(message)


def raised_at(exc: BaseException) -> tuple[str, int] | None:
    """(file, line) of the innermost frame of ``exc``'s traceback: where it was raised."""
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename, tb.tb_lineno


def format_app_exception(
    exc: BaseException, request_id: str, method: str, uri: str, where: str = ""
) -> tuple[str, dict[str, Any]]:
    """The one summary line of an app exception, and its keys for the JSON encoder.

    ``app exception request_id=ID GET /boom: ZeroDivisionError: division by zero
    (at /app/views.py:42)``; ``where`` qualifies it (``in close()``).
    """
    name = _exception_name(exc)
    message = _exception_message(exc)
    location = raised_at(exc)
    label = f"app exception {where} " if where else "app exception "
    line = (
        f"{label}request_id={_printable(request_id) or '-'} "
        f"{_printable(method)} {_printable(uri)}: {name}" + (f": {message}" if message else "")
    )
    fields: dict[str, Any] = {
        "request_id": _printable(request_id),
        "method": _printable(method),
        "uri": _printable(uri),
        "exception": name,
        "exception_message": message,
    }
    if location is not None:
        line += f" (at {_printable(location[0])}:{location[1]})"
        fields["file"] = _printable(location[0])
        fields["line"] = location[1]
    return line, fields


def emit_app_exception(
    exc: BaseException, request_id: str, method: str, uri: str, where: str = ""
) -> None:
    """Log an app exception: its summary line, then (``log-traceback``) the traceback.

    Summary and traceback go out in one write, so another thread's line never
    lands between them; the JSON encoder puts the traceback in its own key.
    """
    pipeline = _pipeline
    line, fields = format_app_exception(exc, request_id, method, uri, where)
    tb = None
    if pipeline.tracebacks:
        tb = "".join(_traceback.format_exception(exc)).rstrip()
    text = f"{line}\n{tb}" if tb else line
    if pipeline.drains and _drained(pipeline, text):
        return
    if pipeline.encoders:
        _write(_encoded(pipeline.encoders, text, LogEvent("error", fields=fields, traceback=tb)))
    else:
        _write(text + "\n")


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
