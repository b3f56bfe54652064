"""edge.accesslog: nginx's combined format byte for byte, escaping, and the json format."""

from __future__ import annotations

import base64
import calendar
import json
import time
from collections.abc import Iterator

import pytest

from edge.accesslog import AccessEntry, AccessLogFormatter, escape, remote_user

# nginx's documentation example: 28/Sep/1970:12:00:00 +0600 is 06:00 UTC.
SEP_28_1970_NOON_PLUS6 = calendar.timegm((1970, 9, 28, 6, 0, 0, 0, 0, 0))
PLUS6 = 6 * 3600


def entry(**overrides: object) -> AccessEntry:
    fields: dict[str, object] = {
        "remote_addr": "127.0.0.1",
        "time": SEP_28_1970_NOON_PLUS6 + 0.25,
        "request_line": b"GET /index.html?q=1 HTTP/1.1",
        "status": 200,
        "body_bytes_sent": 612,
        "http_referer": None,
        "http_user_agent": b"curl/8.5.0",
    }
    fields.update(overrides)
    return AccessEntry(**fields)  # type: ignore[arg-type]


def test_combined_format_exactly() -> None:
    line = AccessLogFormatter("combined", utc_offset=PLUS6).format(entry())
    assert line == (
        '127.0.0.1 - - [28/Sep/1970:12:00:00 +0600] "GET /index.html?q=1 HTTP/1.1" '
        '200 612 "-" "curl/8.5.0"'
    )


def test_combined_with_every_field() -> None:
    line = AccessLogFormatter(utc_offset=-(3 * 3600 + 30 * 60)).format(
        entry(
            remote_addr="::1",
            remote_user=b"alice",
            status=404,
            body_bytes_sent=0,
            http_referer=b"https://example.com/",
            time=calendar.timegm((2024, 1, 2, 3, 4, 5, 0, 0, 0)),
        )
    )
    assert line == (
        '::1 - alice [01/Jan/2024:23:34:05 -0330] "GET /index.html?q=1 HTTP/1.1" '
        '404 0 "https://example.com/" "curl/8.5.0"'
    )


def test_fields_split_like_nginx_log_parsers_expect() -> None:
    line = AccessLogFormatter(utc_offset=0).format(entry(http_referer=b"-x"))
    head, request, status_bytes, referer, agent = (
        line.split(' "')[0],
        line.split('"')[1],
        line.split('"')[2].strip().split(" "),
        line.split('"')[3],
        line.split('"')[5],
    )
    assert head == "127.0.0.1 - - [28/Sep/1970:06:00:00 +0000]"
    assert request == "GET /index.html?q=1 HTTP/1.1"
    assert status_bytes == ["200", "612"]
    assert (referer, agent) == ("-x", "curl/8.5.0")


def test_missing_is_dash_but_empty_header_is_empty() -> None:
    formatter = AccessLogFormatter(utc_offset=0)
    assert formatter.format(entry(http_user_agent=None)).endswith('"-" "-"')
    assert formatter.format(entry(http_user_agent=b"", http_referer=b"")).endswith('"" ""')
    assert '] "-" 400 0' in formatter.format(
        entry(request_line=None, status=400, body_bytes_sent=0)
    )


def test_status_is_three_digits_and_bytes_never_negative() -> None:
    line = AccessLogFormatter(utc_offset=0).format(entry(status=0, body_bytes_sent=-5))
    assert '" 000 0 "' in line


def nginx_escape(data: bytes) -> str:
    """ngx_http_log_escape, written out from its bitmap table."""
    table = [0xFFFFFFFF, 0x00000004, 0x10000000, 0x80000000] + [0xFFFFFFFF] * 4
    out = []
    for byte in data:
        if table[byte >> 5] & (1 << (byte & 0x1F)):
            out.append(f"\\x{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def test_escape_matches_nginx_for_every_byte() -> None:
    every = bytes(range(256))
    assert escape(every) == nginx_escape(every)
    escaped = {chr(b) for b in range(256) if escape(bytes([b])) != chr(b)}
    expected = {chr(b) for b in [*range(0x20), 0x22, 0x5C, *range(0x7F, 0x100)]}
    assert escaped == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'GET /"quoted"\\ HTTP/1.1', "GET /\\x22quoted\\x22\\x5C HTTP/1.1"),
        (b"\x16\x03\x01\x02\x00", "\\x16\\x03\\x01\\x02\\x00"),  # a TLS hello sent to plain HTTP
        (b"/caf\xc3\xa9", "/caf\\xC3\\xA9"),
        ("/café", "/caf\\xC3\\xA9"),  # str is taken as UTF-8
        (b"tab\there\nnew", "tab\\x09here\\x0Anew"),
        (b"del\x7f", "del\\x7F"),
        (b"", ""),
        (None, "-"),
    ],
)
def test_escape(value: bytes | str | None, expected: str) -> None:
    assert escape(value) == expected


def test_escaped_user_agent_cannot_forge_a_log_line() -> None:
    line = AccessLogFormatter(utc_offset=0).format(
        entry(http_user_agent=b'x"\n1.2.3.4 - - [fake] "GET / HTTP/1.1" 200 0 "-" "-')
    )
    assert "\n" not in line
    assert line.count('"') == 6  # only the format's own quotes


def test_remote_user_from_basic_auth() -> None:
    token = base64.b64encode(b"alice:secret")
    assert remote_user(b"Basic " + token) == b"alice"
    assert remote_user("basic " + token.decode()) == b"alice"
    assert remote_user(b"Bearer abc") is None
    assert remote_user(b"Basic !!!") is None
    assert remote_user(b"Basic " + base64.b64encode(b"nocolon")) is None
    assert remote_user(None) is None


def test_time_local_is_cached_per_second() -> None:
    formatter = AccessLogFormatter(utc_offset=0)
    first = formatter.time_local(100.1)
    assert formatter.time_local(100.9) is first
    assert formatter.time_local(101.0) == "01/Jan/1970:00:01:41 +0000"


@pytest.fixture
def utc_plus_six() -> Iterator[None]:
    previous = time.tzname
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "XYZ-6")  # POSIX: six hours east of UTC, no tzdata needed
        time.tzset()
        yield
    time.tzset()
    assert time.tzname == previous


def test_local_time_zone_by_default(utc_plus_six: None) -> None:
    line = AccessLogFormatter().format(entry())
    assert "[28/Sep/1970:12:00:00 +0600]" in line


def test_json_format() -> None:
    formatter = AccessLogFormatter("json", utc_offset=PLUS6)
    line = formatter.format(
        entry(
            http_user_agent=b'agent "x"\xff',
            request_time=0.01234,
            http_host=b"example.com",
            upstream_addr="127.0.0.1:3031",
            upstream_status=200,
            upstream_response_time=0.0101,
            cache_status="MISS",
            request_id="0123456789abcdef0123456789abcdef",
        )
    )
    assert "\n" not in line and line.isascii()
    record = json.loads(line)
    assert record == {
        "time": "1970-09-28T12:00:00+06:00",
        "remote_addr": "127.0.0.1",
        "remote_user": None,
        "request": "GET /index.html?q=1 HTTP/1.1",
        "status": 200,
        "body_bytes_sent": 612,
        "request_time": 0.012,
        "http_referer": None,
        "http_user_agent": 'agent "x"\\xff',
        "http_host": "example.com",
        "http_x_forwarded_for": None,
        "upstream_addr": "127.0.0.1:3031",
        "upstream_status": 200,
        "upstream_response_time": 0.01,
        "cache_status": "MISS",
        "request_id": "0123456789abcdef0123456789abcdef",
    }
