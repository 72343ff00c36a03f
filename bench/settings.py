"""Django settings for the benchmarks, chosen by environment variables.

``BENCH_MODE``: ``tasktrail`` (tracking on, tasktrail is Celery's result backend: the
record is the result), ``tasktrail+rb`` (tracking on and Celery's own Redis result
backend kept, with no recording mixed in),
``plain`` (tasktrail not installed, Redis result backend) or ``dcr``
(django-celery-results as the result backend).
``BENCH_DB``: ``sqlite`` or ``postgres``. ``BENCH_PREFIX``: a unique prefix for every
Redis key and the queue name, so concurrent runs never collide.
"""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

MODE = os.environ.get("BENCH_MODE", "tasktrail")
DB_KIND = os.environ.get("BENCH_DB", "sqlite")
PREFIX = os.environ.get("BENCH_PREFIX", "ttbench")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")
TRACKING = MODE.startswith("tasktrail")

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "bench.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    *(["tasktrail"] if TRACKING else []),
    *(["django_celery_results"] if MODE == "dcr" else []),
    "bench",
]
# CommonMiddleware sets Content-Length on JSON responses (keep-alive for the load clients).
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

if DB_KIND == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("BENCH_PG_NAME", "tasktrail_bench"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("BENCH_SQLITE", str(RESULTS / f"{PREFIX}.sqlite3")),
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

# Redis databases 10-12 belong to the benchmarks (tests use 8 and 9).
TASKTRAIL = {
    # BENCH_TRACKING_REDIS: tasktrail's own Redis elsewhere (a private server the drain
    # benchmark restarts and weighs), the broker staying on BENCH_REDIS.
    "REDIS_URL": os.environ.get("BENCH_TRACKING_REDIS", f"{REDIS}/11"),
    "KEY_PREFIX": PREFIX,
    "KEEPALIVE_INTERVAL": 15,
}
if os.environ.get("BENCH_STREAM_TTL"):
    TASKTRAIL["STREAM_TTL"] = int(os.environ["BENCH_STREAM_TTL"])
    # Celery's result meta (kept beside the record, as its Redis backend keeps it) lives
    # for result_expires: one day unless told, the same as the stream here.
    CELERY_RESULT_EXPIRES = int(os.environ["BENCH_STREAM_TTL"])

CELERY_BROKER_URL = f"{REDIS}/10"
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": f"{PREFIX}:broker:"}
CELERY_RESULT_BACKEND = {
    "plain": f"{REDIS}/12",
    "tasktrail": "tasktrail.backend.TasktrailBackend",
    "tasktrail+rb": f"{REDIS}/12",
    "dcr": "django-db",
}.get(MODE)
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"global_keyprefix": f"{PREFIX}:result:"}
CELERY_TASK_TRACK_STARTED = os.environ.get("BENCH_TRACK_STARTED") == "1"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_DEFAULT_QUEUE = PREFIX
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"tasktrail": {"handlers": ["console"], "level": "WARNING"}},
}
