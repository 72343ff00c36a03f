"""The conditional transition script: late or repeated signals never move a run back."""

from __future__ import annotations

import uuid

import pytest

from tasktrail import Status, get_run
from tasktrail.transitions import ANY_ATTEMPT, apply, stamp

# Runs made here by hand are this test's alone (see conftest.own_key_prefix).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_key_prefix")]


def _new_run() -> str:
    run_id = str(uuid.uuid4())
    apply(
        run_id,
        "publish",
        status=Status.READY,
        create={"id": run_id, "task": "t", "enqueued_at": stamp(1.0)},
    )
    return run_id


def test_finished_run_refuses_every_later_signal() -> None:
    run_id = _new_run()
    assert apply(run_id, "start", attempt=1, status=Status.RUNNING, fields={"worker": "w1"})
    assert apply(run_id, "finish", attempt=1, status=Status.SUCCESSFUL, fields={"result": "1"})
    for op, status in (
        ("start", Status.RUNNING),
        ("retry", Status.RETRYING),
        ("finish", Status.FAILED),
    ):
        assert apply(run_id, op, attempt=2, status=status) is None  # type: ignore[arg-type]
    assert apply(run_id, "progress", attempt=1, fields={"p_current": "5"}) is None
    assert apply(run_id, "feed", attempt=1, events=[("feed", {"message": "late"})]) is None
    assert apply(run_id, "publish", status=Status.READY) is None
    run = get_run(run_id)
    assert run.status == Status.SUCCESSFUL
    assert run.result == 1
    assert run.progress.current is None


def test_signal_from_an_earlier_attempt_is_refused() -> None:
    run_id = _new_run()
    apply(run_id, "start", attempt=1, status=Status.RUNNING)
    apply(run_id, "start", attempt=2, status=Status.RUNNING)
    # Attempt 1's retry signal arrives after attempt 2 started.
    assert apply(run_id, "retry", attempt=1, status=Status.RETRYING) is None
    assert apply(run_id, "finish", attempt=1, status=Status.FAILED) is None
    run = get_run(run_id)
    assert (run.status, run.attempts) == (Status.RUNNING, 2)


def test_republish_of_a_running_run_schedules_its_next_attempt() -> None:
    run_id = _new_run()
    apply(run_id, "start", attempt=1, status=Status.RUNNING)
    apply(run_id, "publish", status=Status.READY, fields={"next_attempt_at": stamp(2e9)})
    run = get_run(run_id)
    assert run.status == Status.RETRYING
    assert run.next_attempt_at is not None and run.next_attempt_at.year == 2033


def test_cancel_of_a_finished_run_is_refused_and_of_a_waiting_run_is_final() -> None:
    run_id = _new_run()
    assert apply(run_id, "cancel", attempt=ANY_ATTEMPT, status=Status.CANCELLED)
    assert get_run(run_id).status == Status.CANCELLED
    assert apply(run_id, "start", attempt=1, status=Status.RUNNING) is None
    assert apply(run_id, "cancel", attempt=ANY_ATTEMPT, status=Status.CANCELLED) is None


def test_new_run_inherits_owner_and_subject_from_its_parent() -> None:
    parent = str(uuid.uuid4())
    apply(
        parent,
        "publish",
        status=Status.READY,
        create={"id": parent, "task": "t", "owner": "7", "subject": "crawl:x"},
    )
    child = str(uuid.uuid4())
    apply(
        child, "publish", status=Status.READY, create={"id": child, "task": "t"}, parent_id=parent
    )
    run = get_run(child)
    assert (run.owner_id, run.subject) == ("7", "crawl:x")


