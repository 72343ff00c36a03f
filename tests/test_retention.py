"""Retention: per-task policies, bounded batches, and the automatic beat entry."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tasktrail import retention
from tasktrail.models import TaskRun

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _only_these_runs() -> None:
    """Other tests' runs reach the table behind them: flush them and start clean."""
    from tasktrail.flusher import flush_all

    flush_all()
    TaskRun.objects.all().delete()


def make_run(age_days: float, **fields: Any) -> TaskRun:
    moment = timezone.now() - timedelta(days=age_days)
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "task": "tests.testapp.tasks.add",
        "status": "SUCCESSFUL",
        "enqueued_at": moment,
        "finished_at": moment,
    }
    values.update(fields)
    return TaskRun.objects.create(**values)


def test_default_and_per_task_retention(settings: Any) -> None:
    settings.TASKTRAIL = {
        **settings.TASKTRAIL,
        "RETENTION": {"default": 10, "tests.testapp.tasks.echo": 2, "keep.forever": None},
    }
    old_default = make_run(20)
    young_default = make_run(5)
    old_echo = make_run(3, task="tests.testapp.tasks.echo")
    young_echo = make_run(1, task="tests.testapp.tasks.echo")
    forever = make_run(400, task="keep.forever")
    unfinished = make_run(50, status="RUNNING", finished_at=None)
    report = retention.prune()
    assert report.deleted == {"tests.testapp.tasks.echo": 1, "default": 1}
    left = set(TaskRun.objects.values_list("pk", flat=True))
    assert left == {young_default.id, young_echo.id, forever.id, unfinished.id}
    assert old_default.id not in left and old_echo.id not in left


def test_a_run_that_finished_recently_is_kept(settings: Any) -> None:
    settings.TASKTRAIL = {**settings.TASKTRAIL, "RETENTION": {"default": 7}}
    long_job = make_run(30, finished_at=timezone.now() - timedelta(days=1))
    assert retention.prune().total == 0
    assert TaskRun.objects.filter(pk=long_job.pk).exists()


def test_batches_are_bounded(settings: Any) -> None:
    settings.TASKTRAIL = {**settings.TASKTRAIL, "RETENTION": {"default": 1}}
    for _ in range(25):
        make_run(5)
    batches: list[int] = []
    with CaptureQueriesContext(connection) as queries:
        report = retention.prune(batch_size=10, on_batch=lambda label, n: batches.append(n))
    assert report.total == 25
    assert batches == [10, 10, 5]
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert all("LIMIT 10" in sql for sql in selects if "tasktrail_taskrun" in sql)


def test_dry_run_deletes_nothing(settings: Any) -> None:
    settings.TASKTRAIL = {**settings.TASKTRAIL, "RETENTION": {"default": 1}}
    old = make_run(5)
    assert retention.prune(dry_run=True).total == 1
    assert TaskRun.objects.filter(pk=old.pk).exists()


def test_bad_retention_is_a_clear_error(settings: Any) -> None:
    settings.TASKTRAIL = {**settings.TASKTRAIL, "RETENTION": {"default": "30 days"}}
    with pytest.raises(ImproperlyConfigured, match="number of days or None"):
        retention.prune()


def test_prune_task_is_registered_and_scheduled_on_beat_start(tmp_path: Any) -> None:
    from celery import beat, signals

    from tests.celery_app import app

    assert retention.PRUNE_TASK in app.tasks
    service = beat.Service(app, schedule_filename=str(tmp_path / "beat-schedule"))
    try:
        signals.beat_init.send(sender=service)
        entry = service.scheduler.schedule[retention.PRUNE_TASK]
        assert entry.task == retention.PRUNE_TASK
        assert entry.schedule.run_every == timedelta(seconds=3600)
    finally:
        service.scheduler.close()


def test_no_schedule_when_disabled(settings: Any, tmp_path: Any) -> None:
    from celery import beat, signals

    from tests.celery_app import app

    settings.TASKTRAIL = {**settings.TASKTRAIL, "PRUNE_INTERVAL": None}
    service = beat.Service(app, schedule_filename=str(tmp_path / "beat-schedule"))
    try:
        signals.beat_init.send(sender=service)
        assert retention.PRUNE_TASK not in service.scheduler.schedule
    finally:
        service.scheduler.close()
