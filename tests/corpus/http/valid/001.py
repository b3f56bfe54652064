"""HTTP/1.1 GET: keep-alive unless the client says close (RFC 9112 §9.3)."""

requests = [
    {
        "method": "GET",
        "target": b"/index.html",
        "path": b"/index.html",
        "query": b"",
        "http_version": "1.1",
        "headers": [(b"host", b"example.com"), (b"user-agent", b"curl/8.5.0"), (b"accept", b"*/*")],
        "keep_alive": True,
        "content_length": None,
        "chunked": False,
        "expect_continue": False,
        "body": b"",
        "trailers": [],
    }
]
