"""Failure groups: failed runs with one fingerprint (``tasktrail.fingerprints``), counted,
described by a sample, muted, and retried together.

Every count reads the partial index ``(fingerprint, finished_at) WHERE status =
'FAILED'`` alone, within a time window (:data:`WINDOW`): the groups of a table of
millions of runs are one index-only scan of its recent failures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import Count, Max, Min
from django.db.models.functions import TruncHour
from django.utils import timezone

from . import audit, operations
from .fingerprints import LENGTH, fingerprint
from .status import Status

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from .models import FailureGroup, TaskRun

WINDOW = timedelta(days=7)
SPARK_HOURS = 24
GROUP_LIMIT = 200  # groups listed, most recently seen first
_DIGEST = re.compile(rf"^[0-9a-f]{{{LENGTH}}}$")


@dataclass(frozen=True, kw_only=True)
class GroupSummary:
    group: FailureGroup
    count: int  # within the window
    first_seen: datetime
    last_seen: datetime
    hourly: tuple[int, ...]  # failures per hour, the last SPARK_HOURS hours, oldest first


def is_fingerprint(text: str) -> bool:
    return bool(_DIGEST.match(text))


def failed_runs(digest: str) -> QuerySet[TaskRun]:
    """The failed runs of one group (every one, not only the window's)."""
    from .models import TaskRun

    return TaskRun.objects.filter(status=Status.FAILED, fingerprint=digest)


def summaries(
    now: datetime | None = None, *, include_muted: bool = False, limit: int = GROUP_LIMIT
) -> list[GroupSummary]:
    """The groups with failures in the last :data:`WINDOW`, most recently seen first."""
    from .models import FailureGroup, TaskRun

    now = now or timezone.now()
    recent = TaskRun.objects.filter(status=Status.FAILED, finished_at__gte=now - WINDOW)
    recent = recent.exclude(fingerprint="")
    if not include_muted:
        muted = FailureGroup.objects.filter(muted=True).values("fingerprint")
        recent = recent.exclude(fingerprint__in=muted)
    grouped = list(
        recent.values("fingerprint")
        .annotate(count=Count("fingerprint"), first=Min("finished_at"), last=Max("finished_at"))
        .order_by("-last")[:limit]
    )
    digests = [row["fingerprint"] for row in grouped]
    groups = describe(digests)
    hourly = _hourly(digests, now)
    return [
        GroupSummary(
            group=groups[row["fingerprint"]],
            count=row["count"],
            first_seen=min(row["first"], groups[row["fingerprint"]].first_seen or row["first"]),
            last_seen=row["last"],
            hourly=hourly.get(row["fingerprint"], (0,) * SPARK_HOURS),
        )
        for row in grouped
        if row["fingerprint"] in groups
    ]


def describe(digests: list[str]) -> dict[str, FailureGroup]:
    """The stored group of each fingerprint, created from its latest run when new."""
    from .models import FailureGroup

    known = {g.pk: g for g in FailureGroup.objects.filter(pk__in=digests)}
    new = [_new_group(d) for d in digests if d not in known]
    created = [g for g in new if g is not None]
    if created:  # a concurrent page may create the same ones: theirs are as good
        FailureGroup.objects.bulk_create(created, ignore_conflicts=True)
        known.update({g.pk: g for g in FailureGroup.objects.filter(pk__in=[g.pk for g in created])})
    return known


def _new_group(digest: str) -> FailureGroup | None:
    from .models import FailureGroup

    runs = failed_runs(digest)
    sample = runs.order_by("-finished_at").first()
    if sample is None:
        return None
    found = fingerprint(sample.task, sample.error_type, sample.error_traceback)
    first = runs.aggregate(first=Min("finished_at"))["first"]
    return FailureGroup(
        fingerprint=digest,
        task=sample.task,
        error_type=sample.error_type,
        frame=found.frame.label[:500] if found.frame else "",
        sample_message=sample.error_message[:2000],
        first_seen=first,
    )


def group(digest: str) -> FailureGroup | None:
    """One group, or None when no failed run has this fingerprint."""
    if not is_fingerprint(digest):
        return None
    return describe([digest]).get(digest)


def _hourly(digests: list[str], now: datetime) -> dict[str, tuple[int, ...]]:
    first = (now - timedelta(hours=SPARK_HOURS - 1)).replace(minute=0, second=0, microsecond=0)
    if not digests:
        return {}
    rows = (
        failed_runs_in(digests)
        .filter(finished_at__gte=first)
        .annotate(hour=TruncHour("finished_at", tzinfo=UTC))
        .values("fingerprint", "hour")
        .annotate(count=Count("fingerprint"))
        .order_by()
    )
    counts: dict[str, list[int]] = {d: [0] * SPARK_HOURS for d in digests}
    for row in rows:
        slot = int((row["hour"] - first).total_seconds() // 3600)
        if 0 <= slot < SPARK_HOURS:
            counts[row["fingerprint"]][slot] += row["count"]
    return {d: tuple(c) for d, c in counts.items()}


def failed_runs_in(digests: list[str]) -> QuerySet[TaskRun]:
    from .models import TaskRun

    return TaskRun.objects.filter(status=Status.FAILED, fingerprint__in=digests)


def set_muted(found: FailureGroup, muted: bool, *, actor: Any, address: str | None) -> None:
    """Mute or unmute a group (hidden from the groups page by default), audited."""
    from .models import AuditEntry

    found.muted = muted
    found.muted_by = audit.actor_name(actor) if muted else ""
    found.muted_at = timezone.now() if muted else None
    found.save(update_fields=["muted", "muted_by", "muted_at"])
    action = AuditEntry.Action.MUTE_GROUP if muted else AuditEntry.Action.UNMUTE_GROUP
    audit.record(action, actor, address, fingerprint=found.pk, task=found.task)


@dataclass(frozen=True, kw_only=True)
class GroupRetry:
    outcome: operations.BulkOutcome
    not_replayable: frozenset[str]  # arguments redacted or cut: refused, cannot be replayed

    @property
    def other_refusals(self) -> dict[str, str]:
        """Runs refused for another reason (they changed meanwhile, say)."""
        refused = self.outcome.refused.items()
        return {pk: why for pk, why in refused if pk not in self.not_replayable}


def retry_group(
    found: FailureGroup, *, actor: Any, address: str | None, limit: int = operations.BULK_LIMIT
) -> GroupRetry:
    """Retry every failed run of the group (at most ``limit``, newest first) through
    :func:`tasktrail.actions.retry`, each audited; runs already retried once are skipped,
    runs whose arguments cannot be replayed are refused and counted, and one refusal
    never stops the others."""
    from .models import AuditEntry

    runs = failed_runs(found.pk).order_by("-enqueued_at", "-id")
    listed = list(runs.values_list("pk", "arguments_incomplete")[:limit])
    outcome = operations.retry_each([pk for pk, _ in listed], actor=actor, address=address)
    done = GroupRetry(
        outcome=outcome,
        not_replayable=frozenset(pk for pk, flag in listed if flag and pk in outcome.refused),
    )
    audit.record(
        AuditEntry.Action.RETRY_GROUP, actor, address, fingerprint=found.pk, task=found.task,
        retried=len(outcome.done), refused=len(done.other_refusals),
        skipped=outcome.skipped_already_retried, not_replayable=len(done.not_replayable),
    )  # fmt: skip
    return done
