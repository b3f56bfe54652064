"""HTTP/1.0 with Connection: keep-alive stays open."""

requests = [
    {
        "method": "GET",
        "target": b"/a",
        "path": b"/a",
        "query": b"",
        "http_version": "1.0",
        "headers": [(b"connection", b"Keep-Alive")],
        "keep_alive": True,
        "content_length": None,
        "chunked": False,
        "expect_continue": False,
        "body": b"",
        "trailers": [],
    }
]
