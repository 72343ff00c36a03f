"""Numbers about runs for the dashboard, the CLI and /metrics, cheap on a large table.

Every query is bounded by an index: counts go per status over the
``(status, enqueued_at)`` index within a time window and stop at a cap, so no query
ever counts the whole table. Charts bucket runs by the time they were enqueued
(the indexed timestamp). Queue depth comes from the broker, queue age from the
database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, Min
from django.db.models.functions import TruncHour, TruncMinute
from django.utils import timezone

from .status import FINISHED, Status

COUNT_CAP = 100_000


@dataclass(frozen=True, kw_only=True)
class StatusCount:
    status: Status
    count: int
    capped: bool

    @property
    def label(self) -> str:
        return f"{self.count:,}+" if self.capped else f"{self.count:,}"


@dataclass(frozen=True, kw_only=True)
class Bucket:
    start: datetime
    finished: int
    failed: int

    @property
    def failure_rate(self) -> float:
        return self.failed / self.finished if self.finished else 0.0


@dataclass(frozen=True, kw_only=True)
class QueueInfo:
    name: str
    depth: int | None
    oldest_ready_at: datetime | None
    consumers: tuple[str, ...] = ()

    def oldest_age(self, now: datetime | None = None) -> float | None:
        if self.oldest_ready_at is None:
            return None
        return max(0.0, ((now or timezone.now()) - self.oldest_ready_at).total_seconds())


def bounded_count(queryset: Any, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """``COUNT(*)`` over at most ``cap`` rows: ``SELECT COUNT(*) FROM (... LIMIT cap)``."""
    count = int(queryset.values("pk")[:cap].count())
    return count, count >= cap


def status_counts(since: datetime, cap: int = COUNT_CAP) -> list[StatusCount]:
    """Runs enqueued since ``since`` per status (one index range per status)."""
    from .models import TaskRun

    counts = []
    for status in Status:
        count, capped = bounded_count(
            TaskRun.objects.filter(status=status, enqueued_at__gte=since), cap
        )
        counts.append(StatusCount(status=status, count=count, capped=capped))
    return counts


def _bucketed(status: str, since: datetime, unit: str) -> dict[datetime, int]:
    from .models import TaskRun

    trunc = TruncMinute if unit == "minute" else TruncHour
    rows = (
        TaskRun.objects.filter(status=status, enqueued_at__gte=since)
        .annotate(bucket=trunc("enqueued_at", tzinfo=UTC))
        .values("bucket")
        .annotate(n=Count("*"))  # "*": the (status, enqueued_at) index alone answers
        .order_by()
    )
    return {row["bucket"]: int(row["n"]) for row in rows}


def throughput(window: timedelta, unit: str, now: datetime | None = None) -> list[Bucket]:
    """Finished and failed runs per ``unit`` ("minute" or "hour") over ``window``."""
    step = timedelta(minutes=1) if unit == "minute" else timedelta(hours=1)
    end = now or timezone.now()
    first = end - window
    first = first.replace(second=0, microsecond=0)
    if unit == "hour":
        first = first.replace(minute=0)
    per_status = {status: _bucketed(status, first, unit) for status in FINISHED}
    buckets = []
    start = first
    while start <= end:
        finished = sum(per_status[status].get(start, 0) for status in FINISHED)
        failed = per_status[Status.FAILED].get(start, 0)
        buckets.append(Bucket(start=start, finished=finished, failed=failed))
        start += step
    return buckets


def oldest_ready(queues: Iterable[str] | None = None) -> dict[str, datetime]:
    """When the oldest ``READY`` run of each queue was enqueued (over READY rows only)."""
    from .models import TaskRun

    rows = TaskRun.objects.filter(status=Status.READY)
    if queues is not None:
        rows = rows.filter(queue__in=list(queues))
    grouped = rows.values("queue").annotate(oldest=Min("enqueued_at")).order_by()
    return {row["queue"]: row["oldest"] for row in grouped}


def _celery_app() -> Any:
    from celery import current_app

    return current_app


def configured_queues(app: Any = None) -> set[str]:
    app = app or _celery_app()
    names = {str(app.conf.task_default_queue or "celery")}
    for queue in app.conf.task_queues or ():
        names.add(str(getattr(queue, "name", queue)))
    return names


def broker_depths(names: Iterable[str], app: Any = None) -> dict[str, int | None]:
    """Messages waiting in each queue: ``LLEN`` on a Redis broker (every priority
    list), a passive declare on any other; ``None`` when the broker does not answer."""
    app = app or _celery_app()
    names = sorted(set(names))
    url = str(app.conf.broker_url or "")
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            return _redis_depths(url, names)
        return _kombu_depths(app, names)
    except Exception:
        return dict.fromkeys(names)


def _redis_depths(url: str, names: list[str]) -> dict[str, int | None]:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        pipe = client.pipeline(transaction=False)
        suffixes = ("", "\x06\x163", "\x06\x166", "\x06\x169")  # kombu's priority lists
        for name in names:
            for suffix in suffixes:
                pipe.llen(name + suffix)
        sizes = pipe.execute()
    finally:
        client.close()
    step = len(suffixes)
    return {name: int(sum(sizes[i * step : (i + 1) * step])) for i, name in enumerate(names)}


def _kombu_depths(app: Any, names: list[str]) -> dict[str, int | None]:
    depths: dict[str, int | None] = {}
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        for name in names:
            try:
                depths[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
            except Exception:
                depths[name] = None
    return depths


def queue_overview(workers: Iterable[Any] = ()) -> list[QueueInfo]:
    """Every known queue (configured, consumed by a worker, or holding READY runs)."""
    consumers: dict[str, list[str]] = {}
    for worker in workers:
        if worker.online:
            for queue in worker.queues:
                consumers.setdefault(queue, []).append(worker.hostname)
    oldest = oldest_ready()
    names = configured_queues() | set(consumers) | {q for q in oldest if q}
    depths = broker_depths(names)
    return [
        QueueInfo(
            name=name,
            depth=depths.get(name),
            oldest_ready_at=oldest.get(name),
            consumers=tuple(sorted(consumers.get(name, ()))),
        )
        for name in sorted(names)
    ]
