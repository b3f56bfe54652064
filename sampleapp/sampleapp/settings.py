"""Settings for the sample project, read from the environment and nowhere else.

Environment variables (all optional):

``DJANGO_DEBUG``            ``1/true/yes/on`` or ``0/false/no/off``; default off.
``DJANGO_SECRET_KEY``       Required in production.  Unset: a development key is
                            generated once into ``sampleapp/.dev-secret-key`` (so
                            every worker on this machine agrees) with a loud
                            warning on stderr.
``DJANGO_ALLOWED_HOSTS``    Comma-separated.  Default: localhost, 127.0.0.1, [::1]
                            and the compose service names edge, appserver and
                            gunicorn.  ``*`` is honoured only when set explicitly.
``DJANGO_CSRF_TRUSTED_ORIGINS``  Comma-separated origins, e.g. ``https://example.com``.
``DJANGO_HTTPS``            On: the site is served over HTTPS by a proxy that sets
                            ``X-Forwarded-Proto``.  Turns on the HTTPS redirect and
                            secure cookies.  Default off (the stack speaks HTTP).
``DJANGO_SECURE_SSL_HOST``  With ``DJANGO_HTTPS``: where the HTTPS redirect goes
                            (``host[:port]``, e.g. ``127.0.0.1:8443``); default
                            the request's own host.
``DJANGO_HSTS_SECONDS``     ``Strict-Transport-Security`` max-age; default 0 (off).
``DJANGO_HSTS_INCLUDE_SUBDOMAINS``, ``DJANGO_HSTS_PRELOAD``  Booleans; default off.
``DJANGO_LOG_LEVEL``        Root log level; default INFO.  Logs go to stderr, each line
                            with ``request_id=`` (the edge's or appserver's ID; "-"
                            outside a request).
``DJANGO_LOG_REQUESTS``     On: one INFO line per request (method, path, status, time)
                            from ``sampleapp.request``.  Default off: the servers log
                            every request already, and Django logs 4xx/5xx itself.
``DATABASE_URL``            ``sqlite:///relative/path`` (relative to this project
                            directory), ``sqlite:////absolute/path``, or
                            ``postgres://USER:PASSWORD@HOST:PORT/NAME?sslmode=...``
                            (needs the psycopg package, not installed by default).
                            Empty means unset (compose passes ``${DATABASE_URL:-}``).
``DATABASE_PASSWORD_FILE``  For a postgres URL without a password: the file whose
                            first line is the password (a Docker, Swarm or
                            Kubernetes secret), so that it is never in the URL.
``DATABASE_CONN_MAX_AGE``   Seconds a worker thread keeps its PostgreSQL connection
                            (Django's ``CONN_MAX_AGE``); default 60, 0 closes it after
                            every request.  Reused connections are checked first
                            (``CONN_HEALTH_CHECKS``), so a restarted server costs no error.
``SQLITE_PATH``             Used when ``DATABASE_URL`` is unset; default
                            ``sampleapp/db.sqlite3``.
``STATIC_ROOT``             collectstatic output; default ``sampleapp/staticfiles``.
``STATIC_URL``              Default ``/static/``.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from . import app_module

BASE_DIR = Path(__file__).resolve().parent.parent
PROJECT_PACKAGE = __package__ or "sampleapp"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}: expected one of 1/0, true/false, yes/no, on/off; got {raw!r}"
    )


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected an integer, got {raw!r}") from None


def _env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def _database_from_url(url: str) -> dict[str, Any]:
    """Parse ``DATABASE_URL`` the way dj-database-url does, for the two engines we support."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if parts.netloc:
            raise ImproperlyConfigured(
                f"DATABASE_URL: {url!r} has a host; write sqlite:///relative/path "
                "or sqlite:////absolute/path (three or four slashes)"
            )
        # sqlite:///db.sqlite3 -> "db.sqlite3"; sqlite:////data/db.sqlite3 -> "/data/db.sqlite3"
        name = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
        if not name or name == ":memory:":
            return {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
        return _sqlite(Path(name))
    if scheme in ("postgres", "postgresql", "pgsql"):
        userinfo, _, hostport = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        if hostport.startswith("["):  # [IPv6]:port
            host, _, rest = hostport[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = hostport.partition(":")
        options = dict(parse_qsl(parts.query))
        # libpq spells a Unix socket directory as ?host=/var/run/postgresql
        host = options.pop("host", "") or unquote(host)
        if port and not port.isdigit():
            raise ImproperlyConfigured(f"DATABASE_URL: port must be a number, got {port!r}")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(user),
            "PASSWORD": _database_password(unquote(password)),
            "HOST": host,
            "PORT": port,
            "OPTIONS": options,
            # Persistent connections: a worker thread reuses its connection
            # (60 s by default) and checks it before reuse, so a restarted
            # PostgreSQL costs no 500s.  Each thread of each process holds one:
            # replicas x processes x threads must stay below max_connections.
            "CONN_MAX_AGE": _env_int("DATABASE_CONN_MAX_AGE", 60),
            "CONN_HEALTH_CHECKS": True,
        }
    raise ImproperlyConfigured(
        f"DATABASE_URL: unsupported scheme {parts.scheme!r}; use sqlite:///PATH "
        "or postgres://USER:PASSWORD@HOST:PORT/NAME"
    )


def _database_password(from_url: str) -> str:
    """The URL's password, or the first line of ``DATABASE_PASSWORD_FILE`` (a secret)."""
    path = os.environ.get("DATABASE_PASSWORD_FILE", "").strip()
    if not path:
        return from_url
    if from_url:
        raise ImproperlyConfigured(
            "DATABASE_PASSWORD_FILE: DATABASE_URL has a password too; give it in one place"
        )
    try:
        with open(path, encoding="utf-8") as secret:
            password = secret.readline().rstrip("\r\n")
    except OSError as error:
        raise ImproperlyConfigured(
            f"DATABASE_PASSWORD_FILE: cannot read {path}: {error.strerror}"
        ) from None
    if not password:
        raise ImproperlyConfigured(f"DATABASE_PASSWORD_FILE: {path} is empty")
    return password


def _sqlite(path: Path) -> dict[str, Any]:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path if path.is_absolute() else BASE_DIR / path,
        "OPTIONS": {
            # Several worker processes write to one file: WAL lets readers run
            # during a write, IMMEDIATE takes the write lock at BEGIN (no
            # deadlock-upgrade "database is locked"), and timeout waits for it.
            "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
        # One connection per worker thread, kept: opening one runs the PRAGMAs above
        # and registers Django's SQL functions, which cost more than a small query
        # (about 1 ms of /api/items' 2.2 ms when measured in-process).
        "CONN_MAX_AGE": 60,
    }


def _dev_secret_key(path: Path) -> str:
    """Read, or create once, a development key shared by every worker on this machine.

    A fresh random key per process would make CSRF tokens and sessions fail
    whenever a request lands on a different worker than the one that issued
    them.  The first process to link its file into place wins the race.
    """
    try:
        key = path.read_text().strip()
        if key:
            return key
    except OSError:
        pass
    key = "django-insecure-" + secrets.token_urlsafe(50)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(key + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            key = path.read_text().strip() or key
        finally:
            temporary.unlink()
    except OSError:
        pass  # read-only install: this process keeps its own key (warned below)
    return key


DEBUG = _env_bool("DJANGO_DEBUG", False)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "").strip()
if not SECRET_KEY:
    _KEY_FILE = BASE_DIR / ".dev-secret-key"
    SECRET_KEY = _dev_secret_key(_KEY_FILE)
    sys.stderr.write(
        "\n" + "!" * 78 + "\n"
        "!! WARNING: DJANGO_SECRET_KEY is not set.  Using an INSECURE development key\n"
        f"!! from {_KEY_FILE}\n"
        "!! (or a per-process key if that file cannot be written).  Sessions and CSRF\n"
        "!! tokens will not work across hosts or containers.  Set DJANGO_SECRET_KEY.\n"
        + "!" * 78
        + "\n\n"
    )

ALLOWED_HOSTS = _env_list(
    "DJANGO_ALLOWED_HOSTS",
    ["localhost", "127.0.0.1", "[::1]", "edge", "appserver", "gunicorn"],
)
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    app_module("shop"),
]

