"""Seed the catalogue so a fresh database has something to list."""

# mypy: disallow-subclassing-any=False, disallow-untyped-decorators=False
# (Django ships no type hints and django-stubs is not a dependency.)

from __future__ import annotations

from typing import Any

from django.db import migrations

SEED_ITEMS = [
    ("Teapot", "Short and stout; answers 418 on request.", 1299),
    ("Keep-alive socket", "Reusable. Closes after 75 seconds of silence.", 75),
    ("uwsgi packet", "Four-byte header, little-endian, vars included.", 4096),
    ("Harakiri timer", "Stops a stuck worker; logs the URI and the elapsed time.", 6000),
    ("Static file", "Served by the edge with an ETag, never by Django.", 0),
]


def seed(apps: Any, schema_editor: Any) -> None:
    item = apps.get_model("shop", "Item")
    db = schema_editor.connection.alias
    item.objects.using(db).bulk_create(
        item(name=name, description=description, price_cents=price)
        for name, description, price in SEED_ITEMS
    )


def unseed(apps: Any, schema_editor: Any) -> None:
    item = apps.get_model("shop", "Item")
    db = schema_editor.connection.alias
    item.objects.using(db).filter(name__in=[name for name, _, _ in SEED_ITEMS]).delete()


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
