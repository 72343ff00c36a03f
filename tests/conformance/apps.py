"""Celery apps of the conformance tier, configured from the Django settings.

Workers run ``tests.conformance.celery_app`` (one per variant, told its queue, broker
and result backend through the environment); the test process builds one app per
variant with :func:`make_app` and never makes it the current app, so the rest of the
suite keeps ``tests.celery_app``.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

import tests.conformance.tasks  # noqa: F401  (shared tasks: registered on every app)

# Runs the stock backend of Celery (the control run) when set, in workers and tests.
BACKEND_ENV = "TASKTRAIL_TEST_RESULT_BACKEND"
QUEUE_ENV = "TASKTRAIL_CONFORMANCE_QUEUE"


def make_app(
    name: str = "conformance",
    *,
    queue: str | None = None,
    broker: str | None = None,
    backend: str | None = None,
    set_as_current: bool = False,
) -> Celery:
    """An app configured like the test worker's; ``queue`` becomes its default queue, so
    everything it (or a worker running it) publishes without a queue goes there:
    chain steps, chord bodies, replacements."""
    from django.conf import settings

    app = Celery(name, set_as_current=set_as_current)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    changes: dict[str, Any] = {}
    backend = backend or os.environ.get(BACKEND_ENV)
    if backend:
        changes["result_backend"] = backend
        if backend.startswith("redis://"):
            # Celery's stock keys carry the session prefix, so the session clean-up
            # (tests/conftest.py) removes them.
            changes["result_backend_transport_options"] = {
                "global_keyprefix": f"{settings.TASKTRAIL['KEY_PREFIX']}-celery:"
            }
    if broker:
        changes["broker_url"] = broker
    if queue:
        changes["task_default_queue"] = queue
    app.conf.update(changes)
    return app
