"""Runs no worker delivers: eager runs (users' test suites) reach the database at once,
and runs whose message the broker lost are settled by the sweep, not left READY."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import chain
from django.conf import settings
from django.test import override_settings
from kombu.exceptions import EncodeError

from tasktrail import Status, enqueue, get_run
from tasktrail.models import TaskRun
from tasktrail.sweep import sweep
from tests.celery_app import app
from tests.testapp.tasks import add, always_fails

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_key_prefix")]


@pytest.fixture
def eager(django_capture_on_commit_callbacks: Any) -> Iterator[Any]:
    """``CELERY_TASK_ALWAYS_EAGER`` in a test wrapped in a transaction, as users' suites
    run: enqueue() publishes on commit, so the test runs the commit callbacks (Django's
    ``captureOnCommitCallbacks(execute=True)``)."""
    app.conf.task_always_eager = True
    try:
        yield lambda: django_capture_on_commit_callbacks(execute=True)
    finally:
        app.conf.task_always_eager = False


def test_an_eager_run_has_its_database_row_when_enqueue_returns(eager: Any) -> None:
    with eager():
        run = enqueue(add, 2, 3)
    row = TaskRun.objects.get(pk=run.id)
    assert (row.status, row.result, row.attempts) == (Status.SUCCESSFUL, 5, 1)
    failed = add.apply(args=(1, "x"))  # Task.apply(): eager without the setting, too
    row = TaskRun.objects.get(pk=failed.id)
    assert (row.status, row.error_type) == (Status.FAILED, "builtins.TypeError")


def test_an_eager_id_used_again_is_a_new_generation(eager: Any) -> None:
    run_id = str(uuid.uuid4())
    with eager():
        enqueue(add, 1, 1, task_id=run_id)
    with eager():
        enqueue(add, 2, 2, task_id=run_id)
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.result, row.generation) == (Status.SUCCESSFUL, 4, 2)


def test_an_eager_chain_records_each_step_under_its_own_id(eager: Any) -> None:
    steps = chain(add.s(1, 1), add.s(10), add.s(100))
    steps.freeze()  # the ids a worker would run the steps under
    with eager():
        first = enqueue(steps)
    rows = {r.id: r for r in TaskRun.objects.filter(pk__in=[t.id for t in steps.tasks])}
    assert len(rows) == 3
    assert rows[first.id].result == 2  # the handle is the first step's run, recorded
    assert sorted(r.result for r in rows.values()) == [2, 12, 112]
    assert all(r.status == Status.SUCCESSFUL for r in rows.values())


@pytest.mark.usefixtures("eager")
def test_an_eager_retrying_task_ends_failed_with_every_attempt_counted() -> None:
    result = always_fails.apply(args=("no",))
    run = get_run(result.id)
    assert (run.status, run.attempts) == (Status.FAILED, 3)
    assert TaskRun.objects.get(pk=result.id).status == Status.FAILED


def _broker() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def _sweep_now() -> int:
    redis.Redis.from_url(settings.TASKTRAIL["REDIS_URL"]).delete(
        f"{settings.TASKTRAIL['KEY_PREFIX']}:sweeping"
    )
    with override_settings(TASKTRAIL={**settings.TASKTRAIL, "UNDELIVERED_AFTER": 1}):
        return sweep(now=time.time() + 2)


def _queue() -> str:
    return f"{settings.TASKTRAIL['KEY_PREFIX']}-sweep-{uuid.uuid4().hex[:6]}"


def test_a_publish_that_failed_is_settled_never_delivered() -> None:
    run_id = str(uuid.uuid4())
    with pytest.raises(EncodeError):
        add.apply_async(args=(object(), 1), task_id=run_id, queue=_queue())
    assert get_run(run_id).status == Status.READY  # recorded before kombu failed
    assert _sweep_now() == 1
    run = get_run(run_id)
    assert run.status == Status.FAILED
    assert run.error is not None and run.error.reason == "never_delivered"


def test_a_purged_queue_settles_its_runs_and_a_held_message_is_left_alone() -> None:
    queue = _queue()
    purged = add.apply_async(args=(1, 1), queue=queue)
    _broker().delete(queue)  # what `celery purge` does to it
    kept_queue, later_queue = _queue(), _queue()
    kept = add.apply_async(args=(1, 1), queue=kept_queue)
    later = add.apply_async(args=(1, 1), queue=later_queue, countdown=3600)
    _broker().delete(later_queue)  # gone too, but due in an hour: not judged yet
    try:
        assert _sweep_now() == 1
        assert get_run(purged.id).status == Status.FAILED
        assert get_run(kept.id).status == Status.READY  # the broker still holds it
        assert get_run(later.id).status == Status.READY
    finally:
        _broker().delete(kept_queue)


def test_the_sweep_reads_a_broker_with_kombus_global_keyprefix() -> None:
    """kombu prefixes LLEN but not LRANGE or HSCAN: a held message is still found."""
    from celery import current_app

    queue = _queue()
    held = add.apply_async(args=(1, 1), queue=queue)
    broker = _broker()
    broker.lpush(f"sweep-pfx:{queue}", broker.lpop(queue) or b"")  # where a prefix puts it
    options = current_app.conf.broker_transport_options
    current_app.conf.broker_transport_options = {**options, "global_keyprefix": "sweep-pfx:"}
    try:
        assert _sweep_now() == 0
        assert get_run(held.id).status == Status.READY
    finally:
        current_app.conf.broker_transport_options = options
        broker.delete(f"sweep-pfx:{queue}")
