"""A plain WSGI app that exercises the server, wrapped in wsgiref's PEP 3333 validator.

Any PEP 3333 violation by the server raises AssertionError inside the app,
which the server logs; the integration tests fail on any such line.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from wsgiref.validate import validator


def _read_body(environ: dict) -> bytes:
    stream = environ["wsgi.input"]
    chunks = []
    while True:
        # The validator insists on read(size); a real app (Django) does the same.
        chunk = stream.read(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _json(start_response, data: object, status: str = "200 OK") -> list[bytes]:
    body = json.dumps(data).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def raw_application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/echo":
        body = _read_body(environ)
        return _json(
            start_response,
            {
                "method": environ["REQUEST_METHOD"],
                "path": path,
                "path_utf8": environ["PATH_INFO"].encode("latin-1").decode("utf-8", "replace"),
                "query": environ["QUERY_STRING"].encode("latin-1").decode("utf-8", "replace"),
                "size": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "script_name": environ["SCRIPT_NAME"],
                "scheme": environ["wsgi.url_scheme"],
                "pid": os.getpid(),
            },
        )
    if path.startswith("/utf8/"):
        return _json(
            start_response, {"path": environ["PATH_INFO"].encode("latin-1").decode("utf-8")}
        )
    if path == "/environ":
        return _json(start_response, {k: v for k, v in environ.items() if isinstance(v, str)})
    if path == "/stream":
        count = int(environ["QUERY_STRING"] or "5")
        start_response("200 OK", [("Content-Type", "text/plain")])

        def chunks():
            for index in range(count):
                yield f"chunk {index}\n".encode()

        return chunks()
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"then returned\n"]
    if path == "/file":
        handle = open(__file__, "rb")
        start_response("200 OK", [("Content-Type", "text/x-python")])
        return environ["wsgi.file_wrapper"](handle, 4096)
    if path == "/slow":
        time.sleep(float(environ["QUERY_STRING"] or "1"))
        return _json(start_response, {"slept": environ["QUERY_STRING"], "pid": os.getpid()})
    if path == "/boom":
        raise RuntimeError("boom: the test app fails on purpose")
    if path == "/crash":
        os._exit(17)
    if path == "/pid":
        return _json(start_response, {"pid": os.getpid()})
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return [b"not found\n"]


application = validator(raw_application)
