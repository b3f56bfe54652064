"""An app that records where it was imported: the master (preloaded) or a worker (lazy-apps)."""

import json
import os

IMPORTED_IN = os.getpid()


def application(environ, start_response):
    body = json.dumps(
        {
            "imported_in": IMPORTED_IN,
            "pid": os.getpid(),
            "script_name": environ["SCRIPT_NAME"],
            "path": environ["PATH_INFO"],
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
