"""Every exception tasktrail raises derives from :class:`TasktrailError`."""

from __future__ import annotations


class TasktrailError(Exception):
    """Base class of tasktrail's exceptions."""


class RunNotFound(TasktrailError, LookupError):
    """No run with this id exists, or the caller may not see it."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"No run with id {run_id!r}.")
        self.run_id = run_id


class NotTracked(TasktrailError):
    """The task is excluded from tracking (``TASKTRAIL['EXCLUDE_TASKS']``)."""


class RunCancelled(TasktrailError):
    """Raised inside a task by ``progress()``/``feed()`` once its run was cancelled.

    Catch it to clean up; let it propagate and the run ends ``CANCELLED``.
    """


class WorkerLost(TasktrailError):
    """Recorded as the error of a run whose worker stopped while running it."""


class NeverDelivered(TasktrailError):
    """Recorded as the error of a run whose message the broker no longer holds."""
