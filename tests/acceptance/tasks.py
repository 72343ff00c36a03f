"""Tasks the acceptance tier kills, cancels and counts.

Every execution of a task body does ``INCR <prefix>:acc:exec:<key>`` first, so a test
can tell how many times a run's body actually ran, whatever the records say.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import shared_task
from django.conf import settings


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.TASKTRAIL["REDIS_URL"])


def executions_key(key: str) -> str:
    return f"{settings.TASKTRAIL['KEY_PREFIX']}:acc:exec:{key}"


def pids_key() -> str:
    return f"{settings.TASKTRAIL['KEY_PREFIX']}:acc:pids"


def _execute(key: str, hold: float) -> int:
    """Count this execution, say which process runs it, and hold the first one."""
    client = _redis()
    count = int(client.incr(executions_key(key)))
    client.hset(pids_key(), key, os.getpid())
    if count == 1:
        time.sleep(hold)  # the first execution is the one the tests kill
    return count


@shared_task(name="acceptance.rerunnable", acks_late=True, reject_on_worker_lost=True)
def rerunnable(key: str, hold: float) -> int:
    """Safe to run again: acknowledged only when done, re-queued if its worker dies."""
    return _execute(key, hold)


@shared_task(name="acceptance.once")
def once(key: str, hold: float) -> int:
    """Not safe to run again (acknowledged on receipt): a lost run must fail, not repeat."""
    return _execute(key, hold)


@shared_task(name="unrouted.rerunnable", acks_late=True, reject_on_worker_lost=True)
def unrouted_rerunnable(key: str, hold: float) -> int:
    """Like :func:`rerunnable`, but no ``CELERY_TASK_ROUTES`` entry names its queue."""
    return _execute(key, hold)


@shared_task(name="acceptance.hook")
def hook(payload: Any) -> None:
    """The webhook view's task (the fuzz run publishes it; no worker consumes it)."""
