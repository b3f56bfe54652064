"""Empty lines (CRLF) before a request line are ignored (RFC 9112 §2.2)."""

requests = [
    {
        "method": "GET",
        "target": b"/",
        "path": b"/",
        "query": b"",
        "http_version": "1.1",
        "headers": [(b"host", b"a")],
        "keep_alive": True,
        "content_length": None,
        "chunked": False,
        "expect_continue": False,
        "body": b"",
        "trailers": [],
    }
]
