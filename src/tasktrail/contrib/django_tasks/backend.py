"""``CeleryBackend``: Django 6's task backend contract, on Celery, through tasktrail."""

from __future__ import annotations

import contextlib
import inspect
import uuid
from functools import lru_cache
from typing import Any

from celery import current_app
from django.apps import apps
from django.core import checks
from django.db import transaction
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import (
    DEFAULT_TASK_QUEUE_NAME,
    TASK_MAX_PRIORITY,
    TASK_MIN_PRIORITY,
    Task,
    TaskResult,
    TaskResultStatus,
)
from django.tasks.exceptions import InvalidTask
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.json import normalize_json
from kombu import Connection

from ... import ids
from ...enqueueing import enqueue as enqueue_run
from ...records import RunData
from ...runs import afind_run, find_run
from .execution import BACKEND_HEADER, PATH_HEADER, run_django_task
from .results import missing, task_at, task_result

# Celery's priorities run 0..9 on every broker that has them.
CELERY_MAX_PRIORITY = 9
OPTION_NAMES = frozenset({"CELERY_QUEUES"})


@lru_cache(maxsize=8)
def _lowest_first(broker_url: str) -> bool:
    """Redis (kombu) serves priority 0 first; AMQP brokers serve the highest first."""
    return bool(Connection(broker_url or "amqp://").transport.driver_type == "redis")


def celery_priority(priority: int) -> int:
    """Django's -100..100 (higher runs first) onto Celery's 0..9 for this broker."""
    span = TASK_MAX_PRIORITY - TASK_MIN_PRIORITY
    level = (priority - TASK_MIN_PRIORITY) * CELERY_MAX_PRIORITY // span
    if _lowest_first(str(current_app.conf.broker_url or "")):
        return CELERY_MAX_PRIORITY - level
    return level


