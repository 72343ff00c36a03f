"""Settings of the reference project, read from the environment.

``DATABASE_URL`` (``postgres://user@host:5432/name`` or ``sqlite:///path``),
``REDIS_URL`` and ``BROKER_URL`` switch to real servers; ``python -m example``
sets them for its children. Everything else has a working default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("EXAMPLE_DATA_DIR", BASE_DIR / ".data")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("EXAMPLE_SECRET_KEY", "example-only-not-secret-change-me")
DEBUG = os.environ.get("EXAMPLE_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]
ROOT_URLCONF = "example.project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "tasktrail",
    "example.shop",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
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
STATIC_URL = "/static/"
# Where `manage.py collectstatic` gathers files for nginx (docs/deployment.md).
STATIC_ROOT = DATA_DIR / "static"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
MEDIA_ROOT = DATA_DIR / "media"
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024


def database_from_url(url: str) -> dict[str, Any]:
    """``DATABASES['default']`` for a ``postgres://`` or ``sqlite:///`` URL."""
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "postgres",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": 60,
        }
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path if path != "/:memory:" else ":memory:",
            "OPTIONS": {
                # Web, worker and beat share one file: wait for locks instead of failing.
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    raise ValueError(f"DATABASE_URL must start with postgres:// or sqlite:///, not {url!r}")


DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}"
    )
}

# The DRF API (api/v2/) as the seeds configure it. tasktrail's run endpoints use the same
# classes, so a Token client reads its runs' status and events without a session.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
TASKTRAIL = {
    "REDIS_URL": REDIS_URL,
    "KEY_PREFIX": os.environ.get("EXAMPLE_KEY_PREFIX", "tasktrail-example"),
    "KEEPALIVE_INTERVAL": 5,  # seed 000: a heartbeat every 5 s
    "FLUSH_INTERVAL": 0.5,
    # Prometheus scrapes with this token; staff sessions read /metrics without it.
    "METRICS_TOKEN": os.environ.get("EXAMPLE_METRICS_TOKEN", "example-metrics-not-secret"),
}

CELERY_BROKER_URL = os.environ.get("BROKER_URL") or REDIS_URL
CELERY_RESULT_BACKEND = "tasktrail.backend.TasktrailBackend"  # the record is the result
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("EXAMPLE_QUEUE", "example")
CELERY_TASK_TIME_LIMIT = 30 * 60
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # long tasks: do not hoard messages

# Seeds 002 and 004: cleanup daily at 03:00, low-stock alerts every six hours.
CELERY_BEAT_SCHEDULE = {
    "cleanup-old-todos": {
        "task": "example.shop.tasks.maintenance.cleanup_old_todos",
        "schedule": crontab(hour=3, minute=0),
    },
    "send-low-stock-alerts": {
        "task": "example.shop.tasks.maintenance.send_low_stock_alert",
        "schedule": float(os.environ.get("EXAMPLE_LOW_STOCK_EVERY", 6 * 3600)),
    },
}

EMAIL_BACKEND = os.environ.get(
    "EXAMPLE_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = "noreply@shop.example"
STOCK_ALERT_RECIPIENTS = ["stock@shop.example"]

# The payment provider's shared secret (seed 002's webhook), and this site's own URL
# (the crawl scenario crawls the example site itself).
PAYMENT_WEBHOOK_SECRET = os.environ.get("EXAMPLE_WEBHOOK_SECRET", "whsec-example-not-secret")
EXAMPLE_BASE_URL = os.environ.get("EXAMPLE_BASE_URL", "http://127.0.0.1:8000")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "tasktrail": {"handlers": ["console"], "level": "WARNING"},
        "example": {"handlers": ["console"], "level": "INFO"},
    },
}
CSRF_FAILURE_VIEW = "example.shop.views.errors.csrf_failure"
