"""Views that exercise each part of the stack.

Each endpoint isolates one thing a server in front of Django has to get right:
templates and static files (``/``), the database (``/api/items``), request
bodies of any size (``/api/echo``), slow and failing workers (``/slow``,
``/boom``), streamed responses (``/stream``) and raw throughput (``/hello``,
``/template``).  Bad query parameters get a 400 whose body says what is
expected, never a generic error page.
"""

# mypy: disallow-subclassing-any=False, disallow-untyped-decorators=False
# (Django ships no type hints and django-stubs is not a dependency.)

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.core.files.uploadhandler import FileUploadHandler
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from .models import Item

SLOW_MAX_MS = 120_000
STREAM_MAX_CHUNKS = 100_000
STREAM_MAX_DELAY_MS = 10_000
ITEMS_MAX_LIMIT = 1_000
ITEM_NAME_MAX = Item._meta.get_field("name").max_length
ECHO_READ_SIZE = 64 * 1024
TAGS = ["fast", "cached", "static"]


class ParameterError(ValueError):
    """A query parameter or JSON field is missing or out of range (HTTP 400)."""

    status_hint = 400


def _int_param(request: HttpRequest, name: str, default: int, high: int) -> int:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= high:
        raise ParameterError(f"{name}: expected an integer from 0 to {high}, got {raw!r}")
    return value


def _json_error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


# -- pages --------------------------------------------------------------------


@require_safe
def index(request: HttpRequest) -> HttpResponse:
    items = Item.objects.all()[:20]
    return render(request, "shop/index.html", {"items": items, "item_count": Item.objects.count()})


@require_safe
def template_page(request: HttpRequest) -> HttpResponse:
    """A fixed page that costs template work but no database: for benchmarks."""
    rows = [
        {
            "n": n,
            "name": f"Row {n}",
            "price": Decimal(n * 137 % 10_000) / 100,
            "tags": TAGS[: n % 4],
        }
        for n in range(1, 51)
    ]
    return render(request, "shop/template.html", {"rows": rows, "title": "Template benchmark"})


@require_safe
def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello, World!", content_type="text/plain; charset=utf-8")


