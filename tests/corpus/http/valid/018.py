"""A request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112 §6.3)."""

requests = [
    {
        "method": "POST",
        "target": b"/no-body",
        "path": b"/no-body",
        "query": b"",
        "http_version": "1.1",
        "headers": [(b"host", b"a")],
        "keep_alive": True,
        "content_length": None,
        "chunked": False,
        "expect_continue": False,
        "body": b"",
        "trailers": [],
    },
    {
        "method": "GET",
        "target": b"/after",
        "path": b"/after",
        "query": b"",
        "http_version": "1.1",
        "headers": [(b"host", b"a")],
        "keep_alive": True,
        "content_length": None,
        "chunked": False,
        "expect_continue": False,
        "body": b"",
        "trailers": [],
    },
]
