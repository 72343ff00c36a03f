"""The one Celery task that runs every ``django.tasks`` function on a worker.

One registered task (``tasktrail.django_task``) imports the function by its module path
and calls it, so a worker runs any ``@task`` without knowing it in advance (Celery only
accepts names registered at start, and ``django.tasks`` keeps no registry). The message
carries the function's own arguments, and Celery's ``shadow`` (its "name for logs and
monitoring") is the module path, so the run, the dashboard and Celery's own logs name
the user's function, not this trampoline.
"""

from __future__ import annotations

import functools
import inspect
import time
import traceback
from dataclasses import replace
from functools import lru_cache
from typing import Any

from celery import Task as CeleryTask
from celery import shared_task
from celery.exceptions import Retry
from django.tasks import task_backends
from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
from django.tasks.signals import task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json

from ...actions import register_republisher
from ...naming import register_function_runner
from ...records import Progress, RunData, to_datetime
from ...replay import register_signature_source
from ...runs import Run, find_run
from ...status import Status
from .results import task_at, task_result

TASK_NAME = "tasktrail.django_task"
# The alias of the backend that enqueued the run (Celery drops custom headers on a
# retry; the function's declared backend answers then).
BACKEND_HEADER = "tasktrail_django_backend"
# The function's module path, for eager runs (``task_always_eager``), which have no
# shadow; a worker reads the shadow, which Celery keeps across retries.
PATH_HEADER = "tasktrail_django_task"


def _header(request: Any, name: str) -> str:
    """A custom header: a request attribute on a worker, in ``headers`` when eager."""
    return str(getattr(request, name, None) or (request.headers or {}).get(name) or "")


def _attempt_result(
    request: Any, task: Task[..., Any], args: Any, kwargs: Any
) -> TaskResult[..., Any]:
    """The run as this attempt sees it: the record the start receiver just wrote, with
    the attempt number and worker from Celery's request (so it holds without Redis)."""
    run_id = str(request.id)
    recorded = find_run(run_id)
    now = to_datetime(str(time.time()))
    base = recorded or RunData(
        id=run_id, task=task.module_path, status=Status.RUNNING, progress=Progress(),
        started_at=now, last_attempted_at=now,
    )  # fmt: skip
    run = replace(
        base,
        status=Status.RUNNING,
        attempts=int(request.retries or 0) + 1,
        worker=str(request.hostname or ""),
        args=list(args),
        kwargs=dict(kwargs),
    )
    return task_result(task, run, task.backend)


def _finished(
    result: TaskResult[..., Any], status: TaskResultStatus, errors: list[TaskError]
) -> TaskResult[..., Any]:
    return replace(result, status=status, finished_at=timezone.now(), errors=errors)


class FunctionRunner(CeleryTask):  # type: ignore[type-arg]
    """Names each run after the function it runs, in Celery's logs and tasktrail's
    record, eager runs included (``Task.apply()`` keeps headers, not the shadow)."""

    # Celery's stubs type the hook as returning None; it returns the name or None.
    def shadow_name(  # type: ignore[override]
        self, args: Any, kwargs: Any, options: dict[str, Any]
    ) -> str | None:
        return (options.get("headers") or {}).get(PATH_HEADER) or None


@shared_task(bind=True, base=FunctionRunner, name=TASK_NAME, acks_late=True)
def run_django_task(self: Any, *args: Any, **kwargs: Any) -> Any:
    request = self.request
    path = str(request.shadow or "") or _header(request, PATH_HEADER)
    try:
        declared = task_at(path)
    except LookupError:
        raise LookupError(f"{path!r} names no django.tasks task on this worker.") from None
    alias = _header(request, BACKEND_HEADER) or declared.backend
    task = declared if declared.backend == alias else declared.using(backend=alias)
    sender = type(task_backends[alias])
    result = _attempt_result(request, task, args, kwargs)
    task_started.send(sender=sender, task_result=result)
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        value = normalize_json(value)
    except Retry:
        raise  # Celery schedules another attempt: the task has not finished
    except Exception as exc:
        kind = type(exc)
        error = TaskError(
            exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
            traceback="".join(traceback.format_exception(exc)),
        )
        failed = _finished(result, TaskResultStatus.FAILED, [*result.errors, error])
        task_finished.send(sender=sender, task_result=failed)
        raise
    succeeded = _finished(result, TaskResultStatus.SUCCESSFUL, [])
    object.__setattr__(succeeded, "_return_value", value)
    task_finished.send(sender=sender, task_result=succeeded)
    return value


def republish(run: Run) -> str | None:
    """Publish a django.tasks run again (the dashboard's and the API's retry)."""
    try:
        task_at(run.task)
    except LookupError:
        return None  # a plain Celery task's run: Celery's name is the run's
    options: dict[str, Any] = {"shadow": run.task, "headers": {PATH_HEADER: run.task}}
    if run.queue:
        options["queue"] = run.queue
    sent = run_django_task.apply_async(tuple(run.args or ()), run.kwargs or {}, **options)
    return str(sent.id)


@lru_cache(maxsize=1024)  # asked at each publish of a name Celery does not know
def function_at(path: str) -> Any:
    """The function a django.tasks run name stands for, as a run's arguments fill it: a
    ``takes_context`` task's context comes first and is never among them, so it is bound
    away (redaction matched names one place off without that). None for any other name."""
    try:
        declared = task_at(path)
    except LookupError:
        return None
    return functools.partial(declared.func, None) if declared.takes_context else declared.func


def signature_at(path: str) -> inspect.Signature | None:
    """The parameters a replay of a django.tasks run binds to."""
    function = function_at(path)
    return None if function is None else inspect.signature(function)


register_republisher(republish)
register_signature_source(signature_at)
# Runs of the trampoline are named after their function (the shadow): redaction reads
# its parameters, lost-run redelivery finds the trampoline.
register_function_runner(TASK_NAME, function_at)