# -- JSON API -----------------------------------------------------------------


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def items(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _create_item(request)
    try:
        limit = _int_param(request, "limit", default=100, high=ITEMS_MAX_LIMIT)
    except ParameterError as error:
        return _json_error(400, str(error))
    return JsonResponse(
        {
            "count": Item.objects.count(),
            "items": [item.as_json() for item in Item.objects.all()[:limit]],
        }
    )


@require_safe
def item(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        found = Item.objects.get(pk=pk)
    except Item.DoesNotExist:
        return _json_error(404, f"no item with id {pk}")
    return JsonResponse(found.as_json())


def _create_item(request: HttpRequest) -> HttpResponse:
    if request.content_type != "application/json":
        return _json_error(
            415, f"expected Content-Type: application/json, got {request.content_type!r}"
        )
    try:
        payload = json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return _json_error(400, f"invalid JSON: {error}")
    try:
        fields = _item_fields(payload)
    except ParameterError as error:
        return _json_error(400, str(error))
    item = Item.objects.create(**fields)
    response = JsonResponse(item.as_json(), status=201)
    response["Location"] = reverse("shop:item", args=[item.pk])
    return response


def _item_fields(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ParameterError('expected a JSON object like {"name": "Teapot", "price_cents": 1299}')
    unknown = sorted(set(payload) - {"name", "description", "price_cents"})
    if unknown:
        raise ParameterError(f"unknown fields: {', '.join(unknown)}")
    name = payload.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > ITEM_NAME_MAX:
        raise ParameterError(
            f"name: expected a non-empty string of at most {ITEM_NAME_MAX} characters"
        )
    description = payload.get("description", "")
    if not isinstance(description, str):
        raise ParameterError("description: expected a string")
    price = payload.get("price_cents", 0)
    # bool is an int subclass; "price_cents": true is a client bug, not 1 cent.
    if not isinstance(price, int) or isinstance(price, bool) or not 0 <= price <= 2_147_483_647:
        raise ParameterError("price_cents: expected a non-negative integer")
    return {"name": name.strip(), "description": description, "price_cents": price}


# -- request bodies -----------------------------------------------------------


class HashingUploadHandler(FileUploadHandler):
    """Hash multipart file parts as Django's parser streams them; store nothing.

    Returning ``None`` from ``receive_data_chunk`` and ``file_complete`` means
    no chunk is buffered and nothing lands in ``request.FILES``, so a 10 MB
    upload costs one 64 KiB chunk of memory, not a temporary file.
    """

    chunk_size = ECHO_READ_SIZE

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.total = hashlib.sha256()
        self.size = 0
        self.files: list[dict[str, Any]] = []
        self._part = hashlib.sha256()

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self._part = hashlib.sha256()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.total.update(raw_data)
        self._part.update(raw_data)
        self.size += len(raw_data)

    def file_complete(self, file_size: int) -> None:
        self.files.append(
            {
                "field": self.field_name,
                "name": self.file_name,
                "size": file_size,
                "sha256": self._part.hexdigest(),
            }
        )


def _raw_body_chunks(request: HttpRequest) -> Iterator[bytes]:
    # With Content-Length, Django's request stream stops at the declared
    # length.  A chunked body has no Content-Length, and Django would read it
    # as empty; servers that de-chunk it mark EOF with wsgi.input_terminated
    # (gunicorn, uWSGI), and then the raw input can be read to its end.
    if not request.META.get("CONTENT_LENGTH") and request.META.get("wsgi.input_terminated"):
        stream = request.META["wsgi.input"]
    else:
        stream = request
    while chunk := stream.read(ECHO_READ_SIZE):
        yield chunk


@csrf_exempt
@require_POST
def echo(request: HttpRequest) -> HttpResponse:
    """Return the size and SHA-256 of the upload, read in 64 KiB chunks.

    * multipart/form-data: ``size``/``sha256`` cover the contents of the file
      parts, concatenated in order; form fields and MIME framing are not
      counted.  ``files`` lists each part.  ``measured`` is ``"file-parts"``.
    * anything else: ``size``/``sha256`` cover the raw request body.
      ``measured`` is ``"raw-body"``.
    """
    if request.content_type == "multipart/form-data":
        handler = HashingUploadHandler(request)
        request.upload_handlers = [handler]
        request.FILES  # noqa: B018  (runs the streaming multipart parser)
        return JsonResponse(
            {
                "measured": "file-parts",
                "size": handler.size,
                "sha256": handler.total.hexdigest(),
                "files": handler.files,
            }
        )
    digest = hashlib.sha256()
    size = 0
    for chunk in _raw_body_chunks(request):
        digest.update(chunk)
        size += len(chunk)
    return JsonResponse({"measured": "raw-body", "size": size, "sha256": digest.hexdigest()})


# -- timing and failure -------------------------------------------------------


@require_safe
def slow(request: HttpRequest) -> HttpResponse:
    """Sleep ``ms`` milliseconds (default 1000, at most 120000): harakiri and timeout tests."""
    try:
        ms = _int_param(request, "ms", default=1000, high=SLOW_MAX_MS)
    except ParameterError as error:
        return HttpResponseBadRequest(f"{error}\n", content_type="text/plain; charset=utf-8")
    time.sleep(ms / 1000)
    return HttpResponse(f"slept {ms} ms\n", content_type="text/plain; charset=utf-8")


def _failing_body() -> Iterator[bytes]:
    # A generator that fails before its first chunk: the server has sent nothing yet.
    chunks: list[bytes] = []
    if not chunks:
        raise RuntimeError("boom: deliberate failure in /boom's response body")
    yield from chunks


def boom(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """A 500 on purpose.

    The view raises, and Django turns that into its 500 page (logged by
    ``django.request``).  With ``?during=body`` the view returns a streamed
    response whose body raises instead: that exception is past Django, so the
    WSGI server logs it and answers the 500 (appserver's one-line summary).
    """
    if request.GET.get("during") == "body":
        return StreamingHttpResponse(_failing_body(), content_type="text/plain; charset=utf-8")
    raise RuntimeError("boom: deliberate failure from /boom (tests the 500 path)")


@require_safe
def stream(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """Stream ``chunks`` lines (default 10), sleeping ``delay_ms`` between them."""
    try:
        chunks = _int_param(request, "chunks", default=10, high=STREAM_MAX_CHUNKS)
        delay_ms = _int_param(request, "delay_ms", default=0, high=STREAM_MAX_DELAY_MS)
        if chunks * delay_ms > SLOW_MAX_MS:
            raise ParameterError(f"chunks * delay_ms: at most {SLOW_MAX_MS} ms in total")
    except ParameterError as error:
        return HttpResponseBadRequest(f"{error}\n", content_type="text/plain; charset=utf-8")

    def generate() -> Iterator[bytes]:
        for n in range(chunks):
            if n and delay_ms:
                time.sleep(delay_ms / 1000)
            yield f"chunk {n}\n".encode()

    response = StreamingHttpResponse(generate(), content_type="text/plain; charset=utf-8")
    # nginx's convention: a buffering proxy passes these chunks on as they come.
    response["X-Accel-Buffering"] = "no"
    return response
