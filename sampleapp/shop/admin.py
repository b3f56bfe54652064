# mypy: disallow-subclassing-any=False, disallow-untyped-decorators=False
# (Django ships no type hints and django-stubs is not a dependency.)
from __future__ import annotations

from django.contrib import admin

from .models import Item


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "price_cents", "created"]
    search_fields = ["name"]
