"""OWS around values is dropped, an empty value is kept, repeated fields keep their order."""

requests = [
    {
        "method": "GET",
        "target": b"/",
        "path": b"/",
        "query": b"",
        "http_version": "1.1",
        "headers": [
            (b"host", b"a"),
            (b"x-pad", b"padded"),
            (b"x-empty", b""),
            (b"accept", b"text/html"),
            (b"accept", b"text/plain"),
            (b"x-inner", b"a  b\tc"),
        ],
        "keep_alive": True,
        "content_length": None,
        "chunked": False,
        "expect_continue": False,
        "body": b"",
        "trailers": [],
    }
]
