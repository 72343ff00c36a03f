"""Settings of a trial's processes (the script and every worker it starts): the
acceptance tier's settings (short heartbeat and ``LOST_AFTER``) plus

- ``TRIAL_DB``: the trial's own SQLite file (the script migrates it);
- ``TRIAL_BROKER``: the broker (Redis or RabbitMQ); a Redis broker is a database of
  the trials' own (kombu's ``unacked`` hash is one per database, and a control run's
  short visibility timeout restores every message in it);
- ``TRIAL_BROKER_KEYPREFIX=1``: every Redis broker key under ``<KEY_PREFIX>:broker:``
  (kombu's ``global_keyprefix``), for a trial of that layout;
- ``TRIAL_VISIBILITY_TIMEOUT``: a short Redis visibility timeout (and a sweep every
  second) for a Celery-alone control run; unset, kombu's default (an hour) applies;
- ``TRIAL_RESULT_BACKEND``: tasktrail's backend unless a control run names Celery's;
- the trial tasks (``scripts.trial_tasks``) imported by every worker.

``TASKTRAIL_TEST_PREFIX`` (the key prefix) is always set by the script.
"""

from __future__ import annotations

import os

from tests.acceptance.settings_acceptance import *  # noqa: F403
from tests.acceptance.settings_acceptance import KEY_PREFIX

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["TRIAL_DB"],
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}

CELERY_BROKER_URL = os.environ.get("TRIAL_BROKER", "redis://127.0.0.1:6379/14")
CELERY_RESULT_BACKEND = os.environ.get("TRIAL_RESULT_BACKEND", "tasktrail.backend.TasktrailBackend")
CELERY_IMPORTS = ["scripts.trial_tasks"]

if CELERY_BROKER_URL.startswith("redis"):
    _transport: dict[str, object] = {}
    if os.environ.get("TRIAL_BROKER_KEYPREFIX") == "1":
        _transport["global_keyprefix"] = f"{KEY_PREFIX}:broker:"
    if visibility := os.environ.get("TRIAL_VISIBILITY_TIMEOUT"):
        _transport |= {
            "visibility_timeout": float(visibility),
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        }
    CELERY_BROKER_TRANSPORT_OPTIONS = _transport
