"""The Celery app of the acceptance workers: ``celery -A tests.acceptance.celery_app``."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.acceptance.settings_acceptance")

app = Celery("acceptance", include=["tests.acceptance.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
