"""A ``django.tasks`` backend on Celery (Django >= 6.0).

``TASKS = {"default": {"BACKEND": "tasktrail.contrib.django_tasks.CeleryBackend"}}``
runs ``@task`` functions on Celery workers as tracked runs: the ``TaskResult`` id is the
Celery task id and the tasktrail run id. See docs/django-tasks.md.
"""

from __future__ import annotations

import django

if django.VERSION < (6, 0):
    raise ImportError(
        "tasktrail.contrib.django_tasks needs Django >= 6.0 (it is a django.tasks backend); "
        f"this is Django {django.get_version()}. Upgrade with `pip install 'django>=6.0'`."
    )

from .backend import CeleryBackend

__all__ = ["CeleryBackend"]
