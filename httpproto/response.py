"""Building response heads and the small error replies a server sends on its own.

Nothing here parses: these are the bytes that go the other way.  Each head is
built with one ``join`` and one ``encode``, since the appserver calls this for
every response.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import Final

from httpproto.errors import HttpProtocolError

# RFC 9110 §15 reason phrases, from the stdlib table (it knows 425, 429, 431, 451...).
REASON_PHRASES: Final[dict[int, str]] = {status.value: status.phrase for status in HTTPStatus}

HeaderItem = tuple[str, str] | tuple[bytes, bytes]

# The interim reply a server sends when RequestParser.waiting_for_100_continue holds.
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


def reason_phrase(status: int) -> str:
    """The standard phrase for ``status``; empty for an unknown code (RFC 9112 §4 allows it)."""
    return REASON_PHRASES.get(status, "")


def status_line(status: int | str) -> str:
    """``200`` -> ``"200 OK"``; a WSGI status string such as ``"200 OK"`` passes through."""
    if isinstance(status, int):
        return f"{status} {REASON_PHRASES.get(status, '')}"
    return status


def encode_response_head(
    status: int | str,
    headers: Iterable[HeaderItem],
    version: str = "1.1",
) -> bytes:
    """``HTTP/<version> <status>`` CRLF, the header lines, CRLF: one ``bytes``.

    ``headers`` are WSGI pairs of latin-1 ``str`` (PEP 3333) or ``bytes`` pairs.
    A CR or LF inside a name, value or status would split the head: header
    injection.  It raises ``ValueError``, which is a server fault (500) and not a
    protocol error.
    """
    parts = [f"HTTP/{version} {status_line(status)}\r\n"]
    append = parts.append
    for name, value in headers:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        append(f"{name}: {value}\r\n")
    append("\r\n")
    # Count line breaks once over the whole head, not per value: each line
    # must hold exactly one, as its CRLF.
    text = "".join(parts)
    lines = len(parts)
    if text.count("\n") != lines or text.count("\r") != lines:
        raise ValueError(f"CR or LF inside a response status or header: {text[:200]!r}")
    return text.encode("latin-1")


_WEEKDAYS: Final = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS: Final = (
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun",
    b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
)  # fmt: skip
_DATES: dict[int, bytes] = {}
_DATES_KEPT: Final = 1024


def http_date(timestamp: float) -> bytes:
    """RFC 9110's IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``) for a Unix time.

    What ``email.utils.formatdate(usegmt=True)`` gives, at a fraction of its cost
    (it goes through ``datetime`` and ``str.format``): a Last-Modified is asked for
    on every static response.  The last thousand seconds asked for are kept.
    """
    second = math.floor(timestamp)
    found = _DATES.get(second)
    if found is None:
        t = time.gmtime(second)
        found = b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
            _WEEKDAYS[t.tm_wday],
            t.tm_mday,
            _MONTHS[t.tm_mon - 1],
            t.tm_year,
            t.tm_hour,
            t.tm_min,
            t.tm_sec,
        )
        if len(_DATES) >= _DATES_KEPT:
            _DATES.clear()
        _DATES[second] = found
    return found


_STATUS_LINES: dict[int, bytes] = {}


def encode_head_bytes(status: int | str, headers: list[tuple[bytes, bytes]]) -> bytes:
    """``encode_response_head`` for ``bytes`` pairs on HTTP/1.1: the edge's hot path.

    The same checks, without a decode and re-encode of every header: status lines
    are built once per code, and the head is one ``bytes.join``.
    """
    if isinstance(status, int):
        line = _STATUS_LINES.get(status)
        if line is None:
            line = f"HTTP/1.1 {status_line(status)}\r\n".encode("latin-1")
            if 100 <= status <= 999:
                _STATUS_LINES[status] = line
    else:
        line = f"HTTP/1.1 {status}\r\n".encode("latin-1")
    parts = [line]
    extend = parts.extend
    for name, value in headers:
        extend((name, b": ", value, b"\r\n"))
    parts.append(b"\r\n")
    head = b"".join(parts)
    lines = len(headers) + 2
    if head.count(b"\n") != lines or head.count(b"\r") != lines:
        raise ValueError(f"CR or LF inside a response status or header: {head[:200]!r}")
    return head


def simple_response(
    status: int,
    body: bytes | str | None = None,
    close: bool = True,
    headers: Iterable[HeaderItem] = (),
) -> bytes:
    """A complete ``text/plain`` response; the body defaults to ``"<status> <phrase>\\n"``."""
    if body is None:
        body = f"{status_line(status)}\n"
    if isinstance(body, str):
        body = body.encode("utf-8")
    head: list[HeaderItem] = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ]
    if close:
        head.append(("Connection", "close"))
    head.extend(headers)
    return encode_response_head(status, head) + body


def error_response(exc: HttpProtocolError) -> bytes:
    """The reply to a client fault: ``exc.status_hint`` and ``Connection: close``.

    The body is only the status line: parser messages are for the log, not for
    whoever sent the bad bytes.
    """
    return simple_response(exc.status_hint, close=True)
