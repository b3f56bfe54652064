# mypy: disallow-subclassing-any=False
# (Django ships no type hints and django-stubs is not a dependency.)
from __future__ import annotations

from django.apps import AppConfig


class ShopConfig(AppConfig):
    # "shop" or "sampleapp.shop", depending on the import root; the label (and
    # so the table names and migrations) is "shop" either way.
    name = __name__.rpartition(".")[0]
    label = "shop"
    verbose_name = "Shop"
