"""Plain outcomes: values, exceptions of every shape, results JSON cannot hold."""

from __future__ import annotations

from celery import states

from tasktrail.status import Status

from ..judge import (
    Agree,
    Eventually,
    Step,
    WaitFor,
)
from ..referee import ABSENT, Row, celery_view, tasktrail_view
from .base import (
    PREFORK_ONLY,
    Ctx,
    case,
    executed,
)


@case()
def success(ctx: Ctx, tag: str) -> list[Step]:
    """A task returns a value."""
    return [Agree(ctx, ctx.send("add", 2, 3).id, "add(2, 3)")]


@case()
def exception(ctx: Ctx, tag: str) -> list[Step]:
    """A task raises ValueError."""
    return [Agree(ctx, ctx.send("fail", "plain failure").id, "fail()")]


@case()
def custom_exception(ctx: Ctx, tag: str) -> list[Step]:
    """A custom exception class with two positional args."""
    return [Agree(ctx, ctx.send("raise_custom", "order-7", "out of stock").id, "OrderError")]


@case()
def unencodable_exception_args(ctx: Ctx, tag: str) -> list[Step]:
    """An exception whose argument no serializer can encode (a lock): Celery stores it
    as celery.utils.serialization.UnpickleableExceptionWrapper."""
    return [Agree(ctx, ctx.send("raise_locked").id, "LockedError(Lock())")]


@case()
def unrebuildable_exception(ctx: Ctx, tag: str) -> list[Step]:
    """An exception that cannot be rebuilt from its args (keyword-only constructor):
    Celery stores it as UnpickleableExceptionWrapper too."""
    return [Agree(ctx, ctx.send("raise_keyword_only", 7).id, "KeywordOnlyError")]


@case()
def unprintable_exception(ctx: Ctx, tag: str) -> list[Step]:
    """An exception whose str() raises."""
    return [Agree(ctx, ctx.send("raise_unprintable").id, "UnprintableError")]


@case(
    pools=PREFORK_ONLY,
    why_not="on the threads pool Celery never settles it: nothing is stored or logged, the "
    "request stays active and AsyncResult PENDING for ever (apply_target's callback fails on "
    "the WorkerLostError it is given), so there is no answer to agree with",
)
def base_exception(ctx: Ctx, tag: str) -> list[Step]:
    """A BaseException that is not an Exception: on prefork Celery stores FAILURE with it."""
    task_id = ctx.send("raise_base_exception", tag).id
    return [Agree(ctx, task_id, "raise Abort()"), executed(ctx, tag, 1)]


@case()
def kombu_types_result(ctx: Ctx, tag: str) -> list[Step]:
    """A result of kombu's JSON types: datetime, date, Decimal, UUID, tuple."""
    return [Agree(ctx, ctx.send("return_kombu_types").id, "datetime/date/Decimal/UUID")]


@case()
def set_result(ctx: Ctx, tag: str) -> list[Step]:
    """A set: kombu cannot encode it, Celery stores FAILURE (EncodeError)."""
    return [Agree(ctx, ctx.send("return_set").id, "return {3, 1, 2}")]


@case()
def opaque_object_result(ctx: Ctx, tag: str) -> list[Step]:
    """A custom object without __json__: FAILURE (EncodeError)."""
    return [Agree(ctx, ctx.send("return_opaque").id, "return Opaque()")]


@case()
def reducible_object_result(ctx: Ctx, tag: str) -> list[Step]:
    """A custom object with __json__: stored as what it reduces to."""
    return [Agree(ctx, ctx.send("return_reducible").id, "return Reducible()")]


@case()
def large_result(ctx: Ctx, tag: str) -> list[Step]:
    """A 300 kB result, above TASKTRAIL['MAX_RESULT_BYTES']: Celery's AsyncResult still
    returns all of it (tasktrail never changes what Celery reports); documented: the
    record may hold a truncation marker instead."""
    size = 300_000
    task_id = ctx.send("large", size).id

    def probe() -> list[Row]:
        view = celery_view(ctx.app, task_id)
        rows = []
        if view.state != states.SUCCESS or len(view.result or "") != size:
            got = f"{view.state}, {len(view.result or '')} chars"
            rows.append(Row("AsyncResult", f"SUCCESS, {size} chars", got))
        run = tasktrail_view(task_id)
        if run is None or run.status != Status.SUCCESSFUL:
            rows.append(Row("status", "SUCCESSFUL", ABSENT if run is None else run.status.value))
        elif run.result != view.result and not (
            isinstance(run.result, dict) and run.result.get("truncated") is True
        ):
            rows.append(Row("result", "the result, or a truncation marker", repr(run.result)[:80]))
        return rows

    return [
        WaitFor(
            f"Celery has the large result [{task_id}]", lambda: celery_view(ctx.app, task_id).ready
        ),
        Eventually(ctx, f"large result [{task_id}]", probe, 10.0),
    ]
