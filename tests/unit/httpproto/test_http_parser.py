"""RequestParser behaviour that the corpus cannot show: event order, flow control, limits."""

from __future__ import annotations

import pytest

from httpproto import (
    CLOSED,
    NEED_DATA,
    BadRequest,
    BodyTooLarge,
    Data,
    EndOfMessage,
    Event,
    HeaderTooLarge,
    RequestHead,
    RequestParser,
    UriTooLong,
)

GET = b"GET /items?page=2 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"


def events(parser: RequestParser) -> list[Event]:
    """Every event up to and including the first NEED_DATA or CLOSED."""
    out: list[Event] = []
    while True:
        event = parser.next_event()
        out.append(event)
        if event is NEED_DATA or event is CLOSED:
            return out


def head_of(data: bytes, **options: int) -> RequestHead:
    parser = RequestParser(**options)
    parser.feed(data)
    event = parser.next_event()
    assert isinstance(event, RequestHead)
    return event


def test_get_gives_head_end_of_message_then_need_data() -> None:
    parser = RequestParser()
    parser.feed(GET)
    head, end, wait = events(parser)
    assert head == RequestHead(
        method="GET",
        target=b"/items?page=2",
        path=b"/items",
        query=b"page=2",
        http_version="1.1",
        headers=[(b"host", b"example.com"), (b"accept", b"*/*")],
        keep_alive=True,
        content_length=None,
        chunked=False,
        expect_continue=False,
        host=b"example.com",
    )
    assert end == EndOfMessage()
    assert wait is NEED_DATA
    parser.feed(b"")
    assert parser.next_event() is CLOSED
    assert parser.next_event() is CLOSED


def test_empty_connection_is_closed_not_an_error() -> None:
    parser = RequestParser()
    assert parser.next_event() is NEED_DATA
    parser.feed(b"")
    assert parser.next_event() is CLOSED


def test_pipelined_requests_come_out_in_order() -> None:
    parser = RequestParser()
    parser.feed(GET + b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc" + GET)
    kinds = [type(event).__name__ for event in events(parser)]
    assert kinds == [
        "RequestHead",
        "EndOfMessage",
        "RequestHead",
        "Data",
        "EndOfMessage",
        "RequestHead",
        "EndOfMessage",
        "_Sentinel",
    ]


def test_server_can_stop_after_the_head_and_send_100_continue() -> None:
    parser = RequestParser()
    parser.feed(b"PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    head = parser.next_event()
    assert isinstance(head, RequestHead) and head.expect_continue
    assert parser.waiting_for_100_continue
    assert parser.next_event() is NEED_DATA
    assert parser.waiting_for_100_continue  # still nothing of the body: send 100 now
    parser.feed(b"hel")
    assert not parser.waiting_for_100_continue
    assert parser.next_event() == Data(b"hel")
    parser.feed(b"lo")
    assert events(parser) == [Data(b"lo"), EndOfMessage(), NEED_DATA]
    assert not parser.waiting_for_100_continue


def test_no_100_continue_when_the_body_is_already_here() -> None:
    parser = RequestParser()
    parser.feed(
        b"PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"
    )
    assert isinstance(parser.next_event(), RequestHead)
    assert not parser.waiting_for_100_continue


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",  # no body to wait for
        b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",  # 1.0
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n",  # no expectation
    ],
)
def test_no_100_continue_wait(request_bytes: bytes) -> None:
    parser = RequestParser()
    parser.feed(request_bytes)
    parser.next_event()
    assert not parser.waiting_for_100_continue