class CeleryBackend(BaseTaskBackend):
    """Runs ``@task`` functions on Celery workers, each a tracked tasktrail run.

    ``OPTIONS["CELERY_QUEUES"]`` maps a Django queue name to a Celery queue; without an
    entry, ``"default"`` goes to Celery's default queue (or ``task_routes``) and any
    other name to the Celery queue of the same name.
    """

    supports_defer = True  # run_after is Celery's eta
    supports_async_task = True  # async functions run under asgiref's async_to_sync
    supports_get_result = True  # from the run's record, in any process
    supports_priority = True  # Celery's message priority (see celery_priority)

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.celery_queues: dict[str, str] = dict(self.options.get("CELERY_QUEUES") or {})

    def celery_queue(self, queue_name: str) -> str | None:
        """The Celery queue of a Django queue name; None for Celery's default routing."""
        if queue_name in self.celery_queues:
            return self.celery_queues[queue_name]
        return None if queue_name == DEFAULT_TASK_QUEUE_NAME else queue_name

    def queue_name_of(self, celery_queue: str) -> str:
        """The Django queue name a run's Celery queue came from."""
        for name, queue in self.celery_queues.items():
            if queue == celery_queue:
                return name
        if celery_queue in self.queues or not self.queues:
            return celery_queue or DEFAULT_TASK_QUEUE_NAME
        return DEFAULT_TASK_QUEUE_NAME

    def _celery_options(self, task: Task[..., Any]) -> dict[str, Any]:
        options: dict[str, Any] = {
            "shadow": task.module_path,
            "priority": celery_priority(task.priority),
            "headers": {BACKEND_HEADER: self.alias, PATH_HEADER: task.module_path},
        }
        queue = self.celery_queue(task.queue_name)
        if queue:
            options["queue"] = queue
        if task.run_after is not None:
            options["eta"] = task.run_after
        return options

    def enqueue[**P, R](
        self, task: Task[P, R], args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult[P, R]:
        self.validate_task(task)
        # Django's own JSON rule first (tuples become lists; other types raise TypeError).
        plain_args: list[Any] = normalize_json(list(args))  # type: ignore[assignment]
        plain_kwargs: dict[str, Any] = normalize_json(dict(kwargs))  # type: ignore[assignment]
        _check_call(task, plain_args, plain_kwargs)
        run_id = str(uuid.uuid4())
        result: TaskResult[P, R] = TaskResult(
            task=task, id=run_id, status=TaskResultStatus.READY, enqueued_at=None,
            started_at=None, finished_at=None, last_attempted_at=None, args=plain_args,
            kwargs=plain_kwargs, backend=self.alias, errors=[], worker_ids=[],
        )  # fmt: skip

        def announce() -> None:
            recorded = find_run(run_id)  # enqueued_at as the record holds it
            stamp = recorded.enqueued_at if recorded is not None else None
            object.__setattr__(result, "enqueued_at", stamp or timezone.now())
            task_enqueued.send(sender=type(self), task_result=result)

        # task_enqueued follows the publish; an eager publish runs the task, so then the
        # signal goes first, as Django sends it. In a transaction both wait for the commit.
        later = transaction.on_commit if self._in_transaction() else _now
        eager = bool(run_django_task.app.conf.task_always_eager)
        if eager:
            later(announce)
        enqueue_run(
            run_django_task,
            *plain_args,
            kwargs=plain_kwargs,
            task_id=run_id,
            **self._celery_options(task),
        )
        if not eager:
            later(announce)  # after tasktrail's own on-commit publish
        elif later is _now:  # it ran already: the result says how it ended
            result.refresh()
        return result

    @staticmethod
    def _in_transaction() -> bool:
        return bool(transaction.get_connection().in_atomic_block)

    def get_result(self, result_id: str) -> TaskResult[..., Any]:
        result_id = str(result_id)
        run = find_run(result_id) if ids.is_valid(result_id) else None
        return self._result_of(result_id, run)

    async def aget_result(self, result_id: str) -> TaskResult[..., Any]:
        result_id = str(result_id)
        run = await afind_run(result_id) if ids.is_valid(result_id) else None
        return self._result_of(result_id, run)

    def _result_of(self, result_id: str, run: RunData | None) -> TaskResult[..., Any]:
        if run is None:
            raise missing(result_id)
        try:
            task = task_at(run.task)  # a run of a plain Celery task is no django.tasks result
        except LookupError:
            raise missing(result_id) from None
        queue_name = self.queue_name_of(run.queue)
        if queue_name != task.queue_name:
            with contextlib.suppress(InvalidTask):  # QUEUES changed since: keep the declared
                task = task.using(queue_name=queue_name)
        return task_result(task, run, self.alias)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        messages: list[checks.CheckMessage] = list(super().check(**kwargs))
        where = f"TASKS[{self.alias!r}]"
        if not apps.is_installed("tasktrail"):
            messages.append(
                checks.Error(
                    f"{where} runs tasks through tasktrail, which is not installed.",
                    hint="Add 'tasktrail' to INSTALLED_APPS.",
                    id="tasktrail.E101",
                )
            )
        unknown = sorted(set(self.options) - OPTION_NAMES)
        if unknown:
            messages.append(
                checks.Error(
                    f"{where}['OPTIONS'] has unknown keys: {', '.join(unknown)}.",
                    hint=f"The backend reads only {', '.join(sorted(OPTION_NAMES))}.",
                    id="tasktrail.E102",
                )
            )
        stray = sorted(set(self.celery_queues) - self.queues) if self.queues else []
        if stray:
            messages.append(
                checks.Error(
                    f"{where}['OPTIONS']['CELERY_QUEUES'] maps queues not in QUEUES: "
                    f"{', '.join(stray)}.",
                    hint=f"Add them to {where}['QUEUES'] or remove them from CELERY_QUEUES.",
                    id="tasktrail.E103",
                )
            )
        if not current_app.conf.broker_url:
            messages.append(
                checks.Warning(
                    f"{where}: the Celery app has no broker configured, so tasks would go "
                    "to Celery's default (amqp://localhost).",
                    hint="Load your Celery app in your project's __init__.py and set "
                    "CELERY_BROKER_URL (see docs/django-tasks.md).",
                    id="tasktrail.W101",
                )
            )
        return messages


def _now(callback: Any) -> None:
    callback()


def _check_call(task: Task[..., Any], args: list[Any], kwargs: dict[str, Any]) -> None:
    """Fail at the call site, not in the worker, when the arguments do not fit."""
    leading = [None] if task.takes_context else []
    try:
        inspect.signature(task.func).bind(*leading, *args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{task.module_path}: {exc}") from None
