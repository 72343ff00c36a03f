"""A tasktrail run seen as a ``django.tasks`` ``TaskResult``: the one status table and
the fields Django 6 defines, read from the run's record."""

from __future__ import annotations

from typing import Any

from django.tasks.base import Task, TaskError, TaskResult, TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils.module_loading import import_string

from ...records import RunData
from ...status import Status

# django.tasks has four statuses. RETRYING is Django's READY: "enqueued, or ready to be
# executed again" (the next attempt is scheduled, nothing is running). CANCELLED is
# FAILED: Django's word for a task that "was unable to start" or stopped with an
# exception; the error (RunCancelled, or Celery's TaskRevokedError) says which.
STATUSES: dict[Status, TaskResultStatus] = {
    Status.READY: TaskResultStatus.READY,
    Status.RUNNING: TaskResultStatus.RUNNING,
    Status.RETRYING: TaskResultStatus.READY,
    Status.SUCCESSFUL: TaskResultStatus.SUCCESSFUL,
    Status.FAILED: TaskResultStatus.FAILED,
    Status.CANCELLED: TaskResultStatus.FAILED,
}


def task_at(module_path: str) -> Task[..., Any]:
    """The ``@task`` object a module path names; ``LookupError`` if it names none."""
    try:
        found = import_string(module_path)
    except ImportError:
        raise LookupError(module_path) from None
    if not isinstance(found, Task):
        raise LookupError(module_path)
    return found


def errors_of(run: RunData) -> list[TaskError]:
    """The run's recorded error (tasktrail keeps the latest attempt's) as Django's."""
    if run.error is None:
        return []
    text = run.error.traceback or f"{run.error.type}: {run.error.message}\n"
    return [TaskError(exception_class_path=run.error.type, traceback=text)]


def task_result[**P, R](task: Task[P, R], run: RunData, backend: str) -> TaskResult[P, R]:
    """The run as Django's ``TaskResult`` of ``task``.

    ``worker_ids`` names the worker once per attempt (Django counts attempts as its
    length); tasktrail records the worker of the latest attempt, so every entry is it.
    """
    result: TaskResult[P, R] = TaskResult(
        task=task,
        id=run.id,
        status=STATUSES[run.status],
        enqueued_at=run.enqueued_at,
        started_at=run.started_at,
        finished_at=run.finished_at if run.is_finished else None,
        last_attempted_at=run.last_attempted_at,
        args=list(run.args or []),
        kwargs=dict(run.kwargs or {}),
        backend=backend,
        errors=errors_of(run),
        worker_ids=[run.worker] * run.attempts,
    )
    if run.status == Status.SUCCESSFUL:
        object.__setattr__(result, "_return_value", run.result)
    return result


def missing(result_id: str) -> TaskResultDoesNotExist:
    return TaskResultDoesNotExist(f"No django.tasks result with id {result_id!r}.")
