"""The sample project's endpoints, through Django's test client (no server)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import socket
import time

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from sampleapp.shop.models import Item

SERVED_BY = f"{socket.gethostname()}/{os.getpid()}"
SEED_NAMES = ["Teapot", "Keep-alive socket", "uwsgi packet", "Harakiri timer", "Static file"]


# -- every response -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/", 200),
        ("/hello", 200),
        ("/template", 200),
        ("/healthz", 200),
        ("/api/items", 200),
        ("/stream?chunks=1", 200),
        ("/no-such-page", 404),
        ("/slow?ms=nope", 400),
        ("/boom", 500),
        ("/admin/", 302),
    ],
)
def test_every_response_says_which_host_and_process_served_it(path: str, status: int) -> None:
    response = Client(raise_request_exception=False).get(path)
    assert response.status_code == status
    assert response["X-Served-By"] == SERVED_BY


# -- pages --------------------------------------------------------------------


def test_index_renders_the_template_with_static_assets_and_items(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert [t.name for t in response.templates][:2] == ["shop/index.html", "shop/base.html"]
    body = response.content.decode()
    for asset in (
        "shop/css/site.css",
        "shop/js/site.js",
        "shop/img/logo.svg",
        "shop/img/favicon.png",
    ):
        assert f'"/static/{asset}"' in body
        assert finders.find(asset) is not None, asset
    for name in SEED_NAMES:
        assert name in body
    assert "5 in the database" in body


def test_template_page_renders_fifty_rows_without_the_database(client: Client) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/template")
    assert response.status_code == 200
    assert response.content.count(b"<tr class=") == 50
    assert b"50 rows rendered." in response.content
    assert len(queries) == 0


def test_hello_is_plain_text(client: Client) -> None:
    response = client.get("/hello")
    assert response.status_code == 200
    assert response.content == b"Hello, World!"
    assert response["Content-Type"] == "text/plain; charset=utf-8"


def test_head_is_allowed_where_get_is(client: Client) -> None:
    assert client.head("/hello").status_code == 200
    assert client.post("/hello").status_code == 405


def test_not_found_uses_the_project_404_page(client: Client) -> None:
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert b"/no-such-page" in response.content


# -- health check -------------------------------------------------------------


def test_healthz_answers_any_host_without_the_database(client: Client) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/healthz", headers={"host": "172.18.0.5:8000"})
    assert response.status_code == 200
    assert response.content == b"ok"
    assert len(queries) == 0


def test_healthz_rejects_writes(client: Client) -> None:
    response = client.post("/healthz")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


def test_other_paths_still_validate_the_host(client: Client) -> None:
    assert client.get("/hello", headers={"host": "evil.example"}).status_code == 400


# -- /api/items ---------------------------------------------------------------


def test_items_lists_the_seed_data(client: Client) -> None:
    response = client.get("/api/items")
    assert response.status_code == 200
    data = response.json()
    assert data["count"] == 5
    assert [item["name"] for item in data["items"]] == SEED_NAMES
    assert set(data["items"][0]) == {"id", "name", "description", "price_cents", "created"}


def test_items_limit(client: Client) -> None:
    data = client.get("/api/items?limit=2").json()
    assert data["count"] == 5
    assert len(data["items"]) == 2


@pytest.mark.parametrize("limit", ["-1", "x", "1001"])
def test_items_bad_limit_is_a_400_that_says_why(client: Client, limit: str) -> None:
    response = client.get(f"/api/items?limit={limit}")
    assert response.status_code == 400
    assert response.json() == {"error": f"limit: expected an integer from 0 to 1000, got {limit!r}"}


def test_post_creates_an_item_without_a_csrf_token() -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/api/items",
        {"name": "  Widget ", "price_cents": 250, "description": "d"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["name"] == "Widget"
    assert created["price_cents"] == 250
    assert response["Location"] == f"/api/items/{created['id']}"
    assert Item.objects.get(pk=created["id"]).description == "d"
    assert client.get(response["Location"]).json() == created
    assert client.get("/api/items").json()["count"] == 6


def test_writes_are_rolled_back_between_tests() -> None:
    assert Item.objects.count() == 5


def test_item_detail_404_is_json(client: Client) -> None:
    response = client.get("/api/items/999999")
    assert response.status_code == 404
    assert response.json() == {"error": "no item with id 999999"}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "expected a JSON object"),
        ({}, "name: expected a non-empty string"),
        ({"name": "   "}, "name: expected a non-empty string"),
        ({"name": "x" * 101}, "name: expected a non-empty string of at most 100"),
        ({"name": "x", "price_cents": -1}, "price_cents: expected a non-negative integer"),
        ({"name": "x", "price_cents": 1.5}, "price_cents: expected a non-negative integer"),
        ({"name": "x", "price_cents": True}, "price_cents: expected a non-negative integer"),
        ({"name": "x", "description": 3}, "description: expected a string"),
        ({"name": "x", "colour": "red"}, "unknown fields: colour"),
    ],
)
def test_post_validates_fields(client: Client, payload: object, message: str) -> None:
    response = client.post("/api/items", payload, content_type="application/json")
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert Item.objects.count() == 5


def test_post_rejects_invalid_json(client: Client) -> None:
    response = client.post("/api/items", b"{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("invalid JSON:")


def test_post_needs_a_json_content_type(client: Client) -> None:
    response = client.post("/api/items", {"name": "x"})  # multipart form
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


def test_items_rejects_other_methods(client: Client) -> None:
    assert client.delete("/api/items").status_code == 405


# -- /api/echo ----------------------------------------------------------------


def test_echo_hashes_a_10_mb_raw_body_above_the_upload_memory_limit() -> None:
    body = os.urandom(10 * 1024 * 1024)
    response = Client(enforce_csrf_checks=True).post(
        "/api/echo", body, content_type="application/octet-stream"
    )
    assert response.status_code == 200, response.content[:200]
    assert response.json() == {
        "measured": "raw-body",
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }


def test_echo_empty_body(client: Client) -> None:
    response = client.post("/api/echo", b"", content_type="application/octet-stream")
    assert response.json() == {
        "measured": "raw-body",
        "size": 0,
        "sha256": hashlib.sha256(b"").hexdigest(),
    }


def test_echo_reads_a_chunked_body_to_the_end_the_server_marks(client: Client) -> None:
    # A de-chunked body: no CONTENT_LENGTH, and wsgi.input_terminated says the
    # stream ends at the body's end (what gunicorn and uWSGI provide).
    body = os.urandom(300_000)
    response = client.generic(
        "POST",
        "/api/echo",
        CONTENT_TYPE="application/octet-stream",
        **{"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True},
    )
    assert response.json()["size"] == len(body)
    assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()


def test_echo_multipart_counts_only_the_file_parts() -> None:
    first = os.urandom(3 * 1024 * 1024)
    second = b"second file"
    one = io.BytesIO(first)
    one.name = "one.bin"
    two = io.BytesIO(second)
    two.name = "two.txt"
    response = Client(enforce_csrf_checks=True).post(
        "/api/echo", {"comment": "not counted", "one": one, "two": two}
    )
    assert response.status_code == 200
    data = response.json()
    assert data["measured"] == "file-parts"
    assert data["size"] == len(first) + len(second)
    assert data["sha256"] == hashlib.sha256(first + second).hexdigest()
    assert data["files"] == [
        {
            "field": "one",
            "name": "one.bin",
            "size": len(first),
            "sha256": hashlib.sha256(first).hexdigest(),
        },
        {
            "field": "two",
            "name": "two.txt",
            "size": len(second),
            "sha256": hashlib.sha256(second).hexdigest(),
        },
    ]


def test_echo_malformed_multipart_is_a_400(client: Client) -> None:
    response = client.post("/api/echo", b"--x\r\n", content_type="multipart/form-data")
    assert response.status_code == 400


def test_echo_is_post_only(client: Client) -> None:
    assert client.get("/api/echo").status_code == 405


# -- /slow, /boom, /stream ----------------------------------------------------


def test_slow_sleeps_for_the_requested_time(client: Client) -> None:
    started = time.monotonic()
    response = client.get("/slow?ms=60")
    assert time.monotonic() - started >= 0.06
    assert response.content == b"slept 60 ms\n"


@pytest.mark.parametrize("ms", ["-5", "abc", "120001", "1e3"])
def test_slow_rejects_out_of_range_values(client: Client, ms: str) -> None:
    response = client.get(f"/slow?ms={ms}")
    assert response.status_code == 400
    assert response.content == f"ms: expected an integer from 0 to 120000, got {ms!r}\n".encode()


def test_boom_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = Client(raise_request_exception=False).get("/boom")
    assert response.status_code == 500
    assert b"500 Server Error" in response.content
    assert b"Traceback" not in response.content
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert record.exc_info is not None
    assert "deliberate failure" in str(record.exc_info[1])


def test_stream_yields_the_requested_chunks(client: Client) -> None:
    response = client.get("/stream?chunks=3")
    assert response.status_code == 200
    assert response.streaming
    assert list(response.streaming_content) == [b"chunk 0\n", b"chunk 1\n", b"chunk 2\n"]
    assert response["X-Accel-Buffering"] == "no"
    assert not response.has_header("Content-Length")


def test_stream_delay_spaces_the_chunks(client: Client) -> None:
    response = client.get("/stream?chunks=3&delay_ms=30")
    started = time.monotonic()
    assert b"".join(response.streaming_content) == b"chunk 0\nchunk 1\nchunk 2\n"
    assert time.monotonic() - started >= 0.06


@pytest.mark.parametrize("query", ["chunks=-1", "chunks=100001", "chunks=20&delay_ms=10000"])
def test_stream_rejects_bad_parameters(client: Client, query: str) -> None:
    assert client.get(f"/stream?{query}").status_code == 400


# -- admin, static files, migrations ------------------------------------------


def test_admin_login_page_links_its_static_files(client: Client) -> None:
    assert client.get("/admin/")["Location"] == "/admin/login/?next=/admin/"
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"/static/admin/css/base.css" in response.content


def test_collectstatic_gathers_project_and_admin_files() -> None:
    call_command("collectstatic", interactive=False, verbosity=0)
    for relative in ("shop/css/site.css", "shop/img/favicon.png", "admin/css/base.css"):
        assert (settings.STATIC_ROOT / relative).is_file(), relative


def test_models_and_migrations_agree() -> None:
    # Exits non-zero when a model change has no migration.
    call_command("makemigrations", check=True, dry_run=True, verbosity=0)


def test_item_json_round_trips(client: Client) -> None:
    item = Item.objects.create(name="Round trip", price_cents=1)
    assert json.loads(json.dumps(item.as_json()))["created"] == item.created.isoformat()
    assert str(item) == "Round trip"
    assert str(item.price) == "0.01"
