"""Expect: 100-continue on HTTP/1.1 with a body sets expect_continue."""

requests = [
    {
        "method": "PUT",
        "target": b"/file",
        "path": b"/file",
        "query": b"",
        "http_version": "1.1",
        "headers": [(b"host", b"a"), (b"expect", b"100-Continue"), (b"content-length", b"4")],
        "keep_alive": True,
        "content_length": 4,
        "chunked": False,
        "expect_continue": True,
        "body": b"data",
        "trailers": [],
    }
]
