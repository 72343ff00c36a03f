"""What a task tells Celery besides returning: Reject, Ignore, update_state,
track_started, ignore_result."""

from __future__ import annotations

from celery import states

from tasktrail.status import Status

from ..judge import (
    Agree,
    Diverge,
    Do,
    Step,
)
from .base import (
    Ctx,
    case,
    executed,
    ran,
)


@case()
def reject_drop(ctx: Ctx, tag: str) -> list[Step]:
    """Reject(requeue=False), acks_late. Celery 5.7 stores FAILURE (Reject) for it
    (worker/request.py, issue #4222): an agreement, not a divergence."""
    task_id = ctx.send("reject_drop", tag).id
    return [Agree(ctx, task_id, "Reject(requeue=False)"), executed(ctx, tag, 1)]


@case()
def reject_requeue(ctx: Ctx, tag: str) -> list[Step]:
    """Reject(requeue=True) twice, then success: three executions, no more."""
    task_id = ctx.send("reject_requeue", tag, 2).id
    return [Agree(ctx, task_id, "Reject(requeue=True) x2"), executed(ctx, tag, 3)]


@case()
def ignore(ctx: Ctx, tag: str) -> list[Step]:
    """raise Ignore(): Celery stores nothing (PENDING); documented: tasktrail SUCCESSFUL,
    result None."""
    task_id = ctx.send("ignore", tag).id
    return [
        Diverge(
            ctx, task_id, "raise Ignore()", until=ran(ctx, tag),
            celery_state=states.PENDING, status=Status.SUCCESSFUL, result=None,
        )
    ]  # fmt: skip


@case()
def update_state_failure_then_ignore(ctx: Ctx, tag: str) -> list[Step]:
    """update_state(FAILURE, exc meta) then raise Ignore(): Celery says FAILURE."""
    task_id = ctx.send("fail_by_hand", tag).id
    return [
        Agree(
            ctx,
            task_id,
            "update_state(FAILURE) + Ignore",
            until=lambda v: v.ready and ran(ctx, tag)(),
        )
    ]


@case()
def update_state_progress(ctx: Ctx, tag: str) -> list[Step]:
    """update_state('PROGRESS', {'current': 3, 'total': 10}) shows as progress 3/10."""
    task_id = ctx.send("report_progress", tag, 3, 10).id
    return [
        Agree(ctx, task_id, "PROGRESS 3/10", until=lambda v: v.state == "PROGRESS"),
        Do("open the gate", lambda: ctx.release(tag)),
        Agree(ctx, task_id, "finished after PROGRESS"),
    ]


@case()
def update_state_custom(ctx: Ctx, tag: str) -> list[Step]:
    """A custom state ('CRUNCHING') counts as RUNNING."""
    task_id = ctx.send("custom_state", tag).id
    return [
        Agree(ctx, task_id, "custom state CRUNCHING", until=lambda v: v.state == "CRUNCHING"),
        Do("open the gate", lambda: ctx.release(tag)),
        Agree(ctx, task_id, "finished after CRUNCHING"),
    ]


@case()
def track_started(ctx: Ctx, tag: str) -> list[Step]:
    """track_started=True: Celery says STARTED while it runs."""
    task_id = ctx.send("tracked_start", tag).id
    return [
        Agree(ctx, task_id, "STARTED", until=lambda v: v.state == states.STARTED),
        Do("open the gate", lambda: ctx.release(tag)),
        Agree(ctx, task_id, "finished after STARTED"),
    ]


@case()
def ignore_result_per_call(ctx: Ctx, tag: str) -> list[Step]:
    """apply_async(ignore_result=True): Celery stays PENDING; documented: tasktrail has
    the outcome."""
    task_id = ctx.send("counted_add", tag, 20, 22, ignore_result=True).id
    return [
        Diverge(
            ctx, task_id, "apply_async(ignore_result=True)", until=ran(ctx, tag),
            celery_state=states.PENDING, status=Status.SUCCESSFUL, result=42,
        )
    ]  # fmt: skip


@case()
def ignore_result(ctx: Ctx, tag: str) -> list[Step]:
    """ignore_result=True: Celery stays PENDING; documented: tasktrail has the outcome."""
    task_id = ctx.send("ignored_result", tag).id
    return [
        Diverge(
            ctx, task_id, "ignore_result=True", until=ran(ctx, tag),
            celery_state=states.PENDING, status=Status.SUCCESSFUL, result=42,
        )
    ]  # fmt: skip
