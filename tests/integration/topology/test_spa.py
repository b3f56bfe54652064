"""The single-page app on :8080: files, the try_files fallback, and its API calls."""

from __future__ import annotations

import pytest

from tests.support.processes import REPO
from tests.support.topology import SPA, Topology, fetch

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

DIST = REPO / "sampleapp" / "spa" / "dist"
INDEX = (DIST / "index.html").read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/",  # the seed's block: root dist + index
        "/app/",  # the SPA's <base href>
        "/app/items",  # client-side routes: not files, so /index.html
        "/app/items/3",
        "/app/about",
        "/app/no/such/route?with=query",
        "/no-such-file.html",  # the seed's `try_files $uri $uri/ /index.html`
    ],
)
def test_every_route_falls_back_to_index_html(stack: Topology, path: str) -> None:
    response = fetch(stack.ports[SPA], path)
    assert response.status == 200, (path, response.body[:300])
    assert response.body == INDEX
    assert "text/html" in (response.header("content-type") or "")


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/app/assets/app.js", "javascript"),
        ("/app/assets/app.css", "text/css"),
        ("/app/assets/logo.svg", "image/svg+xml"),
        ("/assets/app.js", "javascript"),
    ],
)
def test_real_files_are_served_as_themselves(stack: Topology, path: str, content_type: str) -> None:
    response = fetch(stack.ports[SPA], path)
    assert response.status == 200
    relative = path.removeprefix("/app/").lstrip("/")
    assert response.body == (DIST / relative).read_bytes()
    assert content_type in (response.header("content-type") or "")
    assert response.header("etag")


def test_the_spa_reaches_the_api_on_its_own_origin(stack: Topology) -> None:
    response = fetch(stack.ports[SPA], "/api/items?limit=3")
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert len(response.json()["items"]) <= 3
    assert stack.replica_of(response.header("x-served-by")) is not None


def test_edge_answers_its_own_health_check(stack: Topology) -> None:
    response = fetch(stack.ports[SPA], "/healthz")
    assert (response.status, response.body) == (200, b"ok\n")
    assert response.header("x-served-by") is None
