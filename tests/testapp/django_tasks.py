"""``django.tasks`` functions the Celery backend's tests run on a real worker (Django >= 6).

The signal receivers at the bottom log each signal with the process that sent it to a
Redis list, so a test sees where ``task_started``/``task_finished`` ran."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from celery import current_task
from django.tasks import TaskContext, task
from django.tasks.signals import task_enqueued, task_finished, task_started

from tasktrail import feed, progress
from tasktrail.connection import get_redis
from tasktrail.keys import prefix


@task
def add(a: int, b: int = 0) -> int:
    return a + b


@task
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@task
def signs_in(username: str, password: str) -> str:
    return username


@task
def fails(message: str) -> None:
    raise ValueError(message)


@task
def returns_a_set() -> Any:
    return {1, 2}  # not JSON: Django's contract makes it a failure (TypeError)


@task
async def async_double(value: int) -> int:
    await asyncio.sleep(0.01)
    progress(1, 2, "halfway")  # tasktrail's API works in async tasks too
    return value * 2


@task(takes_context=True)
def signs_in_with_context(context: TaskContext[..., Any], username: str, password: str) -> str:
    return f"{username} signed in"


@task(takes_context=True)
def describe_context(context: TaskContext[..., Any], marker: str) -> dict[str, Any]:
    result = context.task_result
    return {
        "id": result.id,
        "attempt": context.attempt,
        "status": str(result.status),
        "args": result.args,
        "worker_ids": result.worker_ids,
        "started": result.started_at is not None,
        "marker": marker,
    }


@task(takes_context=True)
def retried_once(context: TaskContext[..., Any], countdown: float = 0.1) -> int:
    """Asks Celery for a second attempt on its first one, then reports the attempt."""
    if context.attempt == 1:
        raise current_task.retry(countdown=countdown)
    return context.attempt


@task
def celery_priority() -> Any:
    """The priority the worker received the message with."""
    return (current_task.request.delivery_info or {}).get("priority")


@task(takes_context=True)
def waits_for_go(context: TaskContext[..., Any], steps: int = 3) -> str:
    """Reports progress, then waits (reporting) until a test sets its go key."""
    go = f"{prefix()}:django-tasks-go:{context.task_result.id}"
    progress(1, steps, "waiting for go")
    feed("started", "info")
    deadline = time.monotonic() + 60
    while not get_redis().exists(go) and time.monotonic() < deadline:
        time.sleep(0.05)
        progress(1, steps, "waiting for go")  # raises RunCancelled once cancelled
    for step in range(2, steps + 1):
        progress(step, steps, f"step {step}")
    return "done"


def signal_log_key() -> str:
    return f"{prefix()}:django-tasks-signals"


def _log(signal: str, sender: Any, task_result: Any, **_: Any) -> None:
    entry = {
        "signal": signal,
        "sender": sender.__name__,
        "id": task_result.id,
        "status": str(task_result.status),
        "pid": os.getpid(),
        "errors": [e.exception_class_path for e in task_result.errors],
        "finished": task_result.finished_at is not None,
    }
    get_redis().rpush(signal_log_key(), json.dumps(entry))


def _enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _log("enqueued", sender, task_result)


def _started(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _log("started", sender, task_result)


def _finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _log("finished", sender, task_result)


task_enqueued.connect(_enqueued, dispatch_uid="tests.django_tasks.enqueued")
task_started.connect(_started, dispatch_uid="tests.django_tasks.started")
task_finished.connect(_finished, dispatch_uid="tests.django_tasks.finished")
