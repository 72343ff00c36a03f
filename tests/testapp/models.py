"""A model of the kind the seeds' viewsets serve."""

from __future__ import annotations

import uuid

from django.db import models


class Document(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    title = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.title
