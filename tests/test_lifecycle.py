"""A run's life against a real prefork worker: statuses, attempts, results, errors."""

from __future__ import annotations

import uuid

import pytest
from celery import chain, group
from django.db import transaction

from tasktrail import Status, enqueue, get_run
from tasktrail.exceptions import RunNotFound
from tasktrail.flusher import flush_all
from tasktrail.models import TaskRun
from tests.helpers import eventually, stored_events
from tests.testapp.tasks import add, always_fails, flaky, hot_loop, staged

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_run_is_ready_with_enqueued_at_before_any_worker_runs() -> None:
    # A queue nobody consumes: the run must still exist, READY, from the moment it is sent.
    run = enqueue(add, 1, 2, queue=f"nobody-{uuid.uuid4().hex}")
    stored = get_run(run.id)
    assert stored.status == Status.READY
    assert stored.enqueued_at is not None
    assert stored.started_at is None
    assert stored.args == [1, 2]


def test_success_stores_the_result(worker: object) -> None:
    run = enqueue(add, 2, 3).wait(timeout=20)
    assert run.status == Status.SUCCESSFUL
    assert run.result == 5
    assert run.attempts == 1
    assert run.started_at is not None and run.finished_at is not None
    assert run.enqueued_at is not None and run.enqueued_at <= run.started_at <= run.finished_at
    assert run.worker


def test_two_failures_then_success_shows_retrying_then_successful(worker: object) -> None:
    run = enqueue(flaky, uuid.uuid4().hex, 2).wait(timeout=30)
    assert run.status == Status.SUCCESSFUL
    assert run.attempts == 3
    assert run.result == "succeeded after 3 attempts"
    states = [
        (data["status"], data["attempts"], data)
        for _, kind, data in stored_events(run.id)
        if kind == "state"
    ]
    statuses = [s for s, _, _ in states]
    assert statuses == [
        "READY", "RUNNING", "RETRYING", "RETRYING", "RUNNING", "RETRYING", "RETRYING",
        "RUNNING", "SUCCESSFUL",
    ]  # fmt: skip
    retrying = [data for status, _, data in states if status == "RETRYING" and data.get("error")]
    assert [d["attempts"] for d in retrying] == [1, 2]
    assert all(d["next_attempt_at"] for d in retrying)
    assert retrying[0]["error"]["type"] == "builtins.ConnectionError"


def test_exhausted_retries_end_failed_with_the_error(worker: object) -> None:
    run = enqueue(always_fails, "disk full").wait(timeout=30)
    assert run.status == Status.FAILED
    assert run.attempts == 3  # the first try and max_retries=2
    assert run.error is not None
    assert run.error.type == "builtins.ValueError"
    assert run.error.message == "disk full"
    assert "ValueError: disk full" in run.error.traceback


def test_run_enqueued_in_a_rolled_back_transaction_does_not_exist(worker: object) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        run = enqueue(add, 4, 4)
        raise Abort
    with pytest.raises(RunNotFound):
        get_run(run.id)
    committed = None
    with transaction.atomic():
        committed = enqueue(add, 5, 5)
        with pytest.raises(RunNotFound):
            get_run(committed.id)  # not before the commit
    assert committed.wait(timeout=20).result == 10
    with pytest.raises(RunNotFound):
        get_run(run.id)


def test_chain_and_group_records_link_parent_and_root(worker: object) -> None:
    result = chain(add.s(1, 2), add.s(10)).apply_async()
    last = eventually(lambda: _finished(result.id), timeout=20)
    first = get_run(result.parent.id)
    assert last.result == 13
    assert last.parent_id == first.id
    assert last.root_id == first.id == first.root_id

    batch = group(add.s(i, i) for i in range(3)).apply_async()
    members = [eventually(lambda r=r: _finished(r.id), timeout=20) for r in batch.results]
    assert {m.group_id for m in members} == {batch.id}
    assert sorted(m.result for m in members) == [0, 2, 4]


def _finished(run_id: str) -> object | None:
    try:
        run = get_run(run_id)
    except RunNotFound:
        return None
    return run if run.is_finished else None


def test_staged_progress_and_the_record_reaches_the_database(worker: object) -> None:
    run = enqueue(staged, "report").wait(timeout=20)
    assert run.progress.percent == 100.0
    assert run.progress.message == "done"
    progress = [data["percent"] for _, kind, data in stored_events(run.id) if kind == "progress"]
    assert progress[-1] == 100.0
    feed = [
        (data["level"], data["message"])
        for _, kind, data in stored_events(run.id)
        if kind == "feed"
    ]
    assert feed == [
        ("info", "parsing"),
        ("info", "analysing"),
        ("info", "indexing"),
        ("success", "done"),
    ]
    flush_all()
    row = eventually(lambda: TaskRun.objects.filter(pk=run.id, status=Status.SUCCESSFUL).first())
    assert row.result == "report"
    assert row.progress_current == 100.0
    assert row.attempts == 1


def test_hot_loop_progress_always_writes_the_last_value(worker: object) -> None:
    run = enqueue(hot_loop, 200_000).wait(timeout=60)
    assert run.status == Status.SUCCESSFUL
    assert run.progress.current == 200_000
    assert run.progress.percent == 100.0
    # Coalesced: far fewer events than calls.
    assert len([1 for _, kind, _ in stored_events(run.id) if kind == "progress"]) < 20_000


def test_enqueue_takes_a_chain_and_a_group_with_one_owner(worker: object) -> None:
    from django.contrib.auth.models import User

    from tasktrail.canvas import RunGroup

    user = User.objects.create_user(f"u-{uuid.uuid4().hex[:6]}")
    first = enqueue(chain(add.s(1, 2), add.s(10)), owner=user, subject="import:1")
    assert first.owner_id == str(user.pk)
    first.wait(timeout=20)
    family = eventually(lambda: _children(first.id))
    assert family.result == 13
    assert (family.owner_id, family.subject) == (str(user.pk), "import:1")  # inherited

    batch = enqueue(group(add.s(i, 1) for i in range(5)), owner=user)
    assert isinstance(batch, RunGroup)
    finished = batch.wait(timeout=30)
    assert sorted(r.result for r in finished) == [1, 2, 3, 4, 5]
    assert {r.owner_id for r in finished} == {str(user.pk)}
    assert batch.progress().percent == 100.0
    with pytest.raises(TypeError, match="too many positional arguments"):
        enqueue(group([add.s(1, 2, 3)]))


def _children(parent: str) -> object | None:
    """The finished run whose parent is ``parent`` (from the database: the flusher's view)."""
    flush_all()
    row = TaskRun.objects.filter(parent_id=parent).first()
    return get_run(row.id) if row is not None and get_run(row.id).is_finished else None
