"""Entry points for child processes started with ``spawn`` (no Django at import time)."""

from __future__ import annotations

import os
from typing import Any


def enqueue_with_key(key: str, queue: str, database: str, barrier: Any, results: Any) -> None:
    import django

    os.environ["TASKTRAIL_TEST_DB_NAME"] = database  # the test database, not the default
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    import tests.celery_app  # noqa: F401
    from tasktrail import enqueue
    from tests.testapp.tasks import add

    barrier.wait(180)
    results.put(enqueue(add, 1, 2, idempotency_key=key, queue=queue).id)
