"""Chunked sizes in upper-case hex, then a pipelined GET right after the last chunk."""

requests = [
    {
        "method": "POST",
        "target": b"/",
        "path": b"/",
        "query": b"",
        "http_version": "1.1",
        "headers": [(b"host", b"a"), (b"transfer-encoding", b"chunked")],
        "keep_alive": True,
        "content_length": None,
        "chunked": True,
        "expect_continue": False,
        "body": b"0123456789abcdefghijklmnopqrstuvwxyz",
        "trailers": [],
    },
    {
        "method": "GET",
        "target": b"/next",
        "path": b"/next",
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
