"""The request ID in the sample project's logs: RequestIdMiddleware and RequestIdFilter.

The project's own LOGGING config is live here (django.setup() applied it), and
its handler writes to the current sys.stderr, so capsys sees the real lines.
"""

from __future__ import annotations

import logging
import re
import traceback

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory, override_settings

from sampleapp.sampleapp.log import request_id
from sampleapp.sampleapp.middleware import RequestIdMiddleware, request_id_of, sane_request_id

HEX32 = re.compile(r"[0-9a-f]{32}")


def _lines(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def test_the_servers_request_id_is_on_djangos_error_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    response = Client(raise_request_exception=False).get("/boom", REQUEST_ID="from-appserver-1")
    assert response.status_code == 500
    [line] = _lines(capsys.readouterr().err, "Internal Server Error: /boom")
    assert " ERROR " in line
    assert "request_id=from-appserver-1 django.request: Internal Server Error: /boom" in line


def test_the_x_request_id_header_is_used_without_a_server_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # gunicorn behind edge: no REQUEST_ID, the header as HTTP_X_REQUEST_ID.
    Client().get("/no-such-page", HTTP_X_REQUEST_ID="edge-made-2")
    [line] = _lines(capsys.readouterr().err, "Not Found: /no-such-page")
    assert "request_id=edge-made-2 " in line


@pytest.mark.parametrize("header", [None, "a b", "x" * 129, "caf\u00e9", "tab\there", ""])
def test_without_a_usable_id_one_is_made(header: str | None) -> None:
    meta: dict[str, object] = {} if header is None else {"HTTP_X_REQUEST_ID": header}
    made = request_id_of(meta)
    assert HEX32.fullmatch(made), made
    assert request_id_of(meta) != made  # random, not a constant


def test_the_servers_id_wins_over_the_header() -> None:
    meta: dict[str, object] = {"REQUEST_ID": "server", "HTTP_X_REQUEST_ID": "client"}
    assert request_id_of(meta) == "server"
    assert sane_request_id("!~" * 64) and not sane_request_id("!~" * 64 + "!")


def test_one_line_per_request_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    with override_settings(LOG_REQUESTS=True):
        client = Client()  # the middleware reads the setting when the handler is built
        assert client.get("/hello?x=1", HTTP_X_REQUEST_ID="per-request-3").status_code == 200
    [line] = _lines(capsys.readouterr().err, "sampleapp.request:")
    assert re.search(
        r" INFO \[\d+\] request_id=per-request-3 sampleapp\.request: "
        r"GET /hello\?x=1 -> 200 in \d+\.\d ms$",
        line,
    ), line


def test_no_request_line_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert Client().get("/hello").status_code == 200
    assert "sampleapp.request" not in capsys.readouterr().err


def test_outside_a_request_the_id_is_a_dash(capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("sampleapp.test").warning("no request here")
    [line] = _lines(capsys.readouterr().err, "no request here")
    assert "request_id=- sampleapp.test: no request here" in line
    assert request_id.get() == "-"  # request_finished reset it after each request above


def test_the_view_sees_the_id_in_meta_and_in_the_context() -> None:
    seen: list[str] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.extend([request.META["REQUEST_ID"], request_id.get()])
        return HttpResponse("ok")

    response = RequestIdMiddleware(view)(RequestFactory().get("/x", HTTP_X_REQUEST_ID="meta-4"))
    assert seen == ["meta-4", "meta-4"]
    assert request_id.get() == "meta-4"  # until the server closes the response
    response.close()  # sends request_finished
    assert request_id.get() == "-"


def test_boom_during_body_raises_past_django_from_views_py() -> None:
    response = Client(raise_request_exception=False).get("/boom?during=body")
    assert response.status_code == 200  # the server, not Django, turns this into a 500
    with pytest.raises(RuntimeError, match="deliberate failure in /boom's response body") as info:
        list(response.streaming_content)
    innermost = traceback.extract_tb(info.value.__traceback__)[-1]
    assert innermost.filename.endswith("sampleapp/shop/views.py")
    assert innermost.name == "_failing_body"
