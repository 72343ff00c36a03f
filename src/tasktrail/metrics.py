"""Prometheus metrics, computed at scrape time from the database and Redis.

Nothing is counted in process memory, so the numbers survive restarts of web
processes and workers (unlike Flower's, flower#542). Needs the ``prometheus``
extra: ``pip install "django-tasktrail[prometheus]"``. Mount the view with
``path("metrics", tasktrail.metrics.metrics_view)``. The names and their Flower
equivalents are listed in docs/metrics.md.
"""

from __future__ import annotations

import hmac
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import redis
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from .access import is_staff
from .conf import settings
from .status import Status

INSTALL = 'pip install "django-tasktrail[prometheus]"'
RECENT = timedelta(hours=1)
DAY = timedelta(days=1)
COUNT_ROWS = 50_000
LOST_ERROR = "tasktrail.exceptions.WorkerLost"


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ImproperlyConfigured(
            f"tasktrail's /metrics needs prometheus-client: {INSTALL}"
        ) from None
    return prometheus_client


# name in Redis -> (metric name, help). Labels as celery-exporter's (name, queue_name),
# without its hostname: a run's attempts may run on several hosts.
HISTOGRAMS = {
    "runtime": (
        "tasktrail_task_runtime",
        "Seconds the successful attempt of each run took (start to finish), by task and queue.",
    ),
    "queue_wait": (
        "tasktrail_task_queue_wait_seconds",
        "Seconds from enqueue to first start of each run, by task and queue.",
    ),
}


def _latency_families() -> Iterator[Any]:
    """Cumulative histograms counted in Redis by the transition script (see
    :mod:`tasktrail.histograms`): the same numbers from every web process."""
    from prometheus_client.core import HistogramMetricFamily

    from .connection import get_redis
    from .histograms import read

    client = get_redis()
    for source, (name, doc) in HISTOGRAMS.items():
        family = HistogramMetricFamily(name, doc, labels=["name", "queue_name"])
        for series in read(client, source):
            family.add_metric([series.task, series.queue], series.cumulative(), series.total)
        yield family


