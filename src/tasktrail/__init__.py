"""tasktrail: every Celery run tracked, live and resumable, for Django.

The root exports the small public API; everything else is imported from its module.
Nothing here imports models, so ``import tasktrail`` is safe before Django is set up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Run",
    "Status",
    "accepted",
    "aenqueue",
    "aget_run",
    "enqueue",
    "feed",
    "get_run",
    "owned_by",
    "progress",
    "tracked_task",
]

_HOMES = {
    "Run": "tasktrail.runs",
    "get_run": "tasktrail.runs",
    "aget_run": "tasktrail.runs",
    "enqueue": "tasktrail.enqueueing",
    "aenqueue": "tasktrail.enqueueing",
    "progress": "tasktrail.reporting",
    "feed": "tasktrail.reporting",
    "accepted": "tasktrail.http",
    "tracked_task": "tasktrail.decorators",
    "Status": "tasktrail.status",
    "owned_by": "tasktrail.ownership",
}

if TYPE_CHECKING:
    from .decorators import tracked_task
    from .enqueueing import aenqueue, enqueue
    from .http import accepted
    from .ownership import owned_by
    from .reporting import feed, progress
    from .runs import Run, aget_run, get_run
    from .status import Status


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'tasktrail' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(home), name)
    globals()[name] = value
    return value
