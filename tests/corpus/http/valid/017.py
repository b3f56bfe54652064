"""obs-text (bytes 0x80-0xFF) in a field value is allowed (RFC 9110 §5.5)."""

requests = [
    {
        "method": "GET",
        "target": b"/",
        "path": b"/",
        "query": b"",
        "http_version": "1.1",
        "headers": [(b"host", b"a"), (b"x-name", b"Jos\xc3\xa9 \xff")],
        "keep_alive": True,
        "content_length": None,
        "chunked": False,
        "expect_continue": False,
        "body": b"",
        "trailers": [],
    }
]
