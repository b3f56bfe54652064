"""Settings with nothing a single text view does not need."""

from __future__ import annotations

SECRET_KEY = "bench-not-secret-" + "x" * 40  # signs nothing: no sessions, no CSRF
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "django_min.urls"
DATABASES: dict[str, dict[str, str]] = {}
TEMPLATES: list[dict[str, object]] = []
USE_I18N = False
USE_TZ = True
