"""A task id published again is a new run under the same id (a new generation), and
writes are ordered by the Redis server's clock, never by the writing host's."""

from __future__ import annotations

import time
import uuid

import pytest

from tasktrail import Status, get_run, keys
from tasktrail.flusher import flush_all
from tasktrail.models import TaskRun
from tasktrail.transitions import apply, stamp, submit
from tests.helpers import stored_events

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_key_prefix")]


def _publish(run_id: str, *, fresh: bool = True, owner: str = "") -> int:
    create = {"id": run_id, "task": "t", "enqueued_at": stamp(time.time())}
    if owner:
        create["owner"] = owner
    applied = submit(
        run_id,
        "publish",
        status=Status.READY,
        create=create,
        flags="f" if fresh else "",
        events=[("state", {"run": run_id})],
    )
    assert applied.ok
    return applied.generation


def _finish(run_id: str, generation: int | None, result: str) -> bool:
    return (
        apply(
            run_id,
            "finish",
            attempt=1,
            status=Status.SUCCESSFUL,
            generation=generation,
            fields={"result": result, "finished_at": stamp(time.time())},
        )
        is not None
    )


def test_a_finished_id_published_again_is_a_new_run_whose_events_go_on() -> None:
    run_id = str(uuid.uuid4())
    assert _publish(run_id) == 1
    apply(run_id, "start", attempt=1, status=Status.RUNNING, generation=1,
          fields={"started_at": stamp(time.time())})  # fmt: skip
    assert _finish(run_id, 1, '"first"')
    first_events = stored_events(run_id)

    assert _publish(run_id) == 2
    run = get_run(run_id)
    assert (run.status, run.result, run.generation, run.started_at) == (
        Status.READY, None, 2, None,
    )  # fmt: skip
    # The event log goes on with higher ids, so a client resuming from the first run's
    # last event gets the second run's events, in order.
    events = stored_events(run_id)
    assert events[: len(first_events)] == first_events
    assert events[len(first_events)][2]["generation"] == 2
    assert apply(run_id, "start", attempt=1, status=Status.RUNNING, generation=2)
    assert _finish(run_id, 2, '"second"')
    assert get_run(run_id).result == "second"


def test_an_earlier_generation_still_running_cannot_touch_the_new_one() -> None:
    """The seeds' reprocess: ``apply_async(task_id=str(obj.uuid))`` while the first
    execution still runs. Celery runs both; each writes only to its own generation."""
    run_id = str(uuid.uuid4())
    _publish(run_id)
    apply(run_id, "start", attempt=1, status=Status.RUNNING, generation=1)
    assert _publish(run_id) == 2  # published again while the first runs
    stale = submit(run_id, "progress", attempt=1, generation=1, fields={"p_current": "5"})
    assert not stale.ok and not stale.cancel_requested  # refused, but not a cancel
    assert not _finish(run_id, 1, '"stale"')
    assert get_run(run_id).status == Status.READY
    assert apply(run_id, "start", attempt=1, status=Status.RUNNING, generation=2)
    assert _finish(run_id, 2, '"fresh"')
    assert get_run(run_id).result == "fresh"


def test_retry_and_replacement_publishes_continue_the_same_generation() -> None:
    run_id = str(uuid.uuid4())
    _publish(run_id)
    apply(run_id, "start", attempt=1, status=Status.RUNNING, generation=1)
    retried = submit(run_id, "publish", status=Status.READY, generation=1)  # retries > 0
    assert (retried.ok, retried.generation) == (True, 1)
    assert get_run(run_id).status == Status.RETRYING
    apply(run_id, "start", attempt=2, status=Status.RUNNING, generation=1)
    replaced = submit(run_id, "publish", status=Status.READY, flags="r")
    assert (replaced.ok, replaced.generation) == (True, 1)
    assert get_run(run_id).status == Status.RUNNING


def test_the_database_row_of_a_new_generation_keeps_nothing_of_the_old() -> None:
    run_id = str(uuid.uuid4())
    _publish(run_id, owner="1")
    apply(run_id, "start", attempt=1, status=Status.RUNNING, generation=1,
          fields={"started_at": stamp(time.time())})  # fmt: skip
    _finish(run_id, 1, '"first"')
    flush_all()
    _publish(run_id)
    flush_all()
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.generation, row.started_at, row.result, row.owner_id) == (
        Status.READY, 2, None, None, None,
    )  # fmt: skip


@pytest.mark.parametrize("skew", [5.0, -5.0])
def test_a_host_whose_clock_is_off_cannot_order_writes(skew: float) -> None:
    """Versions come from Redis's TIME: a finish stamped 5 s before the start (a worker
    whose clock is behind) still wins in the database."""
    run_id = str(uuid.uuid4())
    _publish(run_id)
    apply(run_id, "start", attempt=1, status=Status.RUNNING, now=time.time() + skew)
    flush_all()
    apply(
        run_id, "finish", attempt=1, status=Status.SUCCESSFUL, now=time.time() - skew,
        fields={"result": "1", "finished_at": stamp(time.time() - skew)},
    )  # fmt: skip
    flush_all()
    assert TaskRun.objects.get(pk=run_id).status == Status.SUCCESSFUL


def test_a_record_rebuilt_by_a_host_whose_clock_is_behind_still_reaches_the_row() -> None:
    """The hot record is lost (Redis restarted empty) and rebuilt by a worker 5 s
    behind: its finish must still win over the row the flusher wrote before."""
    from tests.helpers import client

    run_id = str(uuid.uuid4())
    _publish(run_id)
    apply(run_id, "start", attempt=1, status=Status.RUNNING)
    flush_all()
    client().delete(f"{keys.prefix()}:run:{run_id}")  # as after an empty restart
    behind = time.time() - 5
    apply(
        run_id, "finish", attempt=1, status=Status.SUCCESSFUL, now=behind,
        create={"id": run_id}, fields={"result": "1", "finished_at": stamp(behind)},
    )  # fmt: skip
    flush_all()
    assert TaskRun.objects.get(pk=run_id).status == Status.SUCCESSFUL
