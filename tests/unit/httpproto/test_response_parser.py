"""ResponseParser: upstream responses, framed by CL, chunked, EOF, or CGI-style."""

from __future__ import annotations

import random

import pytest

from httpproto.response_parser import (
    NEED_DATA,
    Data,
    EndOfMessage,
    IncompleteResponse,
    ResponseError,
    ResponseHead,
    ResponseHeadTooLarge,
    ResponseParser,
)


def run(
    data: bytes | list[bytes], *, eof: bool = True, **options: bool | int
) -> tuple[ResponseHead, bytes, ResponseParser]:
    """Feed the pieces (then EOF), collect head and body up to EndOfMessage."""
    parser = ResponseParser(**options)  # type: ignore[arg-type]
    pieces = [data] if isinstance(data, bytes) else list(data)
    head: ResponseHead | None = None
    body: list[bytes] = []
    while True:
        event = parser.next_event()
        if event is NEED_DATA:
            if pieces:
                parser.feed(pieces.pop(0))
            elif eof:
                parser.feed(b"")
                eof = False
            else:
                raise AssertionError("parser wants more data")
            continue
        if isinstance(event, ResponseHead):
            head = event
        elif isinstance(event, Data):
            body.append(event.data)
        elif isinstance(event, EndOfMessage):
            break
    assert head is not None
    return head, b"".join(body), parser


def splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 6)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def test_content_length_response_is_reusable() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Thing:  spaced \r\n\r\nhello"
    head, body, parser = run(raw, eof=False)
    assert (head.status, head.reason, head.http_version) == (200, b"OK", "1.1")
    assert head.headers == [(b"Content-Length", b"5"), (b"X-Thing", b"spaced")]
    assert head.content_length == 5 and not head.chunked and head.keep_alive
    assert body == b"hello"
    assert parser.reusable


@pytest.mark.parametrize("seed", range(5))
def test_chunked_response_at_random_splits(seed: int) -> None:
    raw = (
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    head, body, parser = run(splits(raw, seed), eof=False)
    assert head.status == 201 and head.chunked and head.content_length is None
    assert body == b"hello world"
    assert parser.reusable


def test_body_read_to_eof_is_not_reusable() -> None:
    head, body, parser = run([b"HTTP/1.1 200 OK\r\n\r\nsome ", b"bytes"])
    assert body == b"some bytes"
    assert not head.keep_alive and not parser.reusable


def test_connection_close_and_http10() -> None:
    head, _, parser = run(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", eof=False
    )
    assert not head.keep_alive and not parser.reusable
    head, _, _ = run(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", eof=False)
    assert not head.keep_alive
    head, _, _ = run(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", eof=False
    )
    assert head.keep_alive


def test_head_request_and_bodiless_statuses_have_no_body() -> None:
    head, body, parser = run(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", eof=False, head_request=True
    )
    assert head.content_length == 1000 and body == b"" and parser.reusable
    for status in (204, 304):
        _, body, parser = run(b"HTTP/1.1 %d X\r\nContent-Length: 3\r\n\r\n" % status, eof=False)
        assert body == b"" and parser.reusable


def test_interim_responses_are_skipped() -> None:
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    head, body, _ = run(raw, eof=False)
    assert head.status == 200 and body == b"ok"


def test_extra_bytes_after_the_body_make_the_connection_unusable() -> None:
    _, body, parser = run(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK", eof=False)
    assert body == b"ok"
    assert not parser.reusable


def test_cgi_style_heads_from_uwsgi_peers() -> None:
    options = {"allow_no_status_line": True}
    head, body, _ = run(b"Status: 404 Gone Away\r\nContent-Type: text/plain\r\n\r\nnope", **options)
    assert (head.status, head.reason, head.http_version) == (404, b"Gone Away", "1.0")
    assert head.headers == [(b"Content-Type", b"text/plain")]
    assert body == b"nope" and not head.keep_alive
    head, _, _ = run(b"Location: /elsewhere\r\n\r\n", **options)
    assert head.status == 302
    head, body, _ = run(b"Content-Type: text/html\r\n\r\n<p>", **options)
    assert head.status == 200 and body == b"<p>"
    head, body, _ = run(b"\r\nbody only", **options)
    assert head.status == 200 and head.headers == [] and body == b"body only"
    # A real status line still wins in CGI mode.
    head, _, _ = run([b"HT", b"TP/1.1 500 Boom\r\nContent-Length: 0\r\n\r\n"], **options)
    assert head.status == 500 and head.reason == b"Boom"


def test_no_status_line_is_an_error_for_http_peers() -> None:
    with pytest.raises(ResponseError, match="no valid HTTP status line"):
        run(b"Content-Type: text/plain\r\n\r\n")


def test_eof_before_any_byte_or_inside_the_head() -> None:
    with pytest.raises(IncompleteResponse) as info:
        run(b"")
    assert info.value.received == 0
    with pytest.raises(IncompleteResponse) as info:
        run(b"HTTP/1.1 200 OK\r\nContent-")
    assert info.value.received == 25


def test_eof_inside_a_framed_body() -> None:
    with pytest.raises(IncompleteResponse, match="3 body bytes missing"):
        run(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe")
    with pytest.raises(IncompleteResponse, match="chunked body"):
        run(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 5\n\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_invalid_responses(raw: bytes) -> None:
    with pytest.raises(ResponseError):
        run(raw)


def test_head_size_limit() -> None:
    big = b"HTTP/1.1 200 OK\r\nSet-Cookie: " + b"x" * 5000 + b"\r\n\r\n"
    with pytest.raises(ResponseHeadTooLarge, match="too big header"):
        run(big, max_header_size=4096)
    with pytest.raises(ResponseHeadTooLarge):
        run([big[:3000], big[3000:]], max_header_size=4096)
    head, _, _ = run(big, max_header_size=8192)
    assert head.status == 200


def test_other_transfer_coding_reads_to_eof() -> None:
    head, body, parser = run(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw")
    assert not head.chunked and body == b"raw" and not parser.reusable


def test_errors_are_sticky_and_bytes_are_counted() -> None:
    parser = ResponseParser()
    parser.feed(b"garbage\r\n\r\n")
    with pytest.raises(ResponseError):
        parser.next_event()
    with pytest.raises(ResponseError):
        parser.next_event()
    assert parser.bytes_received == 11
