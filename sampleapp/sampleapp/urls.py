"""Root URLconf: the shop app at the site root, the admin under /admin/.

``/healthz`` is answered by ``HealthCheckMiddleware`` before URL resolution.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from . import app_module

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include(app_module("shop.urls"))),
]
