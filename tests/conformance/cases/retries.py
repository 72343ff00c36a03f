"""Every retry flavour."""

from __future__ import annotations

from celery import states

from ..judge import (
    Agree,
    Step,
)
from .base import (
    Ctx,
    attempts,
    case,
    executed,
)


@case()
def retry_countdown(ctx: Ctx, tag: str) -> list[Step]:
    """self.retry(countdown=RETRY_DELAY) once, then success."""
    task_id = ctx.send("retry_once", tag).id
    return [Agree(ctx, task_id, "retried once"), executed(ctx, tag, 2), attempts(ctx, task_id, 2)]


@case()
def retry_state(ctx: Ctx, tag: str) -> list[Step]:
    """While Celery says RETRY (countdown=8: wide enough on a loaded machine), the
    record says RETRYING with the error."""
    task_id = ctx.send("retry_slowly", tag).id
    return [
        Agree(ctx, task_id, "RETRY", until=lambda v: v.state == states.RETRY, transient=True),
        Agree(ctx, task_id, "after the retry"),
        executed(ctx, tag, 2),
    ]


@case()
def retry_exhausted(ctx: Ctx, tag: str) -> list[Step]:
    """self.retry(exc=ValueError) past max_retries=2: FAILURE ValueError."""
    task_id = ctx.send("retry_always", tag).id
    return [
        Agree(ctx, task_id, "retries exhausted"),
        executed(ctx, tag, 3),
        attempts(ctx, task_id, 3),
    ]


@case()
def retry_exhausted_without_exc(ctx: Ctx, tag: str) -> list[Step]:
    """self.retry() without exc past max_retries: FAILURE MaxRetriesExceededError."""
    task_id = ctx.send("retry_without_exc", tag).id
    return [
        Agree(ctx, task_id, "retries exhausted"),
        executed(ctx, tag, 2),
        attempts(ctx, task_id, 2),
    ]


@case()
def autoretry_for(ctx: Ctx, tag: str) -> list[Step]:
    """autoretry_for=(KeyError,), max_retries=2: FAILURE KeyError after 3 runs."""
    task_id = ctx.send("autoretry", tag).id
    return [Agree(ctx, task_id, "autoretry"), executed(ctx, tag, 3), attempts(ctx, task_id, 3)]


@case()
def retry_backoff(ctx: Ctx, tag: str) -> list[Step]:
    """retry_backoff (1 s, 2 s), success on the third run."""
    task_id = ctx.send("backoff", tag).id
    return [Agree(ctx, task_id, "backoff"), executed(ctx, tag, 3), attempts(ctx, task_id, 3)]


@case()
def retry_new_exc(ctx: Ctx, tag: str) -> list[Step]:
    """self.retry(exc=OrderError) from an except ValueError: FAILURE OrderError."""
    task_id = ctx.send("retry_new_exc", tag).id
    return [Agree(ctx, task_id, "retry with a new exc"), executed(ctx, tag, 2)]
