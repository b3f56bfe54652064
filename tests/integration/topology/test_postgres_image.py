"""The wsgistack/postgres image on its own: the official image's interface, and its refusals.

``WSGISTACK_POSTGRES_IMAGE`` (``make postgres-image``); a missing image fails.
Each container is named for this run and removed at the end.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres_stack import postgres_image

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> str:
    name = postgres_image()
    found = _docker("image", "inspect", name)
    assert found.returncode == 0, f"image {name} not found: run `make postgres-image` first"
    return name


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"wsgistack-pgimage-{uuid.uuid4().hex[:8]}"
    yield name
    _docker("rm", "-f", "-v", name)


def test_without_a_password_it_refuses_to_create_a_cluster(image: str) -> None:
    result = _docker("run", "--rm", image)
    assert result.returncode == 1
    assert "POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) is required" in result.stderr


def test_it_will_not_run_the_server_as_root(image: str) -> None:
    result = _docker("run", "--rm", "--user", "0", "-e", "POSTGRES_PASSWORD=x", image)
    assert result.returncode == 1
    assert "run as the postgres user (uid 999), not root" in result.stderr


def test_password_file_database_init_scripts_and_password_auth(
    image: str, container_name: str, tmp_path: Path
) -> None:
    (tmp_path / "password").write_text("file-secret\n")
    init = tmp_path / "initdb.d"
    init.mkdir()
    (init / "10-notes.sql").write_text(
        "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('hi');\n"
    )
    for path in (tmp_path, init, tmp_path / "password", init / "10-notes.sql"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    started = _docker(
        "run", "-d", "--name", container_name,
        "-e", "POSTGRES_USER=shop", "-e", "POSTGRES_DB=shopdb",
        "-e", "POSTGRES_PASSWORD_FILE=/run/secrets/pw", "-e", "POSTGRES_INITDB_ARGS=--no-sync",
        "-v", f"{tmp_path / 'password'}:/run/secrets/pw:ro",
        "-v", f"{init}:/docker-entrypoint-initdb.d:ro",
        image,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 90
    while _docker("exec", container_name, "pg_isready", "-q", "-h", "127.0.0.1").returncode != 0:
        logs = _docker("logs", container_name)
        assert time.monotonic() < deadline, f"not ready in 90 s:\n{logs.stdout}{logs.stderr}"
        time.sleep(0.25)

    def psql_over_tcp(password: str) -> subprocess.CompletedProcess[str]:
        return _docker(
            "exec", "-e", f"PGPASSWORD={password}", container_name,
            "psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-U", "shop", "-d", "shopdb",
            "-c", "SELECT body FROM notes",
        )  # fmt: skip

    good = psql_over_tcp("file-secret")
    assert (good.returncode, good.stdout.strip()) == (0, "hi"), good.stderr
    bad = psql_over_tcp("wrong")
    assert bad.returncode != 0 and "password authentication failed" in bad.stderr
    logs = _docker("logs", container_name).stderr
    assert "running /docker-entrypoint-initdb.d/10-notes.sql" in logs
    owner = _docker("exec", container_name, "stat", "-c", "%u:%g %a", "/var/lib/postgresql/data")
    assert owner.stdout.split() == ["999:999", "700"]
