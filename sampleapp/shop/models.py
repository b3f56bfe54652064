# mypy: disallow-subclassing-any=False, disallow-untyped-decorators=False
# (Django ships no type hints and django-stubs is not a dependency.)
from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    price_cents = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return str(self.name)

    @property
    def price(self) -> Decimal:
        return Decimal(self.price_cents) / 100

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.pk,
            "name": self.name,
            "description": self.description,
            "price_cents": self.price_cents,
            "created": self.created.isoformat(),
        }
