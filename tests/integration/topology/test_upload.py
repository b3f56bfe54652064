"""A 10 MB upload reaches Django whole through both backends (edge's client_max_body_size is 20m)."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest

from tests.support.topology import DJANGO, GUNICORN, Topology, fetch

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

SIZE = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def payload() -> bytes:
    return os.urandom(SIZE)


@pytest.mark.parametrize("port_name", [DJANGO, GUNICORN])
def test_raw_10mb_upload_checksum(stack: Topology, port_name: str, payload: bytes) -> None:
    response = fetch(
        stack.ports[port_name],
        "/api/echo",
        method="POST",
        body=payload,
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert response.status == 200, response.body[:500]
    assert response.json() == {
        "measured": "raw-body",
        "size": SIZE,
        "sha256": hashlib.sha256(payload).hexdigest(),
    }


@pytest.mark.parametrize("port_name", [DJANGO, GUNICORN])
def test_multipart_10mb_upload_checksum(stack: Topology, port_name: str, payload: bytes) -> None:
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="note"\r\n\r\nhello\r\n',
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="file"; filename="blob.bin"\r\n',
            b"Content-Type: application/octet-stream\r\n\r\n",
            payload,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    response = fetch(
        stack.ports[port_name],
        "/api/echo",
        method="POST",
        body=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=60,
    )
    assert response.status == 200, response.body[:500]
    result = response.json()
    digest = hashlib.sha256(payload).hexdigest()
    assert (result["measured"], result["size"], result["sha256"]) == ("file-parts", SIZE, digest)
    assert result["files"] == [
        {"field": "file", "name": "blob.bin", "size": SIZE, "sha256": digest}
    ]


def test_body_over_the_limit_is_refused_by_edge(stack: Topology) -> None:
    response = fetch(
        stack.ports[DJANGO],
        "/api/echo",
        method="POST",
        body=b"x" * (21 * 1024 * 1024),
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert response.status == 413
    assert response.header("x-served-by") is None