MIDDLEWARE = [
    f"{PROJECT_PACKAGE}.middleware.RequestIdMiddleware",
    f"{PROJECT_PACKAGE}.middleware.ServedByMiddleware",
    f"{PROJECT_PACKAGE}.middleware.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = f"{PROJECT_PACKAGE}.urls"
WSGI_APPLICATION = f"{PROJECT_PACKAGE}.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if os.environ.get("DATABASE_URL", "").strip():
    _DATABASE = _database_from_url(os.environ["DATABASE_URL"].strip())
else:
    _DATABASE = _sqlite(Path(os.environ.get("SQLITE_PATH") or "db.sqlite3"))
DATABASES = {"default": _DATABASE}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Django never serves these with DEBUG off: the edge (or appserver static-map)
# serves STATIC_ROOT at STATIC_URL after `manage.py collectstatic`.
STATIC_URL = os.environ.get("STATIC_URL") or "/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "staticfiles")

# /api/echo streams the request body itself, so uploads of any size pass; this
# limit guards only request.body / request.POST in the other views.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# Behind the edge over plain HTTP by default.  With DJANGO_HTTPS=1 the TLS
# terminator in front must set X-Forwarded-Proto (and strip it from clients).
if _env_bool("DJANGO_HTTPS", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    # The plain and the TLS listeners are different ports: say which one to go to.
    SECURE_SSL_HOST = os.environ.get("DJANGO_SECURE_SSL_HOST", "").strip() or None
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = _env_int("DJANGO_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = _env_bool("DJANGO_HSTS_PRELOAD", False)

LOG_REQUESTS = _env_bool("DJANGO_LOG_REQUESTS", False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": f"{PROJECT_PACKAGE}.log.RequestIdFilter"},
    },
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)s [%(process)d] request_id=%(request_id)s "
            "%(name)s: %(message)s"
        },
    },
    "handlers": {
        "stderr": {
            "class": f"{PROJECT_PACKAGE}.log.StderrHandler",
            "formatter": "plain",
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["stderr"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {
        # Drop Django's own console/mail_admins handlers; everything reaches
        # stderr once, through the root logger.
        "django": {"handlers": [], "level": "NOTSET", "propagate": True},
    },
}
