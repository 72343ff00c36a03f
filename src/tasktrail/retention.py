"""Retention: delete finished runs older than their task's retention, in batches.

``TASKTRAIL["RETENTION"] = {"default": 30, "reports.build": 90, "pings.ping": 1}``
(days; ``None`` keeps forever). Each batch selects at most ``batch_size`` primary
keys through the ``(status, enqueued_at)`` or ``(task, enqueued_at)`` index and
deletes exactly those, so memory and lock time stay flat however many rows match.

A run qualifies when it finished (``SUCCESSFUL``, ``FAILED``, ``CANCELLED``) more
than its retention ago; since it was enqueued before it finished, the same bound
on ``enqueued_at`` lets the index do the work.

The periodic task ``tasktrail.prune`` is added to every celery beat automatically
(see :func:`install_beat_entry`), every ``PRUNE_INTERVAL`` seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery import shared_task
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from .conf import settings
from .status import FINISHED

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from .models import TaskRun

logger = logging.getLogger("tasktrail")

PRUNE_TASK = "tasktrail.prune"
BATCH_SIZE = 1000


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Days to keep finished runs: ``default`` for every task not named in ``per_task``."""

    default: float | None
    per_task: dict[str, float | None] = field(default_factory=dict)

    @classmethod
    def from_settings(cls) -> Policy:
        raw = dict(settings.RETENTION or {})
        for name, days in raw.items():
            if days is not None and (isinstance(days, bool) or not isinstance(days, int | float)):
                raise ImproperlyConfigured(
                    f"TASKTRAIL['RETENTION'][{name!r}] must be a number of days or None; "
                    f"got {days!r}."
                )
        default = raw.pop("default", None)
        return cls(default=default, per_task=raw)


@dataclass(kw_only=True)
class PruneReport:
    deleted: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def _finished_before(rows: QuerySet[TaskRun], cutoff: datetime) -> QuerySet[TaskRun]:
    return rows.filter(status__in=sorted(FINISHED), enqueued_at__lt=cutoff, finished_at__lt=cutoff)


def _targets(policy: Policy, now: datetime) -> list[tuple[str, QuerySet[TaskRun]]]:
    from .models import TaskRun

    targets = []
    for task, days in sorted(policy.per_task.items()):
        if days is not None:
            cutoff = now - timedelta(days=days)
            targets.append((task, _finished_before(TaskRun.objects.filter(task=task), cutoff)))
    if policy.default is not None:
        cutoff = now - timedelta(days=policy.default)
        rows = TaskRun.objects.exclude(task__in=list(policy.per_task))
        targets.append(("default", _finished_before(rows, cutoff)))
    return targets


def prune(
    *,
    batch_size: int = BATCH_SIZE,
    dry_run: bool = False,
    now: datetime | None = None,
    policy: Policy | None = None,
    on_batch: Callable[[str, int], None] | None = None,
) -> PruneReport:
    """Delete (or with ``dry_run`` count, up to a bound) the runs past retention."""
    policy = policy or Policy.from_settings()
    now = now or timezone.now()
    report = PruneReport(dry_run=dry_run)
    for label, rows in _targets(policy, now):
        report.deleted[label] = 0
        if dry_run:
            report.deleted[label] = rows.values("pk")[: batch_size * 100].count()
            continue
        while True:
            batch = list(rows.values_list("pk", flat=True)[:batch_size])
            if not batch:
                break
            deleted, _ = rows.model._default_manager.filter(pk__in=batch).delete()
            report.deleted[label] += deleted
            if on_batch is not None:
                on_batch(label, deleted)
            if len(batch) < batch_size:
                break
    if report.total and not dry_run:
        logger.info("tasktrail: pruned %s finished runs %s", report.total, report.deleted)
    return report


@shared_task(name=PRUNE_TASK, ignore_result=True)
def prune_task() -> int:
    """The periodic prune celery beat runs; returns how many runs it deleted."""
    return prune().total


def beat_entry() -> dict[str, dict[str, Any]]:
    """The beat schedule entry, for projects that list their schedule by hand:
    ``CELERY_BEAT_SCHEDULE = {**tasktrail.retention.beat_entry(), ...}``."""
    interval = settings.PRUNE_INTERVAL
    if interval is None:
        return {}
    return {PRUNE_TASK: {"task": PRUNE_TASK, "schedule": timedelta(seconds=float(interval))}}


def install_beat_entry(sender: Any = None, **_: Any) -> None:
    """``beat_init`` receiver: add the prune entry to the running beat's scheduler,
    unless the project scheduled ``tasktrail.prune`` itself or disabled it."""
    entry = beat_entry()
    scheduler = getattr(sender, "scheduler", None)
    if not entry or scheduler is None:
        return
    if any(getattr(e, "task", "") == PRUNE_TASK for e in scheduler.schedule.values()):
        return
    scheduler.update_from_dict(entry)
    logger.info("tasktrail: scheduled %s every %ss", PRUNE_TASK, settings.PRUNE_INTERVAL)


def connect() -> None:
    """Called from ``TasktrailConfig.ready()``."""
    from celery import signals

    signals.beat_init.connect(install_beat_entry, weak=False, dispatch_uid="tasktrail.retention")
