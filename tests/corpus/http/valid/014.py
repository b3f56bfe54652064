"""Content-Length: 0 means no Data event."""

requests = [
    {
        "method": "POST",
        "target": b"/empty",
        "path": b"/empty",
        "query": b"",
        "http_version": "1.1",
        "headers": [(b"host", b"a"), (b"content-length", b"0")],
        "keep_alive": True,
        "content_length": 0,
        "chunked": False,
        "expect_continue": False,
        "body": b"",
        "trailers": [],
    }
]
