"""One route: /hello."""

from __future__ import annotations

from django.urls import path

from .views import hello

urlpatterns = [path("hello", hello)]
