from __future__ import annotations

from django.urls import path

from . import views

app_name = "shop"

urlpatterns = [
    path("", views.index, name="index"),
    path("template", views.template_page, name="template"),
    path("hello", views.hello, name="hello"),
    path("api/items", views.items, name="items"),
    path("api/items/<int:pk>", views.item, name="item"),
    path("api/echo", views.echo, name="echo"),
    path("slow", views.slow, name="slow"),
    path("boom", views.boom, name="boom"),
    path("stream", views.stream, name="stream"),
]
