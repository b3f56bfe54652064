"""Response heads and the server's own error replies."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from httpproto import (
    CONTINUE,
    BadRequest,
    BodyTooLarge,
    HeaderTooLarge,
    HttpProtocolError,
    UnsupportedTransferEncoding,
    UriTooLong,
    encode_head_bytes,
    encode_response_head,
    error_response,
    http_date,
    reason_phrase,
    simple_response,
    status_line,
)


def test_reason_phrases() -> None:
    assert reason_phrase(200) == "OK"
    assert reason_phrase(431) == "Request Header Fields Too Large"
    assert reason_phrase(599) == ""
    assert status_line(404) == "404 Not Found"
    assert status_line("299 Custom Thing") == "299 Custom Thing"


def test_head_from_wsgi_strings() -> None:
    head = encode_response_head(
        "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "5")]
    )
    assert head == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 5\r\n\r\n"
    )


def test_head_from_int_status_and_bytes_headers() -> None:
    head = encode_response_head(204, [(b"X-Raw", b"caf\xe9")], version="1.0")
    assert head == b"HTTP/1.0 204 No Content\r\nX-Raw: caf\xe9\r\n\r\n"


def test_head_without_headers() -> None:
    assert encode_response_head(100, []) == b"HTTP/1.1 100 Continue\r\n\r\n" == CONTINUE


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        ("200 OK", [("X-A", "ok\r\nSet-Cookie: stolen=1")]),
        ("200 OK", [("X-A", "bare\nlf")]),
        ("200 OK", [("X-A", "bare\rcr")]),
        ("200 OK", [("X-A\r\nX-B", "v")]),
        ("200 OK\r\nX-Injected: 1", []),
        ("200 OK", [(b"X-A", b"v\r\n")]),
    ],
)
def test_header_injection_is_refused(status: str, headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        encode_response_head(status, headers)


def test_non_latin1_header_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_response_head("200 OK", [("X-A", "snowman ☃")])


def test_simple_response() -> None:
    assert simple_response(404) == (
        b"HTTP/1.1 404 Not Found\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 14\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"404 Not Found\n"
    )


def test_simple_response_keep_alive_and_utf8_body() -> None:
    response = simple_response(503, "überlastet", close=False, headers=[("Retry-After", "5")])
    head, body = response.split(b"\r\n\r\n")
    assert body == "überlastet".encode()
    assert b"Content-Length: 11\r\n" in head + b"\r\n"
    assert b"Connection" not in head
    assert head.endswith(b"Retry-After: 5")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (BadRequest, 400),
        (HeaderTooLarge, 431),
        (UriTooLong, 414),
        (UnsupportedTransferEncoding, 501),
        (BodyTooLarge, 413),
        (HttpProtocolError, 400),
    ],
)
def test_error_response_uses_status_hint(error: type[HttpProtocolError], status: int) -> None:
    response = error_response(error("secret parser detail"))
    assert response.startswith(b"HTTP/1.1 %d " % status)
    assert b"Connection: close\r\n" in response
    assert b"secret" not in response


def test_bytes_head_matches_the_general_encoder() -> None:
    headers = [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5")]
    for status in (200, 304, 599, "299 Custom Thing"):
        assert encode_head_bytes(status, headers) == encode_response_head(status, headers)
    assert encode_head_bytes(204, []) == b"HTTP/1.1 204 No Content\r\n\r\n"


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (200, [(b"X-A", b"one\r\nSet-Cookie: evil=1")]),
        (200, [(b"X-A\n", b"one")]),
        (200, [(b"X-A", b"one\rtwo")]),
        ("200 OK\r\nX-Evil: 1", []),
    ],
)
def test_bytes_head_refuses_injection(status: int | str, headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        encode_head_bytes(status, headers)


@given(st.floats(min_value=0, max_value=253402300799, allow_nan=False))
def test_http_date_is_the_imf_fixdate_email_utils_gives(timestamp: float) -> None:
    expected = email.utils.formatdate(int(timestamp), usegmt=True).encode("ascii")
    assert http_date(timestamp) == expected
    assert http_date(timestamp) == expected  # the memo gives the same bytes
