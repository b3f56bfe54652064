"""Absolute-form target (RFC 9112 §3.2.2): path and query come from after the authority."""

requests = [
    {
        "method": "GET",
        "target": b"http://example.com:8080/a/b?c=d",
        "path": b"/a/b",
        "query": b"c=d",
        "http_version": "1.1",
        "headers": [(b"host", b"example.com:8080")],
        "keep_alive": True,
        "content_length": None,
        "chunked": False,
        "expect_continue": False,
        "body": b"",
        "trailers": [],
    }
]
