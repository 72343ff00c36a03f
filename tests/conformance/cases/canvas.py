"""Canvas: groups, chords, chains, callbacks, chunks, starmap, replace."""

from __future__ import annotations

import uuid

from celery import chain, chord, group
from celery.canvas import chunks, xstarmap

from ..judge import (
    Agree,
    All,
    Step,
)
from .base import (
    Ctx,
    case,
    chain_ids,
)


@case()
def group_of_100(ctx: Ctx, tag: str) -> list[Step]:
    """A group of 100 tasks: every child id."""
    result = group(ctx.sig("add", i, i) for i in range(100)).apply_async()
    return [All(Agree(ctx, r.id, f"group child {i}") for i, r in enumerate(result.results))]


@case("chord")
def chord_(ctx: Ctx, tag: str) -> list[Step]:
    """A chord of 5 adds into tsum: header ids and body id."""
    result = chord([ctx.sig("add", i, i) for i in range(5)], ctx.sig("tsum")).apply_async()
    header = [Agree(ctx, r.id, f"header {i}") for i, r in enumerate(result.parent.results)]
    return [All([*header, Agree(ctx, result.id, "chord body")])]


@case()
def chord_failing_header(ctx: Ctx, tag: str) -> list[Step]:
    """A chord whose header fails: the body never runs, Celery marks it FAILURE
    (ChordError)."""
    header = [ctx.sig("add", 1, 1), ctx.sig("fail", "header boom"), ctx.sig("add", 2, 2)]
    result = chord(header, ctx.sig("tsum")).apply_async()
    steps = [Agree(ctx, r.id, f"header {i}") for i, r in enumerate(result.parent.results)]
    return [All([*steps, Agree(ctx, result.id, "chord body (never runs)")])]


@case("chain")
def chain_(ctx: Ctx, tag: str) -> list[Step]:
    """A chain of three: every step."""
    result = chain(ctx.sig("add", 1, 1), ctx.sig("add", 10), ctx.sig("add", 100)).apply_async()
    return [All(Agree(ctx, i, f"step {n}") for n, i in enumerate(chain_ids(result), 1))]


@case()
def chain_failing_middle(ctx: Ctx, tag: str) -> list[Step]:
    """Step 2 of 4 fails: Celery marks steps 3 and 4 FAILURE without running them."""
    result = chain(
        ctx.sig("add", 1, 1), ctx.sig("fail"), ctx.sig("add", 3), ctx.sig("add", 4)
    ).apply_async()
    ids = chain_ids(result)
    roles = ["step 1", "step 2 (fails)", "step 3 (never runs)", "step 4 (never runs)"]
    return [All(Agree(ctx, i, role) for i, role in zip(ids, roles, strict=True))]


@case()
def link_callback(ctx: Ctx, tag: str) -> list[Step]:
    """A link= callback: the task and its callback."""
    callback_id = f"callback-{uuid.uuid4()}"
    result = ctx.sig("add", 1, 1, link=ctx.sig("add", 100, task_id=callback_id)).apply_async()
    return [All([Agree(ctx, result.id, "linked task"), Agree(ctx, callback_id, "callback")])]


@case()
def link_error(ctx: Ctx, tag: str) -> list[Step]:
    """A failing task with an old-style link_error errback, sent as a task of its own."""
    errback_id = f"errback-{uuid.uuid4()}"
    errback = ctx.sig("handle_error", task_id=errback_id)
    result = ctx.sig("fail", "linked failure", link_error=errback).apply_async()
    return [All([Agree(ctx, result.id, "failing task"), Agree(ctx, errback_id, "errback")])]


@case()
def chain_with_group(ctx: Ctx, tag: str) -> list[Step]:
    """add | group(add, add) | tsum: Celery upgrades the group and tsum to a chord."""
    result = chain(
        ctx.sig("add", 1, 1), group(ctx.sig("add", 10), ctx.sig("add", 20)), ctx.sig("tsum")
    ).apply_async()
    header = result.parent
    steps = [Agree(ctx, r.id, f"group member {i}") for i, r in enumerate(header.results)]
    steps += [
        Agree(ctx, header.parent.id, "first step"),
        Agree(ctx, result.id, "tsum (chord body)"),
    ]
    return [All(steps)]


@case("chunks")
def chunks_(ctx: Ctx, tag: str) -> list[Step]:
    """add.chunks(20 pairs, 5): every celery.starmap chunk id."""
    result = chunks(
        ctx.sig("add"),  # type: ignore[arg-type]
        [(i, i) for i in range(20)],
        5,
        app=ctx.app,
    ).apply_async()
    return [All(Agree(ctx, r.id, f"chunk {i}") for i, r in enumerate(result.results))]


@case()
def starmap(ctx: Ctx, tag: str) -> list[Step]:
    """add.starmap(5 pairs): the celery.starmap id."""
    result = xstarmap(ctx.sig("add"), [(i, i) for i in range(5)], app=ctx.app).apply_async()
    return [Agree(ctx, result.id, "starmap")]


@case()
def replace_with_task(ctx: Ctx, tag: str) -> list[Step]:
    """self.replace(add.s(5, 5)): the replaced id holds the replacement's result."""
    return [Agree(ctx, ctx.send("replace_with_task", 5).id, "replaced by a task")]


@case()
def replace_with_chain(ctx: Ctx, tag: str) -> list[Step]:
    """self.replace(add(1, 1) | add(10)): the replaced id is the chain's last step."""
    first_id = str(uuid.uuid4())
    task_id = ctx.send("replace_with_chain", first_id).id
    return [All([Agree(ctx, first_id, "replacement step 1"), Agree(ctx, task_id, "replaced id")])]


@case()
def replace_with_group(ctx: Ctx, tag: str) -> list[Step]:
    """self.replace(group(...)): uplifted to a chord whose body takes the replaced id."""
    child_ids = [str(uuid.uuid4()) for _ in range(3)]
    task_id = ctx.send("replace_with_group", child_ids).id
    children = [Agree(ctx, c, f"replacement child {i}") for i, c in enumerate(child_ids)]
    return [All([*children, Agree(ctx, task_id, "replaced id")])]
