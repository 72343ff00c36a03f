"""``tracked_task``: ``shared_task`` with the defaults the seeds hand-write every time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import shared_task

DEFAULTS: dict[str, Any] = {
    "bind": False,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "max_retries": 3,
    "retry_backoff": True,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "time_limit": 30 * 60,
    "soft_time_limit": 29 * 60,
}


def tracked_task(*args: Any, **options: Any) -> Any:
    """Declare a task with safe defaults: late acks, three retries with exponential
    backoff (``autoretry_for=`` to choose which errors), a 30-minute time limit.

    Every Celery task is tracked anyway; this only sets the defaults. Use it bare
    (``@tracked_task``) or with any ``shared_task`` option (``@tracked_task(bind=True)``).
    """
    merged = {**DEFAULTS, **options}
    if len(args) == 1 and callable(args[0]) and not options:
        return shared_task(**merged)(args[0])
    if args:
        raise TypeError("tracked_task takes keyword options only: @tracked_task(max_retries=5).")

    def decorate(fun: Callable[..., Any]) -> Any:
        return shared_task(**merged)(fun)

    return decorate
