"""tasktrail's benchmark suite: one script per measurement (see docs/benchmarks.md).

As in every Celery + Django project, importing the package loads the Celery app, so
``shared_task`` tasks publish through it (and never through a default broker).
"""

from __future__ import annotations

from .celery_app import app as celery_app

__all__ = ["celery_app"]
