from __future__ import annotations

from django.db import models


class Note(models.Model):
    title: models.CharField[str, str] = models.CharField(max_length=200)
    archived: models.BooleanField[bool, bool] = models.BooleanField(default=False)
