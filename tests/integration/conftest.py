from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.processes import REPO, ServerProcess, appserver

APPS = Path(__file__).parent / "apps"
WSGI_APP = APPS / "wsgi_app.py"


@pytest.fixture
def start_appserver(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``python -m appserver ARGS`` in tmp_path; stopped (and its log checked) after the test."""
    started: list[ServerProcess] = []

    def start(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, name: str = "appserver") -> ServerProcess:
        server = appserver(list(args), cwd=cwd or tmp_path, log_path=tmp_path / f"{name}-{len(started)}.log", env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    for server in started:
        log = server.log()
        # wsgiref.validate raises AssertionError inside the app on any PEP 3333 violation.
        assert "AssertionError" not in log, f"PEP 3333 violation logged:\n{log}"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
