from __future__ import annotations

from decimal import Decimal

from django.db import models


class Author(models.Model):
    name: models.CharField[str, str] = models.CharField(max_length=100)
    api_key: models.CharField[str, str] = models.CharField(max_length=100, blank=True, default="")


class Book(models.Model):
    title: models.CharField[str, str] = models.CharField(max_length=100)
    author: models.ForeignKey[Author, Author] = models.ForeignKey(Author, on_delete=models.CASCADE,
                                                                  related_name="books")
    price: models.DecimalField[Decimal | int, Decimal] = models.DecimalField(max_digits=8, decimal_places=2, default=0)
    published = models.DateField(null=True, blank=True)  # type: ignore[var-annotated]


class Memo(models.Model):
    """Not tracked: its changes must record nothing."""

    text: models.CharField[str, str] = models.CharField(max_length=100)
