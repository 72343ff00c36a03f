"""Queue wait and runtime percentiles per task, computed by the database.

Queue wait is ``started_at - enqueued_at`` (enqueue to first start) of every run that
started; runtime is ``finished_at - last_attempted_at`` (the attempt that ended the
run) of successful runs, as celery-exporter's ``celery_task_runtime`` counts them.
Windows select runs by ``enqueued_at``, like the other charts, over the
``tasktrail_latency`` index (task, enqueued_at and the timestamps), so a task's window
is one index range. PostgreSQL answers with ``percentile_cont``; other databases
(SQLite) send the window's timestamps, at most ``ROW_CAP`` rows, and the same linear
interpolation runs here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections, router
from django.utils import timezone

from .status import Status

QUANTILES = (0.5, 0.95, 0.99)
ROW_CAP = 200_000
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, kw_only=True)
class Percentiles:
    """p50, p95 and p99 in seconds over ``count`` runs (``None`` when there were none)."""

    count: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None

    @classmethod
    def of(cls, count: int, values: Sequence[float | None] | None) -> Percentiles:
        if not count or not values:
            return cls()
        p50, p95, p99 = (None if v is None else float(v) for v in values)
        return cls(count=count, p50=p50, p95=p95, p99=p99)


@dataclass(frozen=True, kw_only=True)
class TaskLatency:
    task: str
    hour_wait: Percentiles
    hour_runtime: Percentiles
    day_wait: Percentiles
    day_runtime: Percentiles


@dataclass(frozen=True, kw_only=True)
class Point:
    """One bucket of a task's chart: the runs enqueued from ``start`` for one unit."""

    start: datetime
    wait: Percentiles
    runtime: Percentiles


Found = dict[datetime, tuple[Percentiles, Percentiles]]  # bucket start -> (wait, runtime)


def interpolated(values: list[float], quantile: float) -> float:
    """``percentile_cont``: linear interpolation between the two nearest ranks."""
    ordered = sorted(values)
    position = quantile * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _in_python(values: list[float]) -> Percentiles:
    if not values:
        return Percentiles()
    p50, p95, p99 = (interpolated(values, q) for q in QUANTILES)
    return Percentiles(count=len(values), p50=p50, p95=p95, p99=p99)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def _connection() -> Any:
    from .models import TaskRun

    return connections[router.db_for_read(TaskRun)]


# Seconds, never negative (the enqueueing and the executing host's clocks may disagree
# a little). date_part, not EXTRACT: it gives float8 directly, EXTRACT a numeric whose
# arithmetic took half the screen's time.
_WAIT = "GREATEST(0, date_part('epoch', started_at - enqueued_at))"
_RUNTIME = "GREATEST(0, date_part('epoch', finished_at - last_attempted_at))"
_STARTED = "started_at IS NOT NULL"
_SUCCEEDED = "status = %(ok)s AND last_attempted_at IS NOT NULL AND finished_at IS NOT NULL"
_ARRAY = "ARRAY[" + ", ".join(str(q) for q in QUANTILES) + "]"


def _aggregates(window: str = "TRUE") -> str:
    """Count and percentiles of wait and runtime for the rows matching ``window``."""
    return ", ".join(
        (
            f"count(*) FILTER (WHERE {window} AND {_STARTED})",
            f"percentile_cont({_ARRAY}) WITHIN GROUP (ORDER BY {_WAIT}) "
            f"FILTER (WHERE {window} AND {_STARTED})",
            f"count(*) FILTER (WHERE {window} AND {_SUCCEEDED})",
            f"percentile_cont({_ARRAY}) WITHIN GROUP (ORDER BY {_RUNTIME}) "
            f"FILTER (WHERE {window} AND {_SUCCEEDED})",
        )
    )


def _table() -> str:
    from .models import TaskRun

    return str(_connection().ops.quote_name(TaskRun._meta.db_table))


def by_task(now: datetime | None = None) -> list[TaskLatency]:
    """Every task enqueued in the last day, with its hour and day percentiles."""
    now = now or timezone.now()
    if _connection().vendor == "postgresql":
        return _by_task_sql(now)
    return _by_task_rows(now)


