"""A body of exactly Content-Length bytes, with CRLFs and NULs inside it untouched."""

requests = [
    {
        "method": "POST",
        "target": b"/",
        "path": b"/",
        "query": b"",
        "http_version": "1.1",
        "headers": [(b"host", b"a"), (b"content-length", b"8")],
        "keep_alive": True,
        "content_length": 8,
        "chunked": False,
        "expect_continue": False,
        "body": b"\r\n\x00\r\n\r\n\x00",
        "trailers": [],
    }
]