class RunCollector:
    """A prometheus_client collector reading the durable store on each scrape."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from . import stats
        from .models import TaskRun
        from .workers import list_workers

        now = timezone.now()
        recent = now - RECENT
        by_task = GaugeMetricFamily(
            "tasktrail_runs_last_hour",
            "Runs enqueued in the last hour, by task and current status.",
            labels=["task", "status"],
        )
        counts: dict[tuple[str, str], int] = defaultdict(int)
        rows = TaskRun.objects.filter(enqueued_at__gte=recent).values_list("task", "status")
        for task, status in rows.order_by()[:COUNT_ROWS]:
            counts[(task, status)] += 1
        for (task, status), count in sorted(counts.items()):
            by_task.add_metric([task, status], count)
        yield by_task

        by_status = GaugeMetricFamily(
            "tasktrail_runs_last_day",
            "Runs enqueued in the last 24 hours, by current status (capped at 100000).",
            labels=["status"],
        )
        for item in stats.status_counts(now - DAY):
            by_status.add_metric([item.status.value], item.count)
        yield by_status

        # Redis down: the families the database answers still come out (never a 500).
        up = GaugeMetricFamily("tasktrail_redis_up", "1 when Redis answered this scrape.")
        try:
            finished = _finished_counter()
            flush_failures = _flush_failure_counter()
            latency = list(_latency_families())
            workers = list_workers()
        except redis.RedisError:
            up.add_metric([], 0)
            workers = []
        else:
            up.add_metric([], 1)
            yield finished
            yield flush_failures
            yield from latency
        yield up
        yield from _worker_families(workers)
        yield from _queue_families(stats.queue_overview(workers), now)

        lost = GaugeMetricFamily(
            "tasktrail_runs_lost_last_day",
            "Runs failed in the last 24 hours because their worker stopped heartbeating.",
        )
        lost.add_metric(
            [],
            TaskRun.objects.filter(
                status=Status.FAILED, enqueued_at__gte=now - DAY, error_type=LOST_ERROR
            ).count(),
        )
        yield lost
        online = {w.hostname for w in workers if w.online}
        running = TaskRun.objects.filter(status=Status.RUNNING).values_list("worker", flat=True)
        stuck = GaugeMetricFamily(
            "tasktrail_runs_stuck",
            "Runs recorded as RUNNING on a worker that is not online.",
        )
        stuck.add_metric([], sum(1 for worker in running[:10_000] if worker not in online))
        yield stuck


def _finished_counter() -> Any:
    """Runs finished, by task and status, counted in Redis by each transition: it grows
    across restarts of web processes and workers (not across a Redis that keeps nothing
    on disk; Prometheus's ``rate()`` treats that as a counter reset)."""
    from prometheus_client.core import CounterMetricFamily

    from . import keys
    from .connection import get_redis
    from .histograms import read_summed

    family = CounterMetricFamily(
        "tasktrail_runs_finished",
        "Runs finished, by task and final status.",
        labels=["task", "status"],
    )
    names = [keys.finished_counts(base) for base in keys.bases()]  # one per shard
    counts = read_summed(get_redis(), names)
    for label, value in sorted(counts.items()):
        task, _, status = label.decode().rpartition("|")
        family.add_metric([task, status], float(value))
    return family


def _worker_families(workers: list[Any]) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    online = GaugeMetricFamily(
        "tasktrail_worker_online", "1 if the worker heartbeats, else 0.", labels=["worker"]
    )
    executing = GaugeMetricFamily(
        "tasktrail_worker_number_of_currently_executing_tasks",
        "Runs the worker is executing now.",
        labels=["worker"],
    )
    concurrency = GaugeMetricFamily(
        "tasktrail_worker_concurrency", "Pool size of the worker.", labels=["worker"]
    )
    for worker in workers:
        online.add_metric([worker.hostname], 1 if worker.online else 0)
        executing.add_metric([worker.hostname], len(worker.active_runs))
        concurrency.add_metric([worker.hostname], worker.concurrency)
    yield from (online, executing, concurrency)


def _queue_families(queues: list[Any], now: Any) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    depth = GaugeMetricFamily(
        "tasktrail_queue_depth", "Messages waiting in the broker queue.", labels=["queue"]
    )
    age = GaugeMetricFamily(
        "tasktrail_queue_oldest_ready_age_seconds",
        "Age of the oldest READY run of the queue (0 when none waits).",
        labels=["queue"],
    )
    for queue in queues:
        if queue.depth is not None:
            depth.add_metric([queue.name], queue.depth)
        age.add_metric([queue.name], queue.oldest_age(now) or 0.0)
    yield from (depth, age)


def _flush_failure_counter() -> Any:
    """Runs the database refused (issue 11, item 1): written without their JSON
    values, or not written at all; each run is named in the worker's log and marked on
    its dashboard page."""
    from prometheus_client.core import CounterMetricFamily

    from .flusher import failure_counts

    family = CounterMetricFamily(
        "tasktrail_flush_failures",
        "Runs the database refused, by kind (values_dropped, not_written).",
        labels=["kind"],
    )
    for kind, count in failure_counts().items():
        family.add_metric([kind], float(count))
    return family


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    prometheus = _prometheus()
    registry = prometheus.CollectorRegistry(auto_describe=False)
    registry.register(RunCollector())
    return prometheus.generate_latest(registry), prometheus.CONTENT_TYPE_LATEST


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    if given.startswith("Bearer ") and hmac.compare_digest(given[7:], str(token)):
        return True
    return is_staff(getattr(request, "user", None))


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: the Prometheus text format."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    if not _allowed(request):
        return HttpResponse(
            "Send 'Authorization: Bearer <TASKTRAIL METRICS_TOKEN>'.\n",
            status=401,
            content_type="text/plain",
        )
    body, content_type = render()
    return HttpResponse(body, content_type=content_type)
