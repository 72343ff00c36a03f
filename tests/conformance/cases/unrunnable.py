"""Runs that can never run: a publish that failed, a purged message."""

from __future__ import annotations

from kombu.exceptions import EncodeError

from tasktrail.status import Status

from ..judge import (
    Eventually,
    Step,
    pending_or_agreeing,
)
from ..referee import ABSENT, Row, tasktrail_view
from .base import (
    Ctx,
    case,
    stale_ready_bound,
)


@case()
def failed_publish(ctx: Ctx, tag: str) -> list[Step]:
    """apply_async with an argument kombu cannot encode raises EncodeError: no READY
    record may be left beyond TASKTRAIL['UNDELIVERED_AFTER']."""
    task_id = f"unpublished-{tag}"
    try:
        ctx.send("add", object(), 1, task_id=task_id)
    except EncodeError:
        pass
    else:
        raise AssertionError("publishing an object() did not raise EncodeError")

    def probe() -> list[Row]:
        rows = pending_or_agreeing(ctx.app, task_id)
        run = tasktrail_view(task_id)
        if run is not None and run.status == Status.READY:
            rows.append(Row("status", "no record, or settled", "READY"))
        return rows

    return [Eventually(ctx, f"no READY record left [{task_id}]", probe, stale_ready_bound())]


@case()
def purged_queue(ctx: Ctx, tag: str) -> list[Step]:
    """A message purged from a queue nobody consumes: the record is settled (FAILED or
    CANCELLED) within the sweep's bound."""
    orphan = f"{ctx.queue}-orphan-{tag}"
    task_id = ctx.app.send_task(ctx.name("add"), args=(1, 1), queue=orphan).id
    with ctx.app.connection_for_write() as conn:
        purged = conn.default_channel.queue_purge(orphan)
    if purged != 1:
        raise AssertionError(f"purging {orphan} removed {purged} message(s), not 1")

    def probe() -> list[Row]:
        rows = pending_or_agreeing(ctx.app, task_id)
        run = tasktrail_view(task_id)
        status = ABSENT if run is None else run.status.value
        if status not in (Status.FAILED, Status.CANCELLED):
            rows.append(Row("status", "FAILED or CANCELLED (settled)", status))
        return rows

    return [Eventually(ctx, f"purged run settled [{task_id}]", probe, stale_ready_bound())]
