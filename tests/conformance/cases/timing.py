"""When it runs, or not: countdown, eta, expiry, revocation, time limits."""

from __future__ import annotations

import datetime as dt

from ..judge import (
    Agree,
    AgreeOrSwept,
    Do,
    Step,
    WaitFor,
)
from .base import (
    PREFORK_ONLY,
    Ctx,
    case,
    executed,
    stale_ready_bound,
)


@case()
def countdown(ctx: Ctx, tag: str) -> list[Step]:
    """countdown=1."""
    return [Agree(ctx, ctx.send("add", 1, 2, countdown=1).id, "add countdown=1")]


@case()
def eta(ctx: Ctx, tag: str) -> list[Step]:
    """eta one second ahead."""
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    return [Agree(ctx, ctx.send("add", 2, 2, eta=when).id, "add eta=+1s")]


@case()
def expired(ctx: Ctx, tag: str) -> list[Step]:
    """expires already in the past: the worker revokes it ('expired'). On RabbitMQ
    Celery publishes it with TTL 0, and the broker drops it unless a consumer takes it
    at once: then Celery never settles it, and tasktrail's sweep must."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    task_id = ctx.send("counted_add", tag, 1, 1, expires=past).id
    return [
        AgreeOrSwept(ctx, task_id, "add expires=-60s", stale_ready_bound),
        executed(ctx, tag, 0),
    ]


@case()
def revoke_queued(ctx: Ctx, tag: str) -> list[Step]:
    """Revoked while it waits for its countdown: REVOKED ('revoked'), never runs."""
    task_id = ctx.send("counted_add", tag, 1, 1, countdown=3).id
    ctx.app.control.revoke(task_id)
    return [Agree(ctx, task_id, "revoked before it ran"), executed(ctx, tag, 0)]


@case(pools=PREFORK_ONLY, why_not="only prefork can terminate a running task")
def revoke_terminate(ctx: Ctx, tag: str) -> list[Step]:
    """revoke(terminate=True) sent to the worker running it: REVOKED ('terminated')."""
    task_id = ctx.send("sleeper", tag, 30).id
    revoke = lambda: ctx.app.control.revoke(task_id, terminate=True, destination=[ctx.hostname])  # noqa: E731
    return [
        WaitFor(f"sleeper running [{task_id}]", lambda: ctx.has_started(tag)),
        Do("revoke terminate, to its worker", revoke),
        Agree(ctx, task_id, "terminated"),
        executed(ctx, tag, 1),
    ]


@case(pools=PREFORK_ONLY, why_not="only prefork can terminate a running task")
def revoke_terminate_broadcast(ctx: Ctx, tag: str) -> list[Step]:
    """revoke(terminate=True) broadcast, as users call it: every other worker marks the
    id REVOKED ('revoked': it is PENDING to them, Celery 5.7 worker/control.py _revoke)
    while its own worker terminates it ('terminated'); the last write is Celery's answer,
    and the record must say the same."""
    task_id = ctx.send("sleeper", tag, 30).id
    return [
        WaitFor(f"sleeper running [{task_id}]", lambda: ctx.has_started(tag)),
        Do("revoke terminate, broadcast", lambda: ctx.app.control.revoke(task_id, terminate=True)),
        Agree(ctx, task_id, "terminated (broadcast)", stable=2.0),
        executed(ctx, tag, 1),
    ]


@case(pools=PREFORK_ONLY, why_not="time limits need the prefork pool")
def soft_time_limit_caught(ctx: Ctx, tag: str) -> list[Step]:
    """SoftTimeLimitExceeded caught by the task, which then returns."""
    return [Agree(ctx, ctx.send("soft_limit_caught", tag).id, "soft limit caught")]


@case(pools=PREFORK_ONLY, why_not="time limits need the prefork pool")
def soft_time_limit_uncaught(ctx: Ctx, tag: str) -> list[Step]:
    """SoftTimeLimitExceeded not caught: FAILURE."""
    return [Agree(ctx, ctx.send("soft_limit_uncaught", tag).id, "soft limit uncaught")]


@case(pools=PREFORK_ONLY, why_not="time limits need the prefork pool")
def hard_time_limit(ctx: Ctx, tag: str) -> list[Step]:
    """The hard time limit kills the child: FAILURE TimeLimitExceeded."""
    task_id = ctx.send("hard_limit", tag).id
    return [Agree(ctx, task_id, "hard limit"), executed(ctx, tag, 1)]
