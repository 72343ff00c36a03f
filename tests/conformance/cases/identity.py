"""Names, ids and options: unregistered names, priorities, odd and reused ids."""

from __future__ import annotations

from celery import states

from ..judge import (
    Agree,
    All,
    Do,
    Step,
)
from .base import (
    Ctx,
    case,
    executed,
)


@case()
def unregistered(ctx: Ctx, tag: str) -> list[Step]:
    """send_task of a name no worker knows: FAILURE NotRegistered."""
    result = ctx.app.send_task(ctx.name("no_such_task"), args=(1,))
    return [Agree(ctx, result.id, "no_such_task")]


@case()
def priorities(ctx: Ctx, tag: str) -> list[Step]:
    """priority=0, 3, 6, 9."""
    results = [ctx.send("add", p, p, priority=p) for p in (0, 3, 6, 9)]
    return [
        All(Agree(ctx, r.id, f"priority {p}") for p, r in zip((0, 3, 6, 9), results, strict=True))
    ]


@case()
def non_uuid_id(ctx: Ctx, tag: str) -> list[Step]:
    """task_id='order-1-...'."""
    return [Agree(ctx, ctx.send("add", 1, 1, task_id=f"order-1-{tag}").id, "order-1")]


@case()
def odd_id(ctx: Ctx, tag: str) -> list[Step]:
    """A task id with a slash, spaces, '?', '#', '%' and non-ASCII letters."""
    task_id = f"ordre/1 ü ? #frag %20 {tag}"
    return [Agree(ctx, ctx.send("add", 1, 1, task_id=task_id).id, "odd id")]


@case()
def reused_id(ctx: Ctx, tag: str) -> list[Step]:
    """The same id published again after it finished: a new generation."""
    task_id = f"reused-{tag}"
    ctx.send("counted_add", tag, 1, 1, task_id=task_id)
    return [
        Agree(ctx, task_id, "generation 1 (2)"),
        Do("publish generation 2", lambda: ctx.send("counted_add", tag, 2, 2, task_id=task_id)),
        Agree(ctx, task_id, "generation 2 (4)", until=lambda v: v.ready and v.result == 4),
        executed(ctx, tag, 2),
    ]


@case()
def reused_id_after_failure(ctx: Ctx, tag: str) -> list[Step]:
    """An id that failed, published again, succeeds: no stale error on the record."""
    task_id = f"reused-failed-{tag}"
    ctx.send("counted_fail", tag, task_id=task_id)
    return [
        Agree(ctx, task_id, "generation 1 (fails)"),
        Do("publish generation 2", lambda: ctx.send("counted_add", tag, 2, 2, task_id=task_id)),
        Agree(ctx, task_id, "generation 2 (succeeds)", until=lambda v: v.state == states.SUCCESS),
        executed(ctx, tag, 2),
    ]
