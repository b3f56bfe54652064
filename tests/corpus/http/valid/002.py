"""HTTP/1.0 GET: the connection closes after the response by default."""

requests = [
    {
        "method": "GET",
        "target": b"/a",
        "path": b"/a",
        "query": b"",
        "http_version": "1.0",
        "headers": [(b"host", b"example.com")],
        "keep_alive": False,
        "content_length": None,
        "chunked": False,
        "expect_continue": False,
        "body": b"",
        "trailers": [],
    }
]
