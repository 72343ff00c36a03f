"""Django settings of ``scripts/celery_integration.py``: its tasktrail pass and its audit.

Everything that differs between runs comes from the environment the script sets: a
SQLite file in the run's temporary directory, the Redis URL of Celery's results (the
same database holds tasktrail's records) and a key prefix of the run's own.
"""

from __future__ import annotations

import os

SECRET_KEY = "celery-integration-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "tasktrail",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["CELERY_INTEGRATION_DB"],
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}

TASKTRAIL = {
    "REDIS_URL": os.environ["CELERY_INTEGRATION_REDIS_URL"],
    "KEY_PREFIX": os.environ["CELERY_INTEGRATION_PREFIX"],
}