def _by_task_sql(now: datetime) -> list[TaskLatency]:
    # Task names by a loose index scan (one index probe per distinct name), then each
    # task's day as one range of the latency index: no pass over the whole day's rows
    # sorted by task, which spilled to disk at a million runs.
    table = _table()
    sql = (
        f"WITH RECURSIVE names(task) AS ("
        f" (SELECT task FROM {table} ORDER BY task LIMIT 1)"
        f" UNION ALL SELECT (SELECT task FROM {table} WHERE task > names.task"
        f" ORDER BY task LIMIT 1) FROM names WHERE names.task IS NOT NULL) "
        f"SELECT names.task, figures.* FROM names CROSS JOIN LATERAL ("
        f"SELECT count(*) AS runs, {_aggregates('enqueued_at >= %(hour)s')}, {_aggregates()} "
        f"FROM {table} "
        f"WHERE task = names.task AND enqueued_at >= %(day)s) AS figures "
        f"WHERE names.task IS NOT NULL AND figures.runs > 0 ORDER BY names.task"
    )
    params = {"ok": Status.SUCCESSFUL.value, "hour": now - HOUR, "day": now - DAY}
    with _connection().cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [
        TaskLatency(
            task=row[0],  # row[1]: the day's runs, started or not
            hour_wait=Percentiles.of(row[2], row[3]),
            hour_runtime=Percentiles.of(row[4], row[5]),
            day_wait=Percentiles.of(row[6], row[7]),
            day_runtime=Percentiles.of(row[8], row[9]),
        )
        for row in rows
    ]


def _window_rows(since: datetime, task: str | None = None) -> Iterable[tuple[Any, ...]]:
    from .models import TaskRun

    rows = TaskRun.objects.filter(enqueued_at__gte=since)
    if task is not None:
        rows = rows.filter(task=task)
    return rows.order_by().values_list(
        "task", "status", "enqueued_at", "started_at", "last_attempted_at", "finished_at"
    )[:ROW_CAP]


def _split(rows: Iterable[tuple[Any, ...]]) -> tuple[list[float], list[float]]:
    waits, runtimes = [], []
    for _task, status, enqueued, started, attempted, finished in rows:
        if (wait := _seconds(enqueued, started)) is not None:
            waits.append(wait)
        if status == Status.SUCCESSFUL and (runtime := _seconds(attempted, finished)) is not None:
            runtimes.append(runtime)
    return waits, runtimes


def _by_task_rows(now: datetime) -> list[TaskLatency]:
    day: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in _window_rows(now - DAY):
        day[row[0]].append(row)
    found = []
    for task in sorted(day):
        hour_wait, hour_runtime = _split(r for r in day[task] if r[2] >= now - HOUR)
        day_wait, day_runtime = _split(day[task])
        found.append(
            TaskLatency(
                task=task,
                hour_wait=_in_python(hour_wait),
                hour_runtime=_in_python(hour_runtime),
                day_wait=_in_python(day_wait),
                day_runtime=_in_python(day_runtime),
            )
        )
    return found


def series(task: str, unit: str, now: datetime | None = None) -> list[Point]:
    """One task's percentiles per minute over the last hour (``unit="minute"``) or per
    hour over the last day (``"hour"``); buckets without runs are empty points."""
    now = now or timezone.now()
    step, window = (timedelta(minutes=1), HOUR) if unit == "minute" else (HOUR, DAY)
    first = (now - window).replace(second=0, microsecond=0)
    if unit == "hour":
        first = first.replace(minute=0)
    if _connection().vendor == "postgresql":
        found = _series_sql(task, unit, first)
    else:
        found = _series_rows(task, step, first)
    points = []
    start = first
    while start <= now:
        wait, runtime = found.get(start, (Percentiles(), Percentiles()))
        points.append(Point(start=start, wait=wait, runtime=runtime))
        start += step
    return points


def _series_sql(task: str, unit: str, first: datetime) -> Found:
    sql = (
        f"SELECT date_trunc(%(unit)s, enqueued_at AT TIME ZONE 'UTC'), {_aggregates()} "
        f"FROM {_table()} WHERE task = %(task)s AND enqueued_at >= %(first)s GROUP BY 1"
    )
    params = {"ok": Status.SUCCESSFUL.value, "unit": unit, "task": task, "first": first}
    with _connection().cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return {
        row[0].replace(tzinfo=UTC): (Percentiles.of(row[1], row[2]), Percentiles.of(row[3], row[4]))
        for row in rows
    }


def _series_rows(task: str, step: timedelta, first: datetime) -> Found:
    buckets: dict[datetime, list[tuple[Any, ...]]] = defaultdict(list)
    size = step.total_seconds()
    for row in _window_rows(first, task):
        enqueued = row[2].astimezone(UTC)
        offset = math.floor((enqueued - first).total_seconds() / size)
        buckets[first + offset * step].append(row)
    found: Found = {}
    for start, rows in buckets.items():
        waits, runtimes = _split(rows)
        found[start] = (_in_python(waits), _in_python(runtimes))
    return found
