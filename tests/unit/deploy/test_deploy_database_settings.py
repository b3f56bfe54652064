"""The database settings the deployments use: DATABASE_URL, DATABASE_PASSWORD_FILE, DATABASE_CONN_MAX_AGE.

Each case loads the sample project's settings in a fresh interpreter with
exactly the given environment, as a container does, and reads back
``DATABASES["default"]`` (or the error, which must name the variable).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import REPO

PROBE = (
    "import json\n"
    "from django.conf import settings\n"
    "print(json.dumps(settings.DATABASES['default'], default=str))\n"
)


def _settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "sampleapp.settings",
        "DJANGO_SECRET_KEY": "settings-test-" + "k" * 40,
    }
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO / "sampleapp",
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _database(env: dict[str, str]) -> dict[str, Any]:
    result = _settings(env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_an_empty_database_url_means_sqlite(tmp_path: Path) -> None:
    # compose.yaml passes DATABASE_URL=${DATABASE_URL:-}: empty unless the postgres profile is on.
    database = _database({"DATABASE_URL": "", "SQLITE_PATH": str(tmp_path / "db.sqlite3")})
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == str(tmp_path / "db.sqlite3")


def test_the_password_comes_from_its_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "db_password"
    secret.write_text("p@ss:word/1\nignored second line\n")
    database = _database(
        {
            "DATABASE_URL": "postgres://wsgistack@postgres:5432/wsgistack?connect_timeout=5",
            "DATABASE_PASSWORD_FILE": str(secret),
        }
    )
    assert (database["USER"], database["PASSWORD"], database["HOST"]) == (
        "wsgistack",
        "p@ss:word/1",
        "postgres",
    )
    assert (database["CONN_MAX_AGE"], database["CONN_HEALTH_CHECKS"]) == (60, True)


def test_connection_age_is_configurable() -> None:
    database = _database({"DATABASE_URL": "postgres://u:p@db/shop", "DATABASE_CONN_MAX_AGE": "0"})
    assert (database["CONN_MAX_AGE"], database["CONN_HEALTH_CHECKS"]) == (0, True)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"DATABASE_URL": "postgres://u@db/shop", "DATABASE_PASSWORD_FILE": "/nonexistent/pw"},
            "DATABASE_PASSWORD_FILE: cannot read /nonexistent/pw: No such file or directory",
        ),
        (
            {
                "DATABASE_URL": "postgres://u:inline@db/shop",
                "DATABASE_PASSWORD_FILE": "/etc/hostname",
            },
            "DATABASE_PASSWORD_FILE: DATABASE_URL has a password too; give it in one place",
        ),
        (
            {"DATABASE_URL": "postgres://u@db/shop", "DATABASE_CONN_MAX_AGE": "forever"},
            "DATABASE_CONN_MAX_AGE: expected an integer, got 'forever'",
        ),
    ],
)
def test_bad_database_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    result = _settings(env)
    assert result.returncode != 0
    assert message in result.stderr.splitlines()[-1], result.stderr[-500:]


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "empty"
    secret.write_text("\n")
    result = _settings(
        {"DATABASE_URL": "postgres://u@db/shop", "DATABASE_PASSWORD_FILE": str(secret)}
    )
    assert result.returncode != 0
    assert f"DATABASE_PASSWORD_FILE: {secret} is empty" in result.stderr