def test_a_record_rebuilt_after_redis_lost_it_reads_merged_with_the_row() -> None:
    from tasktrail import keys
    from tasktrail.flusher import flush_all
    from tests.helpers import client

    run_id = _new_run()
    apply(run_id, "start", attempt=1, status=Status.RUNNING)
    flush_all()
    client().delete(keys.run_hash(run_id))  # Redis restarted empty
    assert apply(run_id, "progress", attempt=1, create={"id": run_id}, fields={"p_current": "5"})
    assert apply(run_id, "finish", attempt=1, status=Status.SUCCESSFUL, fields={"result": "3"})
    run = get_run(run_id)
    assert (run.task, run.status, run.result, run.progress.current) == (
        "t",
        Status.SUCCESSFUL,
        3,
        5.0,
    )
    assert run.enqueued_at is not None
    flush_all()
    from tasktrail.models import TaskRun

    row = TaskRun.objects.get(pk=run_id)
    assert (row.task, row.status, row.result) == ("t", "SUCCESSFUL", 3)  # a newer version: written


def test_a_cancelled_run_keeps_no_stale_fields_and_says_why() -> None:
    from tasktrail.actions import cancel

    run_id = _new_run()
    apply(run_id, "start", attempt=1, status=Status.RUNNING)
    apply(run_id, "retry", attempt=1, status=Status.RETRYING,
          fields={"next_attempt_at": stamp(9_999_999_999.0), "error_type": "builtins.OSError"})  # fmt: skip
    run = cancel(run_id)
    assert (run.status, run.next_attempt_at) == (Status.CANCELLED, None)
    assert run.error is not None and run.error.reason == "cancelled"
    assert run.as_json()["error"]["reason"] == "cancelled"


def test_a_successful_run_keeps_no_earlier_attempts_error() -> None:
    from tasktrail.outcomes import Origin, succeeded

    run_id = _new_run()
    apply(run_id, "start", attempt=1, status=Status.RUNNING)
    apply(run_id, "retry", attempt=1, status=Status.RETRYING,
          fields={"error_type": "builtins.OSError", "error_message": "boom"})  # fmt: skip
    apply(run_id, "start", attempt=2, status=Status.RUNNING)
    succeeded(run_id, 7, Origin(attempt=2))
    run = get_run(run_id)
    assert (run.status, run.result, run.error) == (Status.SUCCESSFUL, 7, None)


@pytest.mark.parametrize("then", ["started", "finished"])
def test_a_publish_deferred_by_an_outage_never_moves_back_the_run_it_opened(
    settings: object, then: str
) -> None:
    """The publisher's process keeps its publish while Redis is away and replays it when
    Redis answers; a worker may have started (or finished) the run from the broker's
    message before that replay. The replay fills in what the record lacks and changes
    nothing else: not RETRYING (a re-publish of a running run) and not a new run."""
    from tasktrail import transitions
    from tests.celery_app import app
    from tests.helpers import client
    from tests.testapp.tasks import add

    assert app.backend is not None  # made now, on the reachable Redis (it is per thread)
    assert isinstance(settings.TASKTRAIL, dict)  # type: ignore[attr-defined]
    reachable = settings.TASKTRAIL  # type: ignore[attr-defined]
    settings.TASKTRAIL = {**reachable, "REDIS_URL": "redis://127.0.0.1:27498/0"}  # type: ignore[attr-defined]
    run_id = add.apply_async((1, 2), queue=f"nobody-{uuid.uuid4().hex[:8]}").id
    assert transitions.pending() == 1  # deferred, and READY in the database meanwhile
    settings.TASKTRAIL = reachable  # type: ignore[attr-defined]
    transitions._down_until = 0.0
    # The worker's process (which holds none of this one's backlog) goes first.
    transitions._call(run_id, "start", attempt=1, status=Status.RUNNING,
                      create={"task": add.name, "started_at": stamp(2.0)})  # fmt: skip
    if then == "finished":
        transitions._call(run_id, "finish", attempt=1, status=Status.SUCCESSFUL,
                          fields={"result": "3"})  # fmt: skip
    with transitions._backlog_lock:
        transitions._replay()
    run = get_run(run_id)
    assert run.status == (Status.RUNNING if then == "started" else Status.SUCCESSFUL)
    assert (run.args, run.attempts) == ([1, 2], 1)  # the publish's arguments, kept
    assert client().hget(f"{settings.TASKTRAIL['KEY_PREFIX']}:run:{run_id}", "gen") == b"1"  # type: ignore[attr-defined]
