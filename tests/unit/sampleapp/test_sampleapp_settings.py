"""The environment parsing in settings.py (pure functions, no Django request)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from sampleapp.sampleapp import settings as project_settings

BASE_DIR = project_settings.BASE_DIR


def test_the_test_run_uses_its_own_settings() -> None:
    assert settings.DEBUG is False
    assert settings.SECRET_KEY.startswith("test-only-")
    assert str(settings.DATABASES["default"]["NAME"]).startswith(
        str(Path(settings.STATIC_ROOT).parent)
    )
    assert settings.STATIC_URL == "/static/"
    assert "sampleapp.shop" in settings.INSTALLED_APPS
    assert settings.ROOT_URLCONF == "sampleapp.sampleapp.urls"


def test_default_allowed_hosts_cover_local_and_compose_names() -> None:
    assert project_settings.ALLOWED_HOSTS == [
        "localhost",
        "127.0.0.1",
        "[::1]",
        "edge",
        "appserver",
        "gunicorn",
    ]


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("sqlite:///db.sqlite3", BASE_DIR / "db.sqlite3"),
        ("sqlite:///data/db.sqlite3", BASE_DIR / "data/db.sqlite3"),
        ("sqlite:////data/db.sqlite3", Path("/data/db.sqlite3")),
        ("sqlite:////tmp/with%20space.db", Path("/tmp/with space.db")),
        ("SQLITE:////x.db", Path("/x.db")),
    ],
)
def test_sqlite_urls(url: str, name: Path) -> None:
    database = project_settings._database_from_url(url)
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == name
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_sqlite_memory(url: str) -> None:
    assert project_settings._database_from_url(url)["NAME"] == ":memory:"


def test_postgres_url_with_everything() -> None:
    database = project_settings._database_from_url(
        "postgres://shop%40app:p%3Ass%2Fword@db.example:6543/shop?sslmode=require&connect_timeout=5"
    )
    assert database == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "USER": "shop@app",
        "PASSWORD": "p:ss/word",
        "HOST": "db.example",
        "PORT": "6543",
        "OPTIONS": {"sslmode": "require", "connect_timeout": "5"},
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


@pytest.mark.parametrize(
    ("url", "host", "port", "user"),
    [
        ("postgresql://db/shop", "db", "", ""),
        ("pgsql://u@[::1]:5433/shop", "::1", "5433", "u"),
        ("postgres://u:p@/shop?host=/var/run/postgresql", "/var/run/postgresql", "", "u"),
        ("postgres://%2Fvar%2Frun%2Fpostgresql/shop", "/var/run/postgresql", "", ""),
    ],
)
def test_postgres_url_variants(url: str, host: str, port: str, user: str) -> None:
    database = project_settings._database_from_url(url)
    assert (database["HOST"], database["PORT"], database["USER"], database["NAME"]) == (
        host,
        port,
        user,
        "shop",
    )
    assert "host" not in database["OPTIONS"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:p@db/shop", "unsupported scheme 'mysql'"),
        ("sqlite://host/db.sqlite3", "has a host"),
        ("postgres://db:port/shop", "port must be a number"),
    ],
)
def test_bad_database_urls_say_what_to_write(url: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        project_settings._database_from_url(url)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("off", False),
        ("", False),
    ],
)
def test_env_bool(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv("SAMPLEAPP_TEST_FLAG", raw)
    assert project_settings._env_bool("SAMPLEAPP_TEST_FLAG", not expected) is expected


def test_env_bool_default_and_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAMPLEAPP_TEST_FLAG", raising=False)
    assert project_settings._env_bool("SAMPLEAPP_TEST_FLAG", True) is True
    monkeypatch.setenv("SAMPLEAPP_TEST_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="SAMPLEAPP_TEST_FLAG: expected one of"):
        project_settings._env_bool("SAMPLEAPP_TEST_FLAG", False)


def test_env_int_and_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPLEAPP_TEST_INT", "x")
    with pytest.raises(ImproperlyConfigured, match="SAMPLEAPP_TEST_INT: expected an integer"):
        project_settings._env_int("SAMPLEAPP_TEST_INT", 0)
    monkeypatch.setenv("SAMPLEAPP_TEST_LIST", " a, ,b ,*")
    assert project_settings._env_list("SAMPLEAPP_TEST_LIST", []) == ["a", "b", "*"]


def test_dev_secret_key_is_created_once_and_shared(tmp_path: Path) -> None:
    path = tmp_path / ".dev-secret-key"
    first = project_settings._dev_secret_key(path)
    assert first.startswith("django-insecure-")
    assert len(first) >= 50
    assert path.read_text().strip() == first
    assert project_settings._dev_secret_key(path) == first
    assert [p.name for p in tmp_path.iterdir()] == [".dev-secret-key"]  # no temporary left


def test_dev_secret_key_in_a_missing_directory(tmp_path: Path) -> None:
    # The write fails (as it would in a read-only image); the process keeps its own key.
    key = project_settings._dev_secret_key(tmp_path / "missing" / ".dev-secret-key")
    assert key.startswith("django-insecure-")
    assert not (tmp_path / "missing").exists()
