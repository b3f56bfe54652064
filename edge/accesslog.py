"""Access-log lines: nginx's ``combined`` format exactly, a JSON format, and ``log_format``.

``combined`` is ``ngx_http_log_module``'s built-in::

    $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    "$http_referer" "$http_user_agent"

Variables that were never set (no Referer header, no Basic auth user) print
as ``-``; a header that is present but empty prints as nothing, as in nginx.
Variable values are escaped with ``ngx_http_log_escape``: bytes 0x00-0x1F,
``"``, ``\\`` and 0x7F-0xFF become ``\\xHH`` (upper-case hex), so a log line
is always one line of ASCII whatever a client sends.

A ``log_formats`` entry is nginx's ``log_format NAME escape=... STRING``: the
string's ``$variables`` (``LOG_VARIABLES``) are replaced per line, escaped
as nginx does for its ``escape`` mode: ``default`` as above (unset: ``-``),
``json`` with ``ngx_escape_json`` (``"``, ``\\`` and control characters, so the
value fits in a JSON string; unset: empty), ``none`` not at all.

Cheap per request: the common case (nothing to escape) is one regex scan per
field, and ``$time_local`` is formatted once per second, as nginx caches it.
Pure: the caller passes wall-clock time in the entry; nothing here writes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.config.schema import LogFormat, LogFormatSpec

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ESCAPE_RE = re.compile(rb'[\x00-\x1f"\\\x7f-\xff]')

LogValue = bytes | str | None


@dataclass(slots=True)
class AccessEntry:
    """What one finished request contributes to the access log.

    Byte strings are logged exactly as received; ``str`` values are taken as UTF-8.
    """

    remote_addr: str
    time: float  # wall-clock epoch seconds when the request finished ($time_local)
    request_line: LogValue  # "GET /path?q HTTP/1.1" as received; None if none was read
    status: int
    body_bytes_sent: int = 0
    http_referer: LogValue = None
    http_user_agent: LogValue = None
    remote_user: LogValue = None
    # Used by the json format only.
    request_time: float = 0.0  # seconds from first byte read to last byte sent
    http_host: LogValue = None
    http_x_forwarded_for: LogValue = None
    upstream_addr: str | None = None
    upstream_status: int | None = None
    upstream_response_time: float | None = None
    cache_status: str | None = None  # HIT / MISS, when the location has a cache
    request_id: str | None = None  # $request_id, when the format prints it


def escape(value: LogValue) -> str:
    """nginx's ``ngx_http_log_escape``; None (variable not found) is ``-``."""
    if value is None:
        return "-"
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if _ESCAPE_RE.search(data) is None:
        return data.decode("ascii")
    return _ESCAPE_RE.sub(lambda m: b"\\x%02X" % m.group()[0], data).decode("ascii")


def remote_user(authorization: bytes | str | None) -> bytes | None:
    """``$remote_user``: the user name of an ``Authorization: Basic`` header, else None."""
    if not authorization:
        return None
    raw = authorization.encode("latin-1") if isinstance(authorization, str) else authorization
    scheme, _, credentials = raw.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, _ = decoded.partition(b":")
    return user if sep else None


