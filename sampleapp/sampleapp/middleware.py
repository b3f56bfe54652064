"""Project middleware.

``ServedByMiddleware`` runs outermost, so every response, including 404s,
500s and the health check, says which host and process produced it.  That is
how the integration tests and a curious operator see the edge spreading
requests over appserver replicas and workers.

``HealthCheckMiddleware`` answers ``/healthz`` before anything that touches the
database or validates the Host header: container probes call the service by IP
(``Host: 172.18.0.5:8000``), which ``ALLOWED_HOSTS`` would otherwise reject with
a 400 and make a healthy replica look dead.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotAllowed

_HOSTNAME = socket.gethostname()

Handler = Callable[[HttpRequest], HttpResponseBase]


class ServedByMiddleware:
    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        # getpid() per request, not at import: servers fork workers after
        # loading the app (uWSGI without lazy-apps, gunicorn --preload).
        response["X-Served-By"] = f"{_HOSTNAME}/{os.getpid()}"
        return response


class HealthCheckMiddleware:
    PATH = "/healthz"

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info != self.PATH:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        return HttpResponse("ok", content_type="text/plain; charset=utf-8")
