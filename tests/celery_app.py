"""The Celery app the test worker runs: ``celery -A tests.celery_app worker``."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["tests.testapp"])
app.autodiscover_tasks(["tests.testapp"], related_name="drf_example")  # docs/drf.md's task
