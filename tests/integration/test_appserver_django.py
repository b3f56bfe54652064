"""The Django sample on appserver --http-socket, with module= (the other way the seed's users name apps)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os


def test_django_views_over_http_socket(start_sampleapp, django_env) -> None:
    server = start_sampleapp(django_env)
    server.wait_ready(2)
    connection = http.client.HTTPConnection(*server.address("http"), timeout=30)

    def call(method, path, body=None, headers=None):
        connection.request(
            method, path, body=body, headers={"Host": "localhost", **(headers or {})}
        )
        response = connection.getresponse()
        return response.status, response.getheader("X-Served-By"), response.read()

    status, served_by, body = call("GET", "/hello")
    assert (status, body) == (200, b"Hello, World!")
    assert served_by and "/" in served_by
    status, _, body = call("GET", "/api/items?limit=1000")
    before = len(json.loads(body)["items"])
    item = {"name": "from the test", "price_cents": 150}
    status, _, body = call(
        "POST", "/api/items", json.dumps(item), {"Content-Type": "application/json"}
    )
    assert status == 201, body
    status, _, body = call("GET", "/api/items?limit=1000")
    names = [entry["name"] for entry in json.loads(body)["items"]]
    assert len(names) == before + 1 and "from the test" in names
    payload = os.urandom(5 * 1024 * 1024)
    status, _, body = call(
        "POST", "/api/echo", payload, {"Content-Type": "application/octet-stream"}
    )
    assert status == 200, body
    assert json.loads(body)["sha256"] == hashlib.sha256(payload).hexdigest()
    assert call("GET", "/no/such/page")[0] == 404
    assert call("GET", "/boom")[0] == 500
    status, _, body = call("GET", "/stream?chunks=20")
    assert status == 200 and body
    connection.close()
    assert "Traceback" in server.log()  # /boom's, logged by Django
