"""Raw UTF-8 in the path and query (nginx and gunicorn accept it; llhttp alone would not)."""

requests = [
    {
        "method": "GET",
        "target": b"/caf\xc3\xa9/\xe6\x97\xa5?q=\xc3\xbc",
        "path": b"/caf\xc3\xa9/\xe6\x97\xa5",
        "query": b"q=\xc3\xbc",
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
