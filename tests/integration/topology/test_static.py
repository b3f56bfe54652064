"""collectstatic output served by edge itself (never by Django), on both Django ports.

The files come from the `static` volume that compose.yaml's `migrate` fills
(collectstatic, then NAME.gz next to text files for gzip_static).
"""

from __future__ import annotations

import gzip

import pytest

from tests.support.processes import REPO
from tests.support.topology import DJANGO, GUNICORN, Topology, fetch

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

SHOP_STATIC = REPO / "sampleapp" / "shop" / "static"
CSS = "/static/shop/css/site.css"
CSS_BYTES = (SHOP_STATIC / "shop" / "css" / "site.css").read_bytes()
PORTS = pytest.mark.parametrize("port_name", [DJANGO, GUNICORN])


@PORTS
@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/shop/css/site.css", "text/css"),
        ("/static/shop/js/site.js", "javascript"),
        ("/static/shop/img/logo.svg", "image/svg+xml"),
        ("/static/shop/img/favicon.png", "image/png"),
    ],
)
def test_collected_file_is_served_by_edge(
    stack: Topology, port_name: str, path: str, content_type: str
) -> None:
    response = fetch(stack.ports[port_name], path)
    assert response.status == 200
    assert response.body == (SHOP_STATIC / path.removeprefix("/static/")).read_bytes()
    assert content_type in (response.header("content-type") or "")
    assert response.header("x-served-by") is None, "a static file went to Django"
    assert response.header("etag") and response.header("last-modified")
    assert "max-age=604800" in (response.header("cache-control") or ""), response.headers


@PORTS
def test_admin_static_files_are_collected(stack: Topology, port_name: str) -> None:
    response = fetch(stack.ports[port_name], "/static/admin/css/base.css")
    assert response.status == 200
    assert b"{" in response.body
    assert "text/css" in (response.header("content-type") or "")


@PORTS
def test_conditional_get_gives_304(stack: Topology, port_name: str) -> None:
    port = stack.ports[port_name]
    first = fetch(port, CSS)
    etag, last_modified = first.header("etag"), first.header("last-modified")
    assert etag and last_modified

    by_etag = fetch(port, CSS, headers={"If-None-Match": etag})
    assert by_etag.status == 304 and by_etag.body == b""
    assert by_etag.header("etag") == etag

    by_date = fetch(port, CSS, headers={"If-Modified-Since": last_modified})
    assert by_date.status == 304 and by_date.body == b""

    changed = fetch(port, CSS, headers={"If-None-Match": '"not-the-etag"'})
    assert changed.status == 200 and changed.body == CSS_BYTES


@PORTS
def test_range_requests(stack: Topology, port_name: str) -> None:
    port = stack.ports[port_name]
    size = len(CSS_BYTES)

    head = fetch(port, CSS, headers={"Range": "bytes=0-9"})
    assert head.status == 206
    assert head.body == CSS_BYTES[:10]
    assert head.header("content-range") == f"bytes 0-9/{size}"

    tail = fetch(port, CSS, headers={"Range": "bytes=-7"})
    assert tail.status == 206 and tail.body == CSS_BYTES[-7:]
    assert tail.header("content-range") == f"bytes {size - 7}-{size - 1}/{size}"

    beyond = fetch(port, CSS, headers={"Range": f"bytes={size + 10}-"})
    assert beyond.status == 416
    assert beyond.header("content-range") == f"bytes */{size}"


@PORTS
def test_precompressed_gzip_for_clients_that_accept_it(stack: Topology, port_name: str) -> None:
    port = stack.ports[port_name]
    compressed = fetch(port, CSS, headers={"Accept-Encoding": "gzip, deflate"})
    assert compressed.status == 200
    assert compressed.header("content-encoding") == "gzip"
    assert gzip.decompress(compressed.body) == CSS_BYTES
    assert len(compressed.body) < len(CSS_BYTES)

    plain = fetch(port, CSS, headers={"Accept-Encoding": "identity"})
    assert plain.header("content-encoding") is None and plain.body == CSS_BYTES


@PORTS
def test_missing_static_file_is_a_404_from_edge(stack: Topology, port_name: str) -> None:
    response = fetch(stack.ports[port_name], "/static/shop/css/no-such-file.css")
    assert response.status == 404
    assert response.header("x-served-by") is None, "a /static/ miss went to Django"


@PORTS
def test_no_file_outside_the_static_directory(stack: Topology, port_name: str) -> None:
    for path in (
        "/static/../etc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static../etc/passwd",
    ):
        response = fetch(stack.ports[port_name], path)
        assert b"root:" not in response.body, path
        assert response.status in (400, 403, 404), (path, response.status)
