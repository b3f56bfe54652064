"""Connection is a token list: close anywhere in it closes."""

requests = [
    {
        "method": "GET",
        "target": b"/",
        "path": b"/",
        "query": b"",
        "http_version": "1.1",
        "headers": [(b"host", b"a"), (b"connection", b"foo, CLOSE")],
        "keep_alive": False,
        "content_length": None,
        "chunked": False,
        "expect_continue": False,
        "body": b"",
        "trailers": [],
    }
]
