"""What each rule kind finds now, as firings: one per group and throttle window.

Event rules (``failed``, ``retries_exhausted``, ``runtime``) look back over the run
record and bucket each event by *its own* time (when the run finished, when its attempt
crossed the bound), so every evaluator, whenever it runs, computes the same window for
the same event; the claim table then lets one message out per group and window. The
look-back (at least ``LOOKBACK`` seconds, or the window) covers runs the flusher writes
late and evaluators that were down for a while.

Condition rules (``queue_age``, ``no_worker``, ``failure_rate``) are judged at the
evaluation time, which comes from the Redis server's clock (one clock for every host),
and fire once per window for as long as the condition holds.
"""

from __future__ import annotations

import fnmatch
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, F, Q
from django.db.models.functions import Coalesce

from ..status import Status
from .rules import Rule

LOOKBACK = 900.0  # seconds: how late a run may reach the database and still alert
SCAN_CAP = 5000  # rows read per rule and round, newest first
EXAMPLES = 5


@dataclass(frozen=True, kw_only=True)
class Firing:
    """A rule that fired for ``group`` in the window starting at ``window_start``."""

    group: str
    window_start: datetime
    count: int
    summary: str
    examples: tuple[str, ...] = ()


def window_start(at: datetime, window: float) -> datetime:
    """The start of the throttle window holding ``at`` (windows are aligned on the epoch,
    so every process cuts time the same way)."""
    seconds = at.timestamp()
    return datetime.fromtimestamp(math.floor(seconds / window) * window, UTC)


def matches(task: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(task, pattern) for pattern in patterns)


def _group(rule: Rule, task: str, queue: str) -> str:
    return {"task": task, "queue": queue or "(default)", "rule": rule.id}[rule.group_by]


def _runs() -> Any:
    from ..models import TaskRun

    return TaskRun.objects


def _task_filter(rule: Rule) -> Q:
    """Literal task names narrow the query; patterns are matched in Python."""
    if all(not any(c in p for c in "*?[") for p in rule.tasks):
        return Q(task__in=list(rule.tasks))
    return Q()


NOUNS = {  # (one, several)
    "failed": ("failed run", "failed runs"),
    "retries_exhausted": ("run failed after retrying", "runs failed after retrying"),
    "runtime": ("attempt over its bound", "attempts over their bound"),
}


def _bucket(rule: Rule, events: Iterable[tuple[str, str, str, datetime]]) -> list[Firing]:
    """Events ``(run id, task, queue, when)``, newest first, into firings."""
    found: dict[tuple[str, datetime], list[str]] = defaultdict(list)
    for run_id, task, queue, at in events:
        if matches(task, rule.tasks):
            found[(_group(rule, task, queue), window_start(at, rule.window))].append(run_id)
    where = {"task": " of {}", "queue": " in queue {}", "rule": ""}[rule.group_by]
    firings = []
    for (group, start), run_ids in sorted(found.items(), key=lambda item: item[0][1]):
        noun = NOUNS[rule.kind][0 if len(run_ids) == 1 else 1]
        firings.append(
            Firing(
                group=group,
                window_start=start,
                count=len(run_ids),
                summary=f"{len(run_ids)} {noun}{where.format(group)}",
                examples=tuple(run_ids[:EXAMPLES]),
            )
        )
    return firings


def _since(rule: Rule, now: datetime) -> datetime:
    return now - timedelta(seconds=max(LOOKBACK, rule.window))


def failed(rule: Rule, now: datetime) -> list[Firing]:
    rows = (
        _runs()
        .filter(_task_filter(rule), status=Status.FAILED, finished_at__gte=_since(rule, now))
        .filter(finished_at__lte=now)
        .order_by("-finished_at")
    )
    if rule.kind == "retries_exhausted":
        rows = rows.filter(attempts__gt=1)
    events = rows.values_list("id", "task", "queue", "finished_at")[:SCAN_CAP]
    return _bucket(rule, events)


