"""Project middleware.

``RequestIdMiddleware`` runs first.  It takes the request's ID from the
server (appserver sets ``REQUEST_ID``) or from the ``X-Request-ID`` header edge
sends (gunicorn passes it as ``HTTP_X_REQUEST_ID``), makes one when there is
neither (gunicorn with no proxy in front), and puts it in ``sampleapp.log.request_id``
until the response is closed, so every log line of the request carries it.
With ``DJANGO_LOG_REQUESTS`` on it also logs one line per request.

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

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

from django.conf import settings
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotAllowed

from httpproto.request_id import sane_request_id  # the rule edge and appserver apply

from .log import request_id

_HOSTNAME = socket.gethostname()

Handler = Callable[[HttpRequest], HttpResponseBase]


request_logger = logging.getLogger("sampleapp.request")


def request_id_of(meta: dict[str, object]) -> str:
    """The server's REQUEST_ID, else a sane X-Request-ID header, else a new ID."""
    for key in ("REQUEST_ID", "HTTP_X_REQUEST_ID"):
        value = meta.get(key)
        if isinstance(value, str) and sane_request_id(value):
            return value
    return secrets.token_hex(16)


class RequestIdMiddleware:
    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        self.log_requests = bool(getattr(settings, "LOG_REQUESTS", False))

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        ident = request_id_of(request.META)
        request.META["REQUEST_ID"] = ident
        # Kept until the response is closed (request_finished), not reset on the way
        # out: Django logs "Not Found: /x" after the middleware chain returns, and a
        # streamed body runs later still.
        request_id.set(ident)
        if not self.log_requests:
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        request_logger.info(
            "%s %s -> %d in %.1f ms",
            request.method,
            request.get_full_path(),
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response


def _forget_request_id(**kwargs: object) -> None:
    request_id.set("-")


# The server closes every response (PEP 3333), which sends request_finished in the
# thread that served the request: after it, this thread's lines say "-" again.
request_finished.connect(_forget_request_id, dispatch_uid="sampleapp.request_id")


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
