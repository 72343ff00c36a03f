"""The example's Celery tasks, one module per scenario (autodiscovered by Celery)."""

from __future__ import annotations

from . import batch, crawl, documents, imports, maintenance, payments, reminders, reports

__all__ = [
    "batch",
    "crawl",
    "documents",
    "imports",
    "maintenance",
    "payments",
    "reminders",
    "reports",
]
