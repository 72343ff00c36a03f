"""Tasks the tests run in a real worker."""

from __future__ import annotations

import time
from typing import Any

import redis
from celery import shared_task
from django.conf import settings

from tasktrail import feed, progress, tracked_task


def _redis() -> redis.Redis:
    from tasktrail.connection import get_redis

    return get_redis()  # a single Redis, Sentinel or a cluster alike


@shared_task
def add(x: int, y: int) -> int:
    return x + y


@shared_task
def echo(value: Any) -> Any:
    return value


@shared_task(bind=True, max_retries=3)
def flaky(self: Any, key: str, failures: int) -> str:
    """Fails ``failures`` times (counted in Redis across attempts), then succeeds."""
    count = _redis().incr(f"{settings.TASKTRAIL['KEY_PREFIX']}:flaky:{key}")
    if int(count) <= failures:
        raise self.retry(exc=ConnectionError(f"transient failure {count}"), countdown=0.3)
    return f"succeeded after {count} attempts"


@tracked_task(
    autoretry_for=(ValueError,), max_retries=2, retry_backoff=False, default_retry_delay=0.1
)
def always_fails(reason: str) -> None:
    raise ValueError(reason)


@shared_task
def numbered_feed(count: int, delay: float = 0.0) -> int:
    for number in range(1, count + 1):
        feed(f"line {number}")
        progress(number, count)
        if delay:
            time.sleep(delay)
    return count


@shared_task
def hot_loop(count: int) -> float:
    """``count`` progress() calls; returns the seconds they took inside the task."""
    started = time.perf_counter()
    for i in range(count):
        progress(i + 1, count)
    return time.perf_counter() - started


@shared_task
def sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@shared_task
def staged(name: str) -> str:
    for percent, message in ((25, "parsing"), (50, "analysing"), (75, "indexing"), (100, "done")):
        progress(percent, 100, message)
        feed(message, "success" if percent == 100 else "info")
    return name


@shared_task
def sign_in(username: str, password: str, options: dict[str, Any] | None = None) -> str:
    feed(f"signing in {username} with password={password}")
    if username == "nobody":
        raise PermissionError("unknown user")
    return username


@shared_task
def boom(message: str) -> None:
    raise ValueError(message)


@shared_task(bind=True)
def fan_out(self: Any, count: int) -> Any:
    """Replaces itself with a group: its result is the group's, under its own id."""
    from celery import group

    return self.replace(group(add.s(i, i) for i in range(count)))


@shared_task
def reject_order(order: str) -> None:
    """Fails from one line whatever the order (tests/test_failure_groups*.py)."""
    raise ValueError(f"order {order} is invalid")


@shared_task
def tally(values: list[Any]) -> int:
    """A chord callback: how many header results arrived."""
    return len(values)
