"""The Django sample on PostgreSQL: DATABASE_URL=postgres://..., migrated, served by appserver.

A throwaway PostgreSQL (Debian's packages, see tests/support/postgres.py) runs
for this module.  The test fails, never skips, when PostgreSQL or psycopg is
missing: CI installs both.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import SAMPLEAPP
from tests.support.postgres import PostgresServer, running_postgres
from tests.support.processes import ServerProcess

SEEDED = ["Teapot", "Keep-alive socket", "uwsgi packet", "Harakiri timer", "Static file"]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_env(postgres: PostgresServer, tmp_path: Path) -> dict[str, str]:
    """The sample's environment on ``postgres``, after ``manage.py migrate``."""
    env = {
        **os.environ,
        "DATABASE_URL": postgres.url,
        "DJANGO_SECRET_KEY": "test-secret-key-" + "x" * 40,
        "STATIC_ROOT": str(tmp_path / "static"),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    env.pop("SQLITE_PATH", None)
    result = subprocess.run(
        [sys.executable, str(SAMPLEAPP / "manage.py"), "migrate", "--noinput"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"migrate failed:\n{result.stdout}{result.stderr}"
    return env


def test_sampleapp_on_postgres(
    start_sampleapp: Callable[..., ServerProcess],
    postgres: PostgresServer,
    postgres_env: dict[str, str],
) -> None:
    import psycopg

    # migrate really wrote to PostgreSQL (not a silent SQLite fallback).
    with psycopg.connect(postgres.conninfo) as db:
        seeded = [row[0] for row in db.execute("SELECT name FROM shop_item ORDER BY id")]
    assert seeded == SEEDED

    server = start_sampleapp(postgres_env)
    server.wait_ready(2)
    host, port = server.address("http")

    def call(method: str, path: str, body: str | None = None) -> tuple[int, Any]:
        # A fresh connection per request, so both workers get to serve.
        connection = http.client.HTTPConnection(host, port, timeout=30)
        try:
            headers = {"Host": "localhost", "Content-Type": "application/json"}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    for _ in range(4):
        status, listing = call("GET", "/api/items?limit=1000")
        assert status == 200, listing
        assert [item["name"] for item in listing["items"]] == SEEDED
        assert listing["count"] == len(SEEDED)

    item = {"name": "Stored in PostgreSQL", "description": "via appserver", "price_cents": 4321}
    status, created = call("POST", "/api/items", json.dumps(item))
    assert status == 201, created
    assert {key: created[key] for key in item} == item

    status, listing = call("GET", "/api/items?limit=1000")
    assert status == 200 and listing["count"] == len(SEEDED) + 1
    assert listing["items"][-1]["id"] == created["id"]

    with psycopg.connect(postgres.conninfo) as db:
        row = db.execute(
            "SELECT name, description, price_cents FROM shop_item WHERE id = %s",
            (created["id"],),
        ).fetchone()
        total = db.execute("SELECT count(*) FROM shop_item").fetchone()
    assert row == (item["name"], item["description"], item["price_cents"])
    assert total == (len(SEEDED) + 1,)
    assert "Traceback" not in server.log(), server.log()
