"""A run's name, and the Celery task and function behind it.

A run is named after its Celery task. An integration that runs many functions through
one Celery task (``tasktrail.contrib.django_tasks``) registers that task as a *function
runner*: its runs are named after the function, which the message carries as Celery's
``shadow``. What needs the Celery task (lost-run redelivery) or the function's
parameters (redaction) asks here, so a shadow never hides them. Other shadows are
names for Celery's logs only: the run keeps its task's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Celery task name -> the function a run name (the shadow) stands for, or None.
FunctionLookup = Callable[[str], Callable[..., Any] | None]
_runners: dict[str, FunctionLookup] = {}


def register_function_runner(task_name: str, lookup: FunctionLookup) -> None:
    _runners[task_name] = lookup


def run_name(task_name: str, shadow: Any = None) -> str:
    """The name of a run of ``task_name`` published with ``shadow``."""
    if shadow and task_name in _runners:
        return str(shadow)
    return task_name


def _runner_of(name: str) -> tuple[str, Callable[..., Any]] | None:
    for task_name, lookup in _runners.items():
        function = lookup(name)
        if function is not None:
            return task_name, function
    return None


def celery_task(name: str) -> Any | None:
    """The registered Celery task that runs a run of this name; None if there is none."""
    from celery import current_app

    task = current_app.tasks.get(name)
    if task is None and (runner := _runner_of(name)) is not None:
        task = current_app.tasks.get(runner[0])
    return task


def function(name: str) -> Callable[..., Any] | None:
    """The function whose parameters a run of this name takes."""
    from celery import current_app

    task = current_app.tasks.get(name)
    if task is not None:
        return task.run
    runner = _runner_of(name)
    return runner[1] if runner is not None else None
