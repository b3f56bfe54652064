"""Every sampleapp view gives the same answer through both backends.

:8000 reaches Django through edge -> uwsgi -> appserver, :8001 through
edge -> HTTP -> gunicorn.  The status, the content type and the body must
match byte for byte; only X-Served-By (which host and process answered) and
per-response secrets (CSRF tokens) may differ.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.support.topology import DJANGO, GUNICORN, Response, Topology, fetch

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

# (method, path, request body, expected status)
VIEWS = [
    ("GET", "/", None, 200),
    ("GET", "/template", None, 200),
    ("GET", "/hello", None, 200),
    ("HEAD", "/hello", None, 200),
    ("GET", "/api/items", None, 200),
    ("GET", "/api/items?limit=2", None, 200),
    ("GET", "/api/items?limit=oops", None, 400),
    ("GET", "/api/items/1", None, 200),
    ("GET", "/api/items/999999", None, 404),
    ("POST", "/api/echo", b"the same bytes both ways\n", 200),
    ("GET", "/slow?ms=20", None, 200),
    ("GET", "/slow?ms=oops", None, 400),
    ("GET", "/stream?chunks=5", None, 200),
    ("GET", "/boom", None, 500),
    ("GET", "/healthz", None, 200),
    ("GET", "/no/such/page", None, 404),
    ("POST", "/hello", b"", 403),  # CSRF: Django refuses a form POST without a token
    ("GET", "/admin/", None, 302),
    ("GET", "/admin/login/?next=/admin/", None, 200),
]

_CSRF = re.compile(rb'(name="csrfmiddlewaretoken" value=")[^"]+(")')


def _normalised(response: Response) -> bytes:
    return _CSRF.sub(rb"\1<token>\2", response.body)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"), VIEWS, ids=[f"{m} {p}" for m, p, _, _ in VIEWS]
)
def test_view_is_the_same_through_uwsgi_and_gunicorn(
    stack: Topology, method: str, path: str, body: bytes | None, status: int
) -> None:
    headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
    via_uwsgi = fetch(stack.ports[DJANGO], path, method=method, body=body, headers=headers)
    via_gunicorn = fetch(stack.ports[GUNICORN], path, method=method, body=body, headers=headers)

    assert (via_uwsgi.status, via_gunicorn.status) == (status, status), (
        via_uwsgi.body[:500],
        via_gunicorn.body[:500],
    )
    assert via_uwsgi.header("content-type") == via_gunicorn.header("content-type")
    assert _normalised(via_uwsgi) == _normalised(via_gunicorn)
    for name in ("location", "allow"):
        assert via_uwsgi.header(name) == via_gunicorn.header(name), name
    # Both answered by Django, and by the backend each port stands for.
    assert stack.replica_of(via_uwsgi.header("x-served-by")) is not None, via_uwsgi.headers
    assert via_gunicorn.header("x-served-by"), via_gunicorn.headers
    assert stack.replica_of(via_gunicorn.header("x-served-by")) is None, via_gunicorn.headers


def test_creating_an_item_is_the_same_through_uwsgi_and_gunicorn(stack: Topology) -> None:
    created = []
    for port in (stack.ports[DJANGO], stack.ports[GUNICORN]):
        payload = {"name": f"probe {uuid.uuid4().hex[:8]}", "price_cents": 1299}
        response = fetch(
            port,
            "/api/items",
            method="POST",
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert response.status == 201, response.body
        item = response.json()
        assert response.header("location") == f"/api/items/{item['id']}"
        assert {k: v for k, v in item.items() if k in payload} == payload
        created.append(item)
    # Both backends share one database: each sees the other's item.
    for port, item in zip((stack.ports[GUNICORN], stack.ports[DJANGO]), created, strict=True):
        assert fetch(port, f"/api/items/{item['id']}").json() == item
    assert sorted(created[0]) == sorted(created[1])
