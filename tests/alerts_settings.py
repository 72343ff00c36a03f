"""Settings of the alert processes tests/test_alerts_processes.py starts: the test
settings plus real SMTP and HTTP receivers, alert rules, and a queue of their own."""

from __future__ import annotations

import os

import django

from tests.settings import *  # noqa: F403
from tests.settings import KEY_PREFIX, TASKTRAIL

_SMTP = {"host": "127.0.0.1", "port": int(os.environ.get("TASKTRAIL_ALERTS_SMTP_PORT", "27402"))}
if django.VERSION >= (6, 1):  # EMAIL_* are deprecated there
    MAILERS = {
        "default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": _SMTP}
    }
else:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST, EMAIL_PORT = _SMTP["host"], _SMTP["port"]
_HTTP = f"http://127.0.0.1:{os.environ.get('TASKTRAIL_ALERTS_HTTP_PORT', '27403')}"

ALERT_QUEUE = f"{KEY_PREFIX}-alerts"
ALERT_QUEUES = [f"{ALERT_QUEUE}-{n}" for n in range(5)]
CELERY_TASK_DEFAULT_QUEUE = ALERT_QUEUE
TASKTRAIL = {
    **TASKTRAIL,
    "ALERTS": {
        "CHANNELS": {
            "mail": {"type": "email", "to": ["ops@example.com"], "from": "alerts@example.com"},
            "hook": {"type": "webhook", "url": f"{_HTTP}/hook", "secret": "alerts-test-secret"},
        },
        "RULES": {
            "boom-per-queue": {
                "kind": "failed",
                "tasks": ["tests.testapp.tasks.boom"],
                "group_by": "queue",
                "window": 86400,
                "channels": ["mail", "hook"],
            },
        },
        "INTERVAL": 0.5,
    },
}
