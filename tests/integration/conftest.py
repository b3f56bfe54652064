from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.processes import REPO, ServerProcess, appserver

APPS = Path(__file__).parent / "apps"
WSGI_APP = APPS / "wsgi_app.py"
SAMPLEAPP = REPO / "sampleapp"


@pytest.fixture
def start_appserver(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``python -m appserver ARGS`` in tmp_path; stopped (and its log checked) after the test."""
    started: list[ServerProcess] = []

    def start(
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        name: str = "appserver",
    ) -> ServerProcess:
        server = appserver(
            list(args),
            cwd=cwd or tmp_path,
            log_path=tmp_path / f"{name}-{len(started)}.log",
            env=env,
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    for server in started:
        log = server.log()
        # wsgiref.validate raises AssertionError inside the app on any PEP 3333 violation.
        assert "AssertionError" not in log, f"PEP 3333 violation logged:\n{log}"


@pytest.fixture
def start_test_app(start_appserver: Callable[..., ServerProcess]) -> Callable[..., ServerProcess]:
    """The validated test app on a uwsgi socket (port 0) under a master, plus ``extra`` options."""

    def start(*extra: str, **kwargs: object) -> ServerProcess:
        return start_appserver(
            "--socket", "127.0.0.1:0", "--wsgi-file", str(WSGI_APP), "--master", *extra, **kwargs
        )

    return start


@pytest.fixture
def start_sampleapp(start_appserver: Callable[..., ServerProcess]) -> Callable[..., ServerProcess]:
    """The Django sample on --http-socket (port 0), 2 processes x 4 threads, with ``env``."""

    def start(env: dict[str, str]) -> ServerProcess:
        return start_appserver(
            "--http-socket", "127.0.0.1:0", "--chdir", str(SAMPLEAPP),
            "--module", "sampleapp.wsgi:application", "--master", "--processes", "2", "--threads", "4",
            cwd=SAMPLEAPP.parent, env=env,
        )  # fmt: skip

    return start


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def django_env(tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SECRET_KEY": "test-secret-key-" + "x" * 40,
        "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
        "STATIC_ROOT": str(tmp_path / "static"),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        subprocess.run(
            [sys.executable, str(SAMPLEAPP / "manage.py"), *command],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    return env
