"""Run statuses, and the one table that maps Celery states onto them."""

from __future__ import annotations

from django.db import models


class Status(models.TextChoices):
    """Status of a run, named as in Django 6's ``django.tasks`` where they overlap."""

    READY = "READY", "Ready"
    RUNNING = "RUNNING", "Running"
    RETRYING = "RETRYING", "Retrying"
    SUCCESSFUL = "SUCCESSFUL", "Successful"
    FAILED = "FAILED", "Failed"
    CANCELLED = "CANCELLED", "Cancelled"


FINISHED: frozenset[str] = frozenset({Status.SUCCESSFUL, Status.FAILED, Status.CANCELLED})

# Celery state -> tasktrail status. Finer detail (which worker, which attempt,
# why) lives in the run's fields and events, not in more statuses.
CELERY_STATES: dict[str, Status] = {
    "PENDING": Status.READY,
    "RECEIVED": Status.READY,
    "STARTED": Status.RUNNING,
    "PROGRESS": Status.RUNNING,
    "RETRY": Status.RETRYING,
    "SUCCESS": Status.SUCCESSFUL,
    "FAILURE": Status.FAILED,
    "REVOKED": Status.CANCELLED,
    "REJECTED": Status.FAILED,
    "IGNORED": Status.SUCCESSFUL,
}


def from_celery_state(state: str) -> Status:
    """Map a Celery state name to a status; unknown custom states count as running."""
    return CELERY_STATES.get(state, Status.RUNNING)
