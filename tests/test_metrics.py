"""/metrics parsed with prometheus_client's parser; numbers come from the DB and Redis."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

import tests.celery_app  # noqa: F401  (queue depth asks the app's broker)
from tasktrail import enqueue
from tasktrail.models import TaskRun
from tests.testapp.tasks import sleepy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.urls_ops")]


def make_run(**fields: Any) -> TaskRun:
    now = timezone.now()
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "task": "tests.testapp.tasks.add",
        "status": "SUCCESSFUL",
        "queue": "celery",
        "enqueued_at": now - timedelta(seconds=30),
        "started_at": now - timedelta(seconds=20),
        "finished_at": now - timedelta(seconds=18),
    }
    values.update(fields)
    return TaskRun.objects.create(**values)


def scrape(client: Client | None = None, **headers: str) -> dict[str, Any]:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    families = text_string_to_metric_families(response.content.decode())
    return {family.name: family for family in families}


def samples(family: Any, name: str | None = None) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in family.samples
        if name is None or s.name == name
    }


def test_runs_by_task_and_status() -> None:
    # Task names of this test alone: the session's worker may still be flushing others.
    add, fails = f"metrics.add.{uuid.uuid4().hex}", f"metrics.fails.{uuid.uuid4().hex}"
    before = samples(scrape()["tasktrail_runs_last_day"]).get((("status", "SUCCESSFUL"),), 0)
    for _ in range(3):
        make_run(task=add)
    make_run(status="FAILED", task=fails)
    make_run(status="SUCCESSFUL", task=add, enqueued_at=timezone.now() - timedelta(days=2))  # old
    metrics = scrape()
    runs = samples(metrics["tasktrail_runs_last_hour"])
    assert runs[(("status", "SUCCESSFUL"), ("task", add))] == 3
    assert runs[(("status", "FAILED"), ("task", fails))] == 1
    # The day gauge has no task label, and the session worker may flush other tests'
    # runs between two scrapes: bound it by this test's runs below and the table above
    # (read after the scrape, with the same window, so the two-day-old run is outside).
    day = samples(metrics["tasktrail_runs_last_day"])[(("status", "SUCCESSFUL"),)]
    in_window = TaskRun.objects.filter(
        status="SUCCESSFUL", enqueued_at__gte=timezone.now() - timedelta(days=1)
    ).count()
    assert before + 3 <= day <= in_window
    # Latency histograms are counted in Redis as runs start and end, not read from these
    # rows: tests/test_latency.py.


def test_lost_and_stuck_counts() -> None:
    def counts() -> tuple[float, float]:
        metrics = scrape()
        lost = samples(metrics["tasktrail_runs_lost_last_day"])[()]
        return lost, samples(metrics["tasktrail_runs_stuck"])[()]

    lost, stuck = counts()  # other tests' runs may be in the table too
    make_run(status="FAILED", error_type="tasktrail.exceptions.WorkerLost")
    make_run(status="RUNNING", worker="gone@nowhere", finished_at=None)
    # The session worker may flush another test's lost run meanwhile: at least ours.
    lost_after, stuck_after = counts()
    assert lost_after >= lost + 1 and stuck_after >= stuck + 1
    assert TaskRun.objects.filter(worker="gone@nowhere", status="RUNNING").count() == 1


def test_queue_depth_from_the_broker_and_oldest_age() -> None:
    from django.conf import settings

    # A queue no worker reads: a running test worker would take the message at once.
    queue = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-metrics"
    run = enqueue(sleepy, 1, countdown=3600, queue=queue)
    make_run(status="READY", queue=queue, enqueued_at=timezone.now() - timedelta(minutes=5))
    metrics = scrape()
    depth = samples(metrics["tasktrail_queue_depth"])
    assert depth[(("queue", queue),)] >= 1
    age = samples(metrics["tasktrail_queue_oldest_ready_age_seconds"])
    assert 290 < age[(("queue", queue),)] < 400
    from tasktrail.actions import cancel

    cancel(run.id)


def test_token_protects_the_endpoint(settings: Any) -> None:
    settings.TASKTRAIL = {**settings.TASKTRAIL, "METRICS_TOKEN": "s3cret"}
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    metrics = scrape(HTTP_AUTHORIZATION="Bearer s3cret")
    assert "tasktrail_worker_online" in metrics


def test_missing_prometheus_client_names_the_install_command(monkeypatch: Any) -> None:
    import builtins

    from django.core.exceptions import ImproperlyConfigured

    from tasktrail import metrics

    real_import = builtins.__import__

    def without_prometheus(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("prometheus_client"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_prometheus)
    with pytest.raises(ImproperlyConfigured, match=r'pip install "django-tasktrail\[prometheus\]"'):
        metrics.render()


def test_finished_runs_counter_comes_from_redis() -> None:
    from tasktrail import Status
    from tasktrail.transitions import apply, stamp

    task = f"metrics.counted.{uuid.uuid4().hex}"
    for status in (Status.SUCCESSFUL, Status.SUCCESSFUL, Status.FAILED):
        run_id = str(uuid.uuid4())
        apply(run_id, "publish", status=Status.READY, create={"id": run_id, "task": task})
        apply(run_id, "start", attempt=1, status=Status.RUNNING, fields={"worker": "w"})
        apply(run_id, "finish", attempt=1, status=status, fields={"finished_at": stamp(None)})
        # A late repeat of the finish is refused, so it is not counted twice.
        assert apply(run_id, "finish", attempt=1, status=status) is None
    metrics = scrape()
    finished = samples(metrics["tasktrail_runs_finished"], "tasktrail_runs_finished_total")
    assert finished[(("status", "SUCCESSFUL"), ("task", task))] == 2
    assert finished[(("status", "FAILED"), ("task", task))] == 1
    assert samples(metrics["tasktrail_redis_up"]) == {(): 1}


def test_redis_down_still_answers_from_the_database(settings: Any) -> None:
    task = f"metrics.db.{uuid.uuid4().hex}"
    make_run(task=task)
    settings.TASKTRAIL = {**settings.TASKTRAIL, "REDIS_URL": "redis://127.0.0.1:1/0"}
    metrics = scrape()
    assert samples(metrics["tasktrail_redis_up"]) == {(): 0}
    assert "tasktrail_runs_finished" not in metrics
    runs = samples(metrics["tasktrail_runs_last_hour"])
    assert runs[(("status", "SUCCESSFUL"), ("task", task))] == 1
