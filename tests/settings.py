"""Test settings. ``TASKTRAIL_TEST_DB=postgres`` switches the database to PostgreSQL."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.admin",
    "django.contrib.messages",
    "rest_framework",
    "rest_framework.authtoken",
    "tasktrail",
    "tests.testapp",
]
# A DRF project, as the seeds' teams run: the run endpoints authenticate through these
# (tests of the session-only path set TASKTRAIL["AUTHENTICATION_CLASSES"] = []).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework_simplejwt.authentication.JWTAuthentication",
    ],
}
SIMPLE_JWT = {"SIGNING_KEY": "tests-only-jwt-signing-key-not-secret-0123456789"}
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tasktrail.middleware.RunOwnerMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# Unique per test session, inherited by the worker and server subprocesses.
KEY_PREFIX = os.environ.setdefault("TASKTRAIL_TEST_PREFIX", f"tt-test-{uuid.uuid4().hex[:8]}")

# The worker and server subprocesses use the test database by name (TASKTRAIL_TEST_DB_NAME).
DB_KIND = os.environ.get("TASKTRAIL_TEST_DB", "sqlite")
if DB_KIND == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("TASKTRAIL_TEST_DB_NAME", "test"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "TEST": {"NAME": f"tasktrail_{KEY_PREFIX.replace('-', '_')}"},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("TASKTRAIL_TEST_DB_NAME", str(HERE / ".db.sqlite3")),
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            "TEST": {"NAME": str(HERE / f".{KEY_PREFIX}.sqlite3")},
        }
    }

REDIS_URL = os.environ.get("TASKTRAIL_TEST_REDIS", "redis://127.0.0.1:6379/9")
TASKTRAIL = {
    "REDIS_URL": REDIS_URL,
    "KEY_PREFIX": KEY_PREFIX,
    "FLUSH_INTERVAL": float(os.environ.get("TASKTRAIL_TEST_FLUSH_INTERVAL", "0.2")),
    "KEEPALIVE_INTERVAL": 1,
    # The sweep settles runs whose message the broker lost after this long (the
    # conformance tier waits for it); long enough for runs tests make by hand.
    "UNDELIVERED_AFTER": 20,
}
# Short liveness bounds for processes a test starts itself (tests/test_multihost.py);
# unset, tasktrail's defaults apply.
for _name, _variable in (
    ("HEARTBEAT_INTERVAL", "TASKTRAIL_TEST_HEARTBEAT"),
    ("LOST_AFTER", "TASKTRAIL_TEST_LOST_AFTER"),
):
    if _variable in os.environ:
        TASKTRAIL[_name] = float(os.environ[_variable])

# Django 6's django.tasks on Celery (tests/test_django_tasks.py); Django 5.2 ignores it.
TASKS = {
    "default": {
        "BACKEND": "tasktrail.contrib.django_tasks.CeleryBackend",
        "QUEUES": ["default", "reports"],
        "OPTIONS": {"CELERY_QUEUES": {"reports": f"{KEY_PREFIX}-reports"}},
    }
}

CELERY_BROKER_URL = os.environ.get("TASKTRAIL_TEST_BROKER", "redis://127.0.0.1:6379/8")
# tasktrail is the result backend; a control run may name Celery's own instead.
CELERY_RESULT_BACKEND = os.environ.get(
    "TASKTRAIL_TEST_RESULT_BACKEND", "tasktrail.backend.TasktrailBackend"
)
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_DEFAULT_QUEUE = KEY_PREFIX
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"tasktrail": {"handlers": ["console"], "level": "WARNING"}},
}
