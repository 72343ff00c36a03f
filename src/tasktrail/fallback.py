"""While Redis is unreachable, state changes go straight to the database.

The write is conditional like the Lua script's: a finished run never changes, and a
signal from an earlier attempt is ignored. The version only counts up from the row's
own: no host's clock orders writes, and every record Redis versions afterwards (by its
own clock, far above these counts) is newer and wins. Events are not
lost either: ``transitions`` keeps them and replays them when Redis is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from django.db import IntegrityError, router, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from .columns import partial_row
from .fingerprints import digest
from .status import FINISHED, Status

logger = logging.getLogger("tasktrail")

STATE_OPS = frozenset({"publish", "start", "retry", "finish", "cancel"})


def write(
    run_id: str,
    op: str,
    *,
    attempt: int,
    status: str,
    fields: Mapping[str, str],
    create: Mapping[str, str],
    now: float,
) -> None:
    """Record one state change in the database; never raises (it logs)."""
    from .models import TaskRun

    if op not in STATE_OPS:
        return
    values = partial_row(fields)
    if op == "publish":
        values = {k: v for k, v in values.items() if k == "next_attempt_at"}
        status = ""  # a re-publish only schedules the next attempt
    if op == "cancel":
        status = Status.CANCELLED
    if status:
        values["status"] = status
    if attempt > 0:
        values["attempts"] = Greatest(F("attempts"), Value(attempt))
    alias = router.db_for_write(TaskRun)
    try:
        if status == Status.FAILED:  # its failure group, as the flusher would write it
            task = str(partial_row(create).get("task") or "") or _task_of(run_id, alias)
            values["fingerprint"] = digest(
                task, values.get("error_type", ""), values.get("error_traceback", "")
            )
        with transaction.atomic(using=alias):
            changing = TaskRun.objects.using(alias).filter(pk=run_id).exclude(status__in=FINISHED)
            if attempt > 0 and op != "start":
                changing = changing.filter(attempts__lte=attempt)
            updated = changing.update(**values, version=F("version") + 1)
            if not updated and not TaskRun.objects.using(alias).filter(pk=run_id).exists():
                row = {**partial_row({"id": run_id, **create}), **partial_row(fields)}
                row.update(status=status or Status.READY, attempts=max(attempt, 0), version=1)
                row["fingerprint"] = values.get("fingerprint", "")
                row.setdefault(
                    "enqueued_at", partial_row({"enqueued_at": repr(now)})["enqueued_at"]
                )
                TaskRun.objects.using(alias).create(**row)
    except IntegrityError:
        pass  # created meanwhile by the flusher: it holds at least this much
    except Exception:
        logger.exception(
            "tasktrail: could not record %s of run %s in the database either", op, run_id
        )


def _task_of(run_id: str, alias: str) -> str:
    from .models import TaskRun

    found = TaskRun.objects.using(alias).filter(pk=run_id).values_list("task", flat=True)
    return next(iter(found), "")


def now() -> float:
    return time.time()


def ended_meanwhile(run_id: str, generation: int) -> bool:
    """Whether the database holds an end of this run that its hot record does not show:
    the run ended while Redis was unreachable (its state went here), and the process
    that ran it replays the transition into Redis at its next call. Until then the hot
    record still says RUNNING or READY; judging the run lost or never delivered by it
    would overwrite the true end (a chain's step that finished during a failover)."""
    from django.db import DatabaseError

    from .models import TaskRun

    try:
        return TaskRun.objects.filter(
            pk=run_id, status__in=FINISHED, generation__gte=generation
        ).exists()
    except DatabaseError:
        return False  # judged by the hot record, as before
