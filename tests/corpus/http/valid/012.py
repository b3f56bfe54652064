"""Asterisk-form (OPTIONS *)."""

requests = [
    {
        "method": "OPTIONS",
        "target": b"*",
        "path": b"*",
        "query": b"",
        "http_version": "1.1",
        "headers": [(b"host", b"a")],
        "keep_alive": True,
        "content_length": None,
        "chunked": False,
        "expect_continue": False,
        "body": b"",
        "trailers": [],
    }
]