class AccessLogFormatter:
    """Turns ``AccessEntry`` into a line (no newline) in the configured format.

    ``utc_offset`` (seconds east of UTC) fixes the time zone for tests; None
    uses the local zone, as nginx does.
    """

    __slots__ = ("format", "wants_request_id", "_utc_offset", "_second", "_local", "_iso")

    def __init__(
        self,
        log_format: LogFormat = "combined",
        utc_offset: int | None = None,
        formats: tuple[LogFormatSpec, ...] = (),
    ) -> None:
        self._utc_offset = utc_offset
        self._second = -1
        self._local = ""
        self._iso = ""
        self.format: Callable[[AccessEntry], str]
        # Whether the caller must give the entry a request ID (made only when printed).
        self.wants_request_id = log_format == "json"
        if log_format == "json":
            self.format = self._json
        elif log_format == "combined":
            self.format = self._combined
        else:
            spec = next(spec for spec in formats if spec.name == log_format)
            parts = _compile(spec.format, spec.escape)
            self.wants_request_id = any(
                not isinstance(part, str) and part[0] is _LOG_GETTERS["request_id"]
                for part in parts
            )
            self.format = lambda entry: self._custom(parts, entry)

    def time_local(self, when: float) -> str:
        """``28/Sep/1970:12:00:00 +0600``."""
        self._refresh(when)
        return self._local

    def time_iso8601(self, when: float) -> str:
        """``1970-09-28T12:00:00+06:00``."""
        self._refresh(when)
        return self._iso

    def _refresh(self, when: float) -> None:
        second = int(when // 1)
        if second == self._second:
            return
        if self._utc_offset is None:
            tm = time.localtime(second)
            offset = tm.tm_gmtoff
        else:
            offset = self._utc_offset
            tm = time.gmtime(second + offset)
        sign = "+" if offset >= 0 else "-"
        hours, minutes = divmod(abs(offset) // 60, 60)
        clock = f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
        self._local = (
            f"{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year}:{clock} "
            f"{sign}{hours:02d}{minutes:02d}"
        )
        self._iso = (
            f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T{clock}"
            f"{sign}{hours:02d}:{minutes:02d}"
        )
        self._second = second

    def _combined(self, entry: AccessEntry) -> str:
        return (
            f"{escape(entry.remote_addr)} - {escape(entry.remote_user)} "
            f"[{self.time_local(entry.time)}] "
            f'"{escape(entry.request_line)}" {entry.status:03d} {max(entry.body_bytes_sent, 0)} '
            f'"{escape(entry.http_referer)}" "{escape(entry.http_user_agent)}"'
        )

    def _json(self, entry: AccessEntry) -> str:
        record = {
            "time": self.time_iso8601(entry.time),
            "remote_addr": entry.remote_addr,
            "remote_user": _text(entry.remote_user),
            "request": _text(entry.request_line),
            "status": entry.status,
            "body_bytes_sent": max(entry.body_bytes_sent, 0),
            "request_time": round(entry.request_time, 3),
            "http_referer": _text(entry.http_referer),
            "http_user_agent": _text(entry.http_user_agent),
            "http_host": _text(entry.http_host),
            "http_x_forwarded_for": _text(entry.http_x_forwarded_for),
            "upstream_addr": entry.upstream_addr,
            "upstream_status": entry.upstream_status,
            "upstream_response_time": None
            if entry.upstream_response_time is None
            else round(entry.upstream_response_time, 3),
            "cache_status": entry.cache_status,
            "request_id": entry.request_id,
        }
        # ensure_ascii keeps the line 7-bit like combined; JSON's own escaping
        # handles quotes and control characters.
        return json.dumps(record, separators=(",", ":"))

    def _custom(
        self, parts: tuple[str | tuple[_LogGetter, _Escape], ...], entry: AccessEntry
    ) -> str:
        return "".join(
            part if isinstance(part, str) else part[1](part[0](entry, self)) for part in parts
        )


# --- log_format -----------------------------------------------------------------------

BUILT_IN_FORMATS = ("combined", "json")
_LogGetter = Callable[[AccessEntry, AccessLogFormatter], LogValue]
_Escape = Callable[[LogValue], str]
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.3f}"


_LOG_GETTERS: dict[str, _LogGetter] = {
    "remote_addr": lambda e, f: e.remote_addr,
    "remote_user": lambda e, f: e.remote_user,
    "time_local": lambda e, f: f.time_local(e.time),
    "time_iso8601": lambda e, f: f.time_iso8601(e.time),
    "msec": lambda e, f: f"{e.time:.3f}",
    "request": lambda e, f: e.request_line,
    "status": lambda e, f: f"{e.status:03d}",
    "body_bytes_sent": lambda e, f: str(max(e.body_bytes_sent, 0)),
    "request_time": lambda e, f: f"{e.request_time:.3f}",
    "http_referer": lambda e, f: e.http_referer,
    "http_user_agent": lambda e, f: e.http_user_agent,
    "http_host": lambda e, f: e.http_host,
    "http_x_forwarded_for": lambda e, f: e.http_x_forwarded_for,
    "upstream_addr": lambda e, f: e.upstream_addr,
    "upstream_status": lambda e, f: None if e.upstream_status is None else str(e.upstream_status),
    "upstream_response_time": lambda e, f: _seconds(e.upstream_response_time),
    "upstream_cache_status": lambda e, f: e.cache_status,
    "request_id": lambda e, f: e.request_id,
}
LOG_VARIABLES = frozenset(_LOG_GETTERS)
_JSON_ESCAPES = {
    0x22: '\\"',
    0x5C: "\\\\",
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
    0x08: "\\b",
    0x0C: "\\f",
}
_JSON_ESCAPE_RE = re.compile(r'[\x00-\x1f"\\]')


def escape_json(value: LogValue) -> str:
    """nginx's ``ngx_escape_json``; an unset variable is empty."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")
    if _JSON_ESCAPE_RE.search(text) is None:
        return text
    return _JSON_ESCAPE_RE.sub(
        lambda m: _JSON_ESCAPES.get(ord(m.group()), f"\\u{ord(m.group()):04x}"), text
    )


def _unescaped(value: LogValue) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")


_ESCAPES: dict[str, _Escape] = {"default": escape, "json": escape_json, "none": _unescaped}


def unknown_log_variables(text: str) -> list[str]:
    """The ``$variables`` of a log format that edge cannot print."""
    return [
        match.group(1) or match.group(2)
        for match in _VARIABLE.finditer(text)
        if (match.group(1) or match.group(2)) not in _LOG_GETTERS
    ]


def _compile(text: str, mode: str) -> tuple[str | tuple[_LogGetter, _Escape], ...]:
    parts: list[str | tuple[_LogGetter, _Escape]] = []
    position = 0
    for match in _VARIABLE.finditer(text):
        if match.start() > position:
            parts.append(text[position : match.start()])
        parts.append((_LOG_GETTERS[match.group(1) or match.group(2)], _ESCAPES[mode]))
        position = match.end()
    if position < len(text):
        parts.append(text[position:])
    return tuple(parts)


def _text(value: LogValue) -> str | None:
    # Invalid UTF-8 becomes "\xHH" text rather than breaking the JSON document.
    if value is None or isinstance(value, str):
        return value
    return value.decode("utf-8", "backslashreplace")