def test_refusing_after_the_head_needs_no_more_input() -> None:
    # A server may reject on the head alone (auth, 413, 405) and never feed the body.
    parser = RequestParser()
    parser.feed(b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n")
    head = parser.next_event()
    assert isinstance(head, RequestHead) and head.content_length == 1_000_000
    assert parser.next_event() is NEED_DATA


def test_after_a_closing_request_further_bytes_are_dropped() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.0\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [type(e) for e in events(parser)] == [RequestHead, EndOfMessage, type(CLOSED)]
    parser.feed(b"more garbage \x00\x01")
    assert parser.next_event() is CLOSED


def test_errors_are_sticky_and_later_input_ignored() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")
    with pytest.raises(BadRequest) as first:
        parser.next_event()
    parser.feed(GET)
    with pytest.raises(BadRequest) as second:
        parser.next_event()
    assert first.value is second.value


def test_feeding_after_eof_is_a_caller_bug() -> None:
    parser = RequestParser()
    parser.feed(b"")
    parser.feed(b"")  # a second EOF is harmless
    with pytest.raises(RuntimeError):
        parser.feed(b"GET")


def test_bytearray_and_memoryview_are_accepted() -> None:
    parser = RequestParser()
    parser.feed(bytearray(GET[:10]))
    parser.feed(memoryview(GET)[10:])
    head = parser.next_event()
    assert isinstance(head, RequestHead) and head.target == b"/items?page=2"
    assert type(head.target) is bytes


def test_many_tiny_chunks_come_out_as_one_data() -> None:
    body = b"".join(b"1\r\n%c\r\n" % (65 + i % 26) for i in range(500)) + b"0\r\n\r\n"
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    head, data, end, wait = events(parser)
    assert isinstance(data, Data) and len(data.data) == 500
    assert data.data.startswith(b"ABCDEFG")
    assert end == EndOfMessage() and wait is NEED_DATA


def test_content_length_body_is_not_copied_when_it_arrives_alone() -> None:
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n")
    parser.next_event()
    chunk = b"data"
    parser.feed(chunk)
    event = parser.next_event()
    assert isinstance(event, Data) and event.data is chunk


# -- limits --------------------------------------------------------------------


def _head_of_size(size: int) -> bytes:
    base = b"GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n"
    return base.replace(b"X: ", b"X: " + b"v" * (size - len(base)))


@pytest.mark.parametrize("split", [False, True])
def test_header_block_limit_is_exact(split: bool) -> None:
    for size, fits in ((512, True), (513, False)):
        data = _head_of_size(size)
        assert len(data) == size
        parser = RequestParser(max_header_size=512)
        for piece in [data[:100], data[100:]] if split else [data]:
            parser.feed(piece)
        if fits:
            assert isinstance(parser.next_event(), RequestHead)
        else:
            with pytest.raises(HeaderTooLarge):
                while parser.next_event() is NEED_DATA:
                    pass


def test_request_line_limit_is_exact() -> None:
    line = b"GET /" + b"a" * 50 + b" HTTP/1.1\r"  # max_line counts the CR, not the LF
    assert isinstance(head_of(line + b"\nHost: a\r\n\r\n", max_line=len(line)), RequestHead)
    with pytest.raises(UriTooLong):
        head_of(line + b"\n\r\n", max_line=len(line) - 1)


def test_long_target_arriving_slowly_is_refused_early() -> None:
    parser = RequestParser(max_line=1000)
    parser.feed(b"GET /")
    with pytest.raises(UriTooLong):
        for _ in range(100):
            assert parser.next_event() is NEED_DATA
            parser.feed(b"a" * 100)


def test_unterminated_header_cannot_grow_past_the_limit() -> None:
    parser = RequestParser(max_header_size=4096)
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: ")
    fed = 0
    with pytest.raises(HeaderTooLarge):
        while True:
            assert parser.next_event() is NEED_DATA
            parser.feed(b"z" * 512)
            fed += 512
    assert fed <= 4096


def test_garbage_past_the_limit_is_400_not_431() -> None:
    with pytest.raises(BadRequest):
        head_of(b"\x00" * 20000)


def test_header_count_limit_is_exact() -> None:
    fields = b"".join(b"H%d: v\r\n" % i for i in range(4))  # + Host = 5
    assert (
        len(head_of(b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n", max_headers=5).headers)
        == 5
    )
    with pytest.raises(HeaderTooLarge):
        head_of(b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"H: v\r\n\r\n", max_headers=5)


def test_chunked_body_exactly_at_max_body_size_is_fine() -> None:
    parser = RequestParser(max_body_size=10)
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    parser.feed(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n")
    assert [type(e) for e in events(parser)] == [RequestHead, Data, EndOfMessage, type(NEED_DATA)]


def test_content_length_at_max_body_size_is_fine_and_above_is_413() -> None:
    assert head_of(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n", max_body_size=10)
    with pytest.raises(BodyTooLarge):
        head_of(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", max_body_size=10)


# -- targets and special requests --------------------------------------------------


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        (b"/a/b?c=d&e", b"/a/b", b"c=d&e"),
        (b"/a?", b"/a", b""),
        (b"/a#frag", b"/a", b""),
        (b"/a?q#frag", b"/a", b"q"),
        (b"/%2F%20?x=%41", b"/%2F%20", b"x=%41"),
        (b"http://example.com", b"/", b""),
        (b"http://example.com?x=1", b"/", b"x=1"),
        (b"https://user@example.com:8443/p/q?r", b"/p/q", b"r"),
        (b"*", b"*", b""),
    ],
)
def test_target_split(target: bytes, path: bytes, query: bytes) -> None:
    method = b"OPTIONS" if target == b"*" else b"GET"
    head = head_of(method + b" " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (head.target, head.path, head.query) == (target, path, query)


def test_utf8_target_split_inside_a_character_and_across_feeds() -> None:
    target = "/ünïcødé/日本?q=€".encode()
    data = b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    for cut in range(1, len(data)):
        parser = RequestParser()
        parser.feed(data[:cut])
        first = parser.next_event()
        parser.feed(data[cut:])
        head = first if isinstance(first, RequestHead) else parser.next_event()
        assert isinstance(head, RequestHead)
        assert head.target == target
        assert head.path == "/ünïcødé/日本".encode()


def test_connect_is_served_once_then_the_connection_closes() -> None:
    parser = RequestParser()
    parser.feed(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01")
    head = parser.next_event()
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.path, head.keep_alive) == (
        "CONNECT",
        b"example.com:443",
        b"",
        False,
    )
    assert events(parser) == [EndOfMessage(), CLOSED]


def test_uncommon_methods_are_strings() -> None:
    assert head_of(b"PROPFIND /dav HTTP/1.1\r\nHost: a\r\n\r\n").method == "PROPFIND"
    assert head_of(b"M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n").method == "M-SEARCH"


def test_lone_cr_before_the_request_line_may_get_its_lf_later() -> None:
    parser = RequestParser()
    parser.feed(b"\r\n\r")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"\n" + GET)
    assert isinstance(parser.next_event(), RequestHead)


def test_keep_alive_requests_reuse_the_parser_after_bodies() -> None:
    parser = RequestParser()
    for i in range(3):
        parser.feed(b"POST /%d HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok" % i)
        head, data, end, wait = events(parser)
        assert isinstance(head, RequestHead) and head.target == b"/%d" % i
        parser.feed(b"GET /g HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        head, end, wait = events(parser)
        assert isinstance(head, RequestHead) and head.chunked


def test_trailer_count_is_limited() -> None:
    trailers = b"".join(b"T%d: v\r\n" % i for i in range(4))
    parser = RequestParser(max_headers=3)
    parser.feed(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
        + trailers
        + b"\r\n"
    )
    parser.next_event()
    with pytest.raises(HeaderTooLarge):
        parser.next_event()
