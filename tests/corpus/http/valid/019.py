"""Expect: 100-continue is ignored in HTTP/1.0 (RFC 9110 §10.1.1)."""

requests = [
    {
        "method": "POST",
        "target": b"/",
        "path": b"/",
        "query": b"",
        "http_version": "1.0",
        "headers": [(b"expect", b"100-continue"), (b"content-length", b"2")],
        "keep_alive": False,
        "content_length": 2,
        "chunked": False,
        "expect_continue": False,
        "body": b"ok",
        "trailers": [],
    }
]