def runtime(rule: Rule, now: datetime) -> list[Firing]:
    """Attempts that crossed the bound: still running past it, or finished after it.
    The event's time is the moment it crossed (start + bound)."""
    bound = timedelta(seconds=rule.seconds or 0)
    since = _since(rule, now)
    attempt_start = Coalesce("last_attempted_at", "started_at")
    fields = ("id", "task", "queue", "attempt_start")
    running = (
        _runs()
        .filter(_task_filter(rule), status=Status.RUNNING)
        .annotate(attempt_start=attempt_start)
        .filter(attempt_start__lte=now - bound, attempt_start__gte=since - bound)
        .values_list(*fields)[:SCAN_CAP]
    )
    finished = (
        _runs()
        .filter(_task_filter(rule), status__in=[Status.SUCCESSFUL, Status.FAILED])
        .filter(finished_at__gte=since, finished_at__lte=now)
        .annotate(attempt_start=attempt_start)
        .filter(finished_at__gt=F("attempt_start") + bound, attempt_start__gte=since - bound)
        .values_list(*fields)[:SCAN_CAP]
    )
    events = [(r, t, q, started + bound) for r, t, q, started in [*running, *finished]]
    events.sort(key=lambda event: event[3], reverse=True)
    return _bucket(rule, events)


def _queues(rule: Rule) -> list[str]:
    if rule.queues is not None:
        return list(rule.queues)
    from ..stats import configured_queues

    return sorted(configured_queues())


def _waiting(queue: str, before: datetime | None = None) -> int:
    rows = _runs().filter(status=Status.READY, queue=queue)
    if before is not None:
        rows = rows.filter(enqueued_at__lte=before)
    from ..stats import bounded_count

    return bounded_count(rows)[0]


def _per_queue(rule: Rule, now: datetime, found: dict[str, tuple[int, str]]) -> list[Firing]:
    """Queue firings; grouped by rule, they become one."""
    if rule.group_by == "rule" and found:
        return [
            Firing(
                group=rule.id,
                window_start=window_start(now, rule.window),
                count=sum(count for count, _ in found.values()),
                summary="; ".join(summary for _, summary in found.values()),
                examples=tuple(sorted(found)[:EXAMPLES]),
            )
        ]
    return [
        Firing(
            group=queue,
            window_start=window_start(now, rule.window),
            count=count,
            summary=summary,
            examples=(queue,),
        )
        for queue, (count, summary) in sorted(found.items())
    ]


def queue_age(rule: Rule, now: datetime) -> list[Firing]:
    from ..stats import oldest_ready

    bound = rule.seconds or 0
    found: dict[str, tuple[int, str]] = {}
    for queue, oldest in oldest_ready(_queues(rule)).items():
        age = (now - oldest).total_seconds()
        if age > bound:
            late = _waiting(queue, now - timedelta(seconds=bound))
            found[queue] = (
                late,
                f"queue {queue}: {late} READY run(s) waiting more than "
                f"{bound:g} s, the oldest {age:.0f} s",
            )
    return _per_queue(rule, now, found)


def no_worker(rule: Rule, now: datetime) -> list[Firing]:
    from ..workers import list_workers

    consumed = {queue for w in list_workers() if w.online for queue in w.queues}
    found: dict[str, tuple[int, str]] = {}
    for queue in _queues(rule):
        if queue not in consumed:
            waiting = _waiting(queue)
            found[queue] = (
                waiting,
                f"queue {queue}: no worker online consumes it ({waiting} READY run(s) waiting)",
            )
    return _per_queue(rule, now, found)


def failure_rate(rule: Rule, now: datetime) -> list[Firing]:
    period = rule.period or rule.window
    rows = (
        _runs()
        .filter(_task_filter(rule), status__in=[Status.SUCCESSFUL, Status.FAILED])
        .filter(finished_at__gte=now - timedelta(seconds=period), finished_at__lte=now)
        .values_list("task", "queue", "status")
        .annotate(n=Count("*"))
        .order_by()
    )
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for task, queue, status, n in rows:
        if matches(task, rule.tasks):
            counts = totals[_group(rule, task, queue)]
            counts[0] += n
            counts[1] += n if status == Status.FAILED else 0
    firings = []
    for group, (total, failures) in sorted(totals.items()):
        if total >= rule.min_runs and failures / total >= (rule.threshold or 0):
            firings.append(
                Firing(
                    group=group,
                    window_start=window_start(now, rule.window),
                    count=failures,
                    summary=f"{group}: {failures} of {total} runs failed "
                    f"({failures / total:.0%}) in the last {period:g} s",
                )
            )
    return firings


FINDERS: dict[str, Callable[[Rule, datetime], list[Firing]]] = {
    "failed": failed,
    "retries_exhausted": failed,
    "runtime": runtime,
    "queue_age": queue_age,
    "no_worker": no_worker,
    "failure_rate": failure_rate,
}


def find(rule: Rule, now: datetime) -> list[Firing]:
    return FINDERS[rule.kind](rule, now)
