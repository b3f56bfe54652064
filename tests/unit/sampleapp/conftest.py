"""Run the sample Django project in-process under Django's test client.

There is no pytest-django here, so this file does its job: configure the
settings, ``django.setup()``, migrate a throw-away SQLite database once per
session, and wrap every test in a transaction that is rolled back.

The project is imported from the repository root, as ``sampleapp.sampleapp``
(the layout setuptools installs).  The settings read the environment once, at
import, so the test values are put in ``os.environ`` only for that moment and
then restored: processes that other tests start must not inherit them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from django.test import Client

REPO_ROOT = Path(__file__).resolve().parents[3]
PROJECT_DIR = REPO_ROOT / "sampleapp"

# Every variable settings.py reads; the test run must not depend on the caller's shell.
SETTINGS_ENV_VARS = (
    "DJANGO_SETTINGS_MODULE",
    "DJANGO_DEBUG",
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "DJANGO_CSRF_TRUSTED_ORIGINS",
    "DJANGO_HTTPS",
    "DJANGO_HSTS_SECONDS",
    "DJANGO_HSTS_INCLUDE_SUBDOMAINS",
    "DJANGO_HSTS_PRELOAD",
    "DJANGO_LOG_LEVEL",
    "DJANGO_LOG_REQUESTS",
    "DATABASE_URL",
    "SQLITE_PATH",
    "STATIC_ROOT",
    "STATIC_URL",
)
TEST_SECRET_KEY = "test-only-secret-key-" + "k3y" * 12

_TMP = Path(tempfile.mkdtemp(prefix="sampleapp-tests-"))
STATIC_ROOT = _TMP / "static"


def _setup_django() -> None:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    loaded = sys.modules.get("sampleapp")
    if loaded is not None and Path(loaded.__file__ or "") != PROJECT_DIR / "__init__.py":
        raise RuntimeError(
            f"'sampleapp' is already imported from {loaded.__file__}; these tests need the "
            f"repository-root layout ({PROJECT_DIR}/__init__.py). Do not mix the two roots."
        )
    saved = dict(os.environ)
    try:
        for key in SETTINGS_ENV_VARS:
            os.environ.pop(key, None)
        os.environ.update(
            DJANGO_SETTINGS_MODULE="sampleapp.sampleapp.settings",
            DJANGO_SECRET_KEY=TEST_SECRET_KEY,
            DATABASE_URL=f"sqlite:///{_TMP / 'db.sqlite3'}",
            STATIC_ROOT=str(STATIC_ROOT),
        )
        import django

        django.setup()
    finally:
        os.environ.clear()
        os.environ.update(saved)


_setup_django()


@pytest.fixture(scope="session", autouse=True)
def _django_database() -> Iterator[None]:
    from django.core.management import call_command
    from django.db import connections
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment()  # adds "testserver" to ALLOWED_HOSTS, records templates
    call_command("migrate", interactive=False, verbosity=0)
    yield
    teardown_test_environment()
    connections.close_all()
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(autouse=True)
def _rollback() -> Iterator[None]:
    """Undo each test's writes, as django.test.TestCase does."""
    from django.db import transaction

    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def _project_env(tmp: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in SETTINGS_ENV_VARS and key != "PYTHONPATH"
    }
    env.update(
        DJANGO_SECRET_KEY=TEST_SECRET_KEY,
        SQLITE_PATH=str(tmp / "db.sqlite3"),
        STATIC_ROOT=str(tmp / "static"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


@pytest.fixture
def project_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a subprocess running the project: its own database and static root."""
    return _project_env(tmp_path)


@pytest.fixture(scope="module")
def migrated_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A directory holding a migrated database, and the environment that uses it."""
    tmp = tmp_path_factory.mktemp("migrated")
    env = _project_env(tmp)
    manage_py = PROJECT_DIR / "manage.py"
    done = subprocess.run(
        [sys.executable, str(manage_py), "migrate", "--noinput"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"migrate failed:\n{done.stdout}\n{done.stderr}"
    return tmp, env


@pytest.fixture
def client() -> Client:
    from django.test import Client

    return Client()
