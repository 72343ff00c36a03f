"""Runs in this process: apply() and task_always_eager."""

from __future__ import annotations

from typing import Any

from celery import chain

from ..judge import (
    Agree,
    All,
    Step,
)
from ..referee import eager_view
from .base import (
    Ctx,
    case,
)


def _eager(ctx: Ctx, result: Any, role: str) -> Step:
    return Agree(ctx, result.id, role, view=lambda: eager_view(result))


@case()
def apply_in_process(ctx: Ctx, tag: str) -> list[Step]:
    """task.apply(): runs here, Celery's answer is the EagerResult."""
    ok = ctx.app.tasks[ctx.name("add")].apply(args=(20, 22))
    failed = ctx.app.tasks[ctx.name("fail")].apply(args=("applied failure",))
    return [All([_eager(ctx, ok, "apply() success"), _eager(ctx, failed, "apply() failure")])]


@case()
def always_eager(ctx: Ctx, tag: str) -> list[Step]:
    """task_always_eager=True in this process: apply_async runs here (a task, a
    failure, a chain)."""
    before = ctx.app.conf.task_always_eager
    ctx.app.conf.task_always_eager = True
    try:
        ok = ctx.sig("add", 3, 4).apply_async()
        failed = ctx.sig("fail", "eager failure").apply_async()
        last = chain(ctx.sig("add", 1, 1), ctx.sig("add", 10)).apply_async()
    finally:
        ctx.app.conf.task_always_eager = before
    steps = [_eager(ctx, ok, "eager success"), _eager(ctx, failed, "eager failure")]
    steps += [
        _eager(ctx, last.parent, "eager chain step 1"),
        _eager(ctx, last, "eager chain step 2"),
    ]
    return [All(steps)]
