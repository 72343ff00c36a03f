"""Operator actions on runs: cancel and retry. Each writes an audit entry.

Cancel is durable: a waiting run (``READY``/``RETRYING``) is marked ``CANCELLED`` at
once and its id goes into a cancellation set that every worker loads at start and
follows live, so it never starts, even if no worker was online when it was cancelled
(Celery's in-memory revoke alone forgets it: celery#8888). A ``RUNNING`` run is asked
to stop: its next ``progress()``/``feed()`` raises ``RunCancelled``; ``terminate=True``
also kills the process running it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from celery import current_app
from kombu.exceptions import OperationalError

from . import audit
from .exceptions import RunNotFound, TasktrailError
from .receivers import publish_context
from .runs import Run, get_run
from .status import Status
from .transitions import ANY_ATTEMPT, apply, stamp


class ActionRefused(TasktrailError):
    """The action does not apply to the run in its current status."""


# What an action raises when the broker or Redis does not answer: nothing was published,
# and the dashboard says so (never a 500).
UNREACHABLE: tuple[type[BaseException], ...] = (redis.RedisError, OperationalError, OSError)


def unreachable_message(exc: BaseException) -> str:
    return (
        f"The broker or Redis did not answer ({type(exc).__name__}: {str(exc)[:200]}); "
        "nothing was published. Try again once they are back."
    )


# How to publish a run again when its name is not a Celery task's: an integration that
# runs many functions through one Celery task (tasktrail.contrib.django_tasks) registers
# one. Each returns the new run's id, or None for a run that is not its own.
Republisher = Callable[[Run], str | None]
_republishers: list[Republisher] = []


def register_republisher(republish: Republisher) -> None:
    if republish not in _republishers:
        _republishers.append(republish)


def publish_as_retry(run: Run) -> str:
    """Publish ``run`` (its task and arguments) as a new run linked to it by ``retry_of``,
    keeping its owner, team and subject; return the new run's id."""
    context = {"retry_of": run.id}
    if run.owner_id:
        context["owner"] = run.owner_id
    if run.team:
        context["team"] = run.team
    if run.subject:
        context["subject"] = run.subject
    token = publish_context.set(context)
    try:
        return _publish_again(run)
    finally:
        publish_context.reset(token)


def _publish_again(run: Run) -> str:
    for republish in _republishers:
        new_id = republish(run)
        if new_id is not None:
            return new_id
    return str(current_app.send_task(run.task, args=run.args or [], kwargs=run.kwargs or {}).id)


def cancel(
    run_id: str, *, actor: Any = None, address: str | None = None, terminate: bool = False
) -> Run:
    """Cancel a run; return it as it is now. Raises ``ActionRefused`` if it already ended."""
    run = get_run(run_id)
    if run.is_finished:
        raise ActionRefused(f"Run {run_id} already ended ({run.status}); nothing to cancel.")
    now = time.time()
    who = audit.actor_name(actor)
    applied = apply(
        run_id,
        "cancel",
        attempt=ANY_ATTEMPT,
        status=Status.CANCELLED,
        fields={
            "finished_at": stamp(now),
            "cancel_requested_at": stamp(now),
            "cancelled_by": who,
            "error_type": "tasktrail.exceptions.RunCancelled",
            "error_message": f"Cancelled by {who}.",
            "reason": "cancelled",
            "next_attempt_at": "",
        },
        events=[
            ("state", {"kind": "state", "run": run_id, "at": now, "reason": f"cancelled by {who}"})
        ],
        now=now,
    )
    if applied is None:
        raise ActionRefused(f"Run {run_id} ended while it was being cancelled.")
    # Celery's own revoke too: online workers drop it at once, and terminate kills it.
    current_app.control.revoke(run_id, terminate=terminate, signal="SIGTERM")
    audit.record(
        "cancel", actor, address, run_id=run_id, status=run.status.value, terminate=terminate
    )
    return get_run(run_id)


def retry(run_id: str, *, actor: Any = None, address: str | None = None) -> Run:
    """Run a finished (failed or cancelled) run again with its original arguments, as a
    new run linked by ``retry_of``; return the new run."""
    run = get_run(run_id)
    if run.status not in (Status.FAILED, Status.CANCELLED):
        raise ActionRefused(
            f"Only failed or cancelled runs can be retried; {run_id} is {run.status}."
        )
    if run.arguments_incomplete:
        raise ActionRefused(
            f"Run {run_id}'s stored arguments were redacted or cut, so it cannot be replayed; "
            "enqueue it again from your code."
        )
    new_id = publish_as_retry(run)
    audit.record("retry", actor, address, run_id=run_id, new_run=new_id)
    try:
        return get_run(new_id)
    except RunNotFound:
        raise TasktrailError(
            f"Retry of {run_id} was published as {new_id} but not recorded."
        ) from None
