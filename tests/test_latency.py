"""Latency: percentiles per task from the database (PostgreSQL's percentile_cont, or the
same interpolation over SQLite's rows), the dashboard screen, and the histograms on
/metrics that the transition script counts in Redis."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from tasktrail import enqueue, latency
from tasktrail.models import TaskRun
from tasktrail.transitions import apply, stamp
from tests.testapp.tasks import sleepy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.urls_ops")]


def make_runs(task: str, waits: list[float], runtime: float, ago: timedelta, **fields: Any) -> None:
    """Runs enqueued ``ago``, each waiting its ``waits`` entry, then running ``runtime``."""
    enqueued = timezone.now() - ago
    TaskRun.objects.bulk_create(
        TaskRun(
            id=str(uuid.uuid4()),
            task=task,
            status=fields.get("status", "SUCCESSFUL"),
            enqueued_at=enqueued,
            started_at=enqueued + timedelta(seconds=wait),
            last_attempted_at=enqueued + timedelta(seconds=wait),
            finished_at=enqueued + timedelta(seconds=wait + runtime),
        )
        for wait in waits
    )


def mine(task: str) -> latency.TaskLatency:
    found = [item for item in latency.by_task() if item.task == task]
    assert len(found) == 1
    return found[0]


def test_percentiles_per_task_over_the_hour_and_the_day() -> None:
    task = f"latency.{uuid.uuid4().hex}"
    make_runs(task, [float(s) for s in range(1, 101)], 2.0, timedelta(minutes=5))
    # Two hours ago: in the day only. Failed: a wait, but no runtime (celery-exporter's
    # runtime counts successes). Never started: neither.
    make_runs(task, [500.0], 40.0, timedelta(hours=2))
    make_runs(task, [3.0], 999.0, timedelta(minutes=5), status="FAILED")
    TaskRun.objects.create(id=str(uuid.uuid4()), task=task, enqueued_at=timezone.now())
    make_runs(f"other.{task}", [7.0], 1.0, timedelta(minutes=5))

    item = mine(task)
    # 1..100 s and one 3 s: percentile_cont interpolates between neighbouring ranks.
    assert item.hour_wait.count == 101
    assert item.hour_wait.p50 == pytest.approx(50.0)
    assert item.hour_wait.p95 == pytest.approx(95.0)
    assert item.hour_wait.p99 == pytest.approx(99.0)
    assert item.hour_runtime.count == 100
    assert (item.hour_runtime.p50, item.hour_runtime.p99) == (pytest.approx(2.0),) * 2
    assert item.day_wait.count == 102
    assert item.day_wait.p99 == pytest.approx(99.99)  # between ranks 99 (99 s) and 100 (100 s)
    assert item.day_runtime.count == 101
    assert (item.day_runtime.p50, item.day_runtime.p99) == (pytest.approx(2.0),) * 2


def test_exact_percentiles_of_one_to_a_hundred() -> None:
    task = f"latency.exact.{uuid.uuid4().hex}"
    make_runs(task, [float(s) for s in range(1, 101)], 0.5, timedelta(minutes=1))
    item = mine(task)
    assert (item.hour_wait.p50, item.hour_wait.p95, item.hour_wait.p99) == (
        pytest.approx(50.5),
        pytest.approx(95.05),
        pytest.approx(99.01),
    )


def test_series_per_hour_and_per_minute() -> None:
    task = f"latency.series.{uuid.uuid4().hex}"
    make_runs(task, [1.0, 3.0], 0.25, timedelta(hours=3, minutes=10))
    make_runs(task, [10.0], 4.0, timedelta(minutes=2))
    day = latency.series(task, "hour")
    assert 24 <= len(day) <= 25 and all(b.start > a.start for a, b in itertools.pairwise(day))
    filled = [p for p in day if p.wait.count]
    assert [p.wait.count for p in filled] == [2, 1]
    assert filled[0].wait.p50 == pytest.approx(2.0) and filled[0].runtime.p95 == 0.25
    assert filled[1].runtime.p50 == pytest.approx(4.0)
    hour = latency.series(task, "minute")
    assert [p.wait.p99 for p in hour if p.wait.count] == [pytest.approx(10.0)]


def test_the_screen_is_for_staff_and_charts_one_task() -> None:
    task = f"latency.page.{uuid.uuid4().hex}"
    make_runs(task, [0.2, 0.4, 30.0], 1.5, timedelta(minutes=3))
    assert Client().get("/ops/latency/").status_code == 302  # to the login page
    users = get_user_model().objects
    plain = Client()
    plain.force_login(users.create_user(f"u{uuid.uuid4().hex[:8]}", password="pw"))
    assert plain.get("/ops/latency/").status_code == 403
    staff = Client()
    staff.force_login(users.create_user(f"s{uuid.uuid4().hex[:8]}", password="pw", is_staff=True))

    table = staff.get("/ops/latency/")
    assert table.status_code == 200
    html = table.content.decode()
    assert task in html and "400 ms" in html and "29.4 s" in html and "1.5 s" in html

    page = staff.get("/ops/latency/", {"task": task})
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('<polyline class="p99"') == 4
    assert "3 runs" in html and "scale 0 to 29.4 s" in html and "scale 0 to 1.5 s" in html

    empty = staff.get("/ops/latency/", {"task": "never.ran"})
    assert empty.status_code == 200 and "0 runs" in empty.content.decode()
    assert staff.get("/ops/latency/", {"task": "x" * 256}).status_code == 400
    assert staff.get("/ops/latency/?task=a%00b").status_code == 400


def scrape() -> dict[str, Any]:
    response = Client().get("/metrics")
    assert response.status_code == 200
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def samples(family: Any, suffix: str, task: str) -> dict[str, float]:
    return {
        s.labels.get("le", ""): s.value
        for s in family.samples
        if s.name.endswith(suffix) and s.labels.get("name") == task
    }


def test_histograms_are_counted_once_per_run_in_redis(own_key_prefix: str) -> None:
    task = f"metrics.hist.{uuid.uuid4().hex}"
    for wait, runtime, status in ((2.0, 0.3, "SUCCESSFUL"), (0.02, 40.0, "SUCCESSFUL"),
                                  (7.0, 1.0, "FAILED")):  # fmt: skip
        run_id, now = str(uuid.uuid4()), time.time()
        create = {"id": run_id, "task": task, "queue": "q1", "enqueued_at": stamp(now - 100)}
        apply(run_id, "publish", status="READY", create=create)
        started = now - 100 + wait
        fields = {"last_attempted_at": stamp(started), "worker": "w"}
        apply(run_id, "start", attempt=1, status="RUNNING", fields=fields,
              create={"started_at": stamp(started)})  # fmt: skip
        # A second attempt's start is not a second queue wait.
        apply(run_id, "start", attempt=2, status="RUNNING", fields=fields,
              create={"started_at": stamp(started + 5)})  # fmt: skip
        done = {"finished_at": stamp(started + runtime)}
        apply(run_id, "finish", attempt=2, status=status, fields=done)
        assert apply(run_id, "finish", attempt=2, status=status, fields=done) is None
    metrics = scrape()

    runtime = metrics["tasktrail_task_runtime"]
    buckets = samples(runtime, "_bucket", task)
    assert buckets["0.25"] == 0 and buckets["0.5"] == 1 and buckets["30.0"] == 1
    assert buckets["60.0"] == 2 and buckets["+Inf"] == 2  # the failed run is not counted
    assert samples(runtime, "_count", task) == {"": 2}
    assert samples(runtime, "_sum", task)[""] == pytest.approx(40.3, abs=0.01)
    assert {s.labels["queue_name"] for s in runtime.samples if s.labels["name"] == task} == {"q1"}

    wait = metrics["tasktrail_task_queue_wait_seconds"]
    buckets = samples(wait, "_bucket", task)
    assert (buckets["0.025"], buckets["2.5"], buckets["10.0"], buckets["+Inf"]) == (1, 2, 3, 3)
    assert samples(wait, "_sum", task)[""] == pytest.approx(9.02, abs=0.01)


def test_histograms_from_a_real_worker(worker: Any) -> None:
    def counted() -> tuple[float, float]:
        family = scrape()["tasktrail_task_runtime"]
        return (
            sum(samples(family, "_count", sleepy.name).values()),
            sum(samples(family, "_sum", sleepy.name).values()),
        )

    count, total = counted()
    runs = [enqueue(sleepy, 0.3) for _ in range(2)]
    for run in runs:
        run.wait(timeout=60)
    after_count, after_total = counted()
    assert after_count == count + 2
    assert 0.6 <= after_total - total < 2.0
    family = scrape()["tasktrail_task_queue_wait_seconds"]
    assert sum(samples(family, "_count", sleepy.name).values()) >= 2
