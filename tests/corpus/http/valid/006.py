"""A chunked body with an extension and trailers; the body comes out de-chunked."""

requests = [
    {
        "method": "POST",
        "target": b"/upload",
        "path": b"/upload",
        "query": b"",
        "http_version": "1.1",
        "headers": [(b"host", b"a"), (b"transfer-encoding", b"chunked")],
        "keep_alive": True,
        "content_length": None,
        "chunked": True,
        "expect_continue": False,
        "body": b"hello world",
        "trailers": [(b"x-checksum", b"abc123"), (b"x-other", b"1")],
    }
]
