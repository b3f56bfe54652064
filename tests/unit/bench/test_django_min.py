"""The minimal Django hello (bench/apps/django_min), loaded the way the servers load it."""

from __future__ import annotations

import json
import subprocess
import sys

from bench.servers import APPS

# Runs in a fresh interpreter from bench/apps, as the servers do (chdir + module):
# Django's settings are process-wide, and this process may hold others.
CALL = """
import json
from wsgiref.util import setup_testing_defaults
from django.conf import settings
from django_min.wsgi import application

def get(path):
    environ = {"PATH_INFO": path, "HTTP_HOST": "127.0.0.1"}
    setup_testing_defaults(environ)
    seen = []
    body = b"".join(application(environ, lambda status, headers, exc=None: seen.append((status, headers))))
    return {"status": seen[0][0], "headers": dict(seen[0][1]), "body": body.decode()}

print(json.dumps({
    "hello": get("/hello"),
    "other": get("/other")["status"],
    "middleware": settings.MIDDLEWARE,
    "apps": settings.INSTALLED_APPS,
}))
"""


def test_one_view_no_middleware_no_apps() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CALL],
        cwd=APPS,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["hello"]["status"] == "200 OK"
    assert seen["hello"]["body"] == "Hello, World!"  # the sample app's /hello body
    assert seen["hello"]["headers"]["Content-Type"] == "text/plain; charset=utf-8"
    assert seen["hello"]["headers"]["Content-Length"] == "13"
    assert seen["other"] == "404 Not Found"
    assert seen["middleware"] == []
    assert seen["apps"] == []
