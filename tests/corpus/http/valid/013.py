"""An Upgrade request is served as plain HTTP/1.1, then the connection closes."""

requests = [
    {
        "method": "GET",
        "target": b"/ws",
        "path": b"/ws",
        "query": b"",
        "http_version": "1.1",
        "headers": [
            (b"host", b"a"),
            (b"connection", b"keep-alive, Upgrade"),
            (b"upgrade", b"websocket"),
        ],
        "keep_alive": False,
        "content_length": None,
        "chunked": False,
        "expect_continue": False,
        "body": b"",
        "trailers": [],
    }
]
