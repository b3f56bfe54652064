"""Connection: close ends the connection: the request pipelined after it is never parsed."""

requests = [
    {
        "method": "GET",
        "target": b"/first",
        "path": b"/first",
        "query": b"",
        "http_version": "1.1",
        "headers": [(b"host", b"a"), (b"connection", b"close")],
        "keep_alive": False,
        "content_length": None,
        "chunked": False,
        "expect_continue": False,
        "body": b"",
        "trailers": [],
    }
]
