"""The write-behind flusher: batches, version guard, fields a later record lacks."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tasktrail import Status, keys
from tasktrail.flusher import failure_counts, flush_all, flush_error, row_of, upsert
from tasktrail.models import TaskRun
from tasktrail.transitions import apply, stamp

# Runs made here by hand are this test's alone (see conftest.own_key_prefix).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_key_prefix")]


def test_upsert_never_writes_an_older_version_over_a_newer_one() -> None:
    run_id = str(uuid.uuid4())
    base = {
        "id": run_id,
        "task": "t",
        "enqueued_at": stamp(time.time()),
        "owner": "",
        "args": "[1]",
    }
    upsert([row_of({**base, "status": "SUCCESSFUL", "version": "5", "result": "42"})])
    upsert([row_of({**base, "status": "RUNNING", "version": "3"})])
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.result, row.version) == ("SUCCESSFUL", 42, 5)


def test_a_record_first_seen_at_start_keeps_what_the_row_knew() -> None:
    run_id = str(uuid.uuid4())
    enqueued = stamp(1_700_000_000.0)
    upsert(
        [
            row_of(
                {
                    "id": run_id,
                    "task": "t",
                    "enqueued_at": enqueued,
                    "owner": "3",
                    "args": "[7]",
                    "version": "1",
                }
            )
        ]
    )
    # A later record without owner or arguments (say, rebuilt at start) must not erase them.
    upsert([row_of({"id": run_id, "task": "t", "status": "RUNNING", "version": "2"})])
    row = TaskRun.objects.get(pk=run_id)
    assert (row.owner_id, row.args, row.status) == (3, [7], "RUNNING")
    assert row.enqueued_at == datetime.fromtimestamp(1_700_000_000.0, tz=UTC)


def test_a_later_record_fills_what_an_earlier_write_left_empty() -> None:
    """A row begun without a task or queue (the outage fallback, a record rebuilt after
    Redis forgot it) takes them from the first record that has them."""
    run_id = str(uuid.uuid4())
    upsert([row_of({"id": run_id, "status": "RUNNING", "version": "1"})])
    assert TaskRun.objects.get(pk=run_id).task == ""
    upsert([row_of({"id": run_id, "task": "t", "queue": "q", "status": "RUNNING", "version": "2"})])
    row = TaskRun.objects.get(pk=run_id)
    assert (row.task, row.queue) == ("t", "q")


def test_flush_writes_due_runs_in_batches_and_releases_them() -> None:
    ids = []
    for _ in range(25):
        run_id = str(uuid.uuid4())
        apply(
            run_id,
            "publish",
            status=Status.READY,
            create={"id": run_id, "task": "batch", "enqueued_at": stamp(time.time())},
        )
        ids.append(run_id)
    written = flush_all(limit=10)
    assert written >= 25
    assert TaskRun.objects.filter(pk__in=ids).count() == 25
    assert (
        flush_all() == 0 or not TaskRun.objects.filter(pk__in=ids).exclude(status="READY").exists()
    )
    apply(ids[0], "start", attempt=1, status=Status.RUNNING)
    flush_all()
    assert TaskRun.objects.get(pk=ids[0]).status == "RUNNING"


@pytest.mark.parametrize("current", [2.5, float("nan")])
def test_every_kind_of_column_survives_the_batch_statement(current: float) -> None:
    # PostgreSQL sends a batch as one JSON document; a NaN (not JSON) takes the
    # VALUES path instead. Either way the row must hold what the hot record held.
    run_id = str(uuid.uuid4())
    moment = 1_700_000_000.123456
    upsert(
        [
            row_of(
                {
                    "id": run_id,
                    "task": "tests.testapp.tasks.add",
                    "status": "SUCCESSFUL",
                    "enqueued_at": stamp(moment),
                    "finished_at": stamp(moment + 1),
                    "p_current": repr(current),
                    "p_total": "10",
                    "p_message": 'ünïcode "quoted" \\ line\nbreak',
                    "result": '"a string"',
                    "kwargs": '{"nested": [1, {"deep": null}], "flag": true}',
                    "args_incomplete": "1",
                    "attempts": "3",
                    "version": "9",
                }
            ),
            row_of({"id": str(uuid.uuid4()), "task": "t", "status": "READY", "version": "1"}),
        ]
    )
    row = TaskRun.objects.get(pk=run_id)
    assert row.enqueued_at == datetime.fromtimestamp(moment, tz=UTC)
    assert row.finished_at == datetime.fromtimestamp(moment + 1, tz=UTC)
    assert row.result == "a string"
    assert row.kwargs == {"nested": [1, {"deep": None}], "flag": True}
    assert row.args is None
    assert row.progress_message == 'ünïcode "quoted" \\ line\nbreak'
    assert (row.progress_total, row.attempts, row.arguments_incomplete) == (10.0, 3, True)
    if current == current:
        assert row.progress_current == 2.5
    else:  # SQLite stores NaN as NULL
        assert row.progress_current is None or row.progress_current != row.progress_current


def test_the_dirty_set_drains_once_runs_are_written() -> None:
    """Released runs leave the set; a run changed after its lease stays due."""
    from tests.helpers import client

    ids = []
    for _ in range(30):
        run_id = str(uuid.uuid4())
        apply(run_id, "publish", status=Status.READY,
              create={"id": run_id, "task": "drain", "enqueued_at": stamp(time.time())})  # fmt: skip
        ids.append(run_id)
    flush_all(limit=7)
    left: Any = client().zrange(keys.dirty_set(), 0, -1)
    assert not {i.decode() for i in left} & set(ids)


def test_one_run_the_database_refuses_never_blocks_its_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A NaN result (PostgreSQL refuses it as JSON) and a record the database refuses
    whatever its JSON (a negative attempt count breaks a CHECK constraint): every
    other run of the batch is written, the NaN run without its JSON values."""
    from tests.helpers import client

    ids = []
    for _ in range(6):
        run_id = str(uuid.uuid4())
        apply(run_id, "publish", status=Status.READY,
              create={"id": run_id, "task": "poison", "enqueued_at": stamp(time.time())})  # fmt: skip
        ids.append(run_id)
    nan_run, broken_run = ids[0], ids[1]
    apply(nan_run, "start", attempt=1, status=Status.RUNNING)
    apply(nan_run, "finish", attempt=1, status=Status.SUCCESSFUL, fields={"result": "NaN"})
    client().hset(f"{keys.prefix()}:run:{broken_run}", "attempts", "-5")
    with caplog.at_level(logging.ERROR, logger="tasktrail"):
        flush_all()
    rows = {row.id: row for row in TaskRun.objects.filter(pk__in=ids)}
    assert set(rows) == set(ids) - {broken_run}
    assert rows[nan_run].status == Status.SUCCESSFUL
    left: Any = client().zrange(keys.dirty_set(), 0, -1)
    assert broken_run.encode() not in left  # reported, not retried for ever
    # Reported: a log line naming each run, a counter, a mark the dashboard shows.
    logged = caplog.text
    assert nan_run in logged and broken_run in logged
    assert rows[nan_run].flush_error.startswith("result not stored: ")
    assert all(rows[i].flush_error == "" for i in ids[2:])
    assert flush_error(broken_run).startswith("not written to the database: ")
    assert failure_counts() == {"values_dropped": 1, "not_written": 1}
    from tasktrail.metrics import render

    exposed = render()[0].decode()
    assert 'tasktrail_flush_failures_total{kind="values_dropped"} 1.0' in exposed
    assert 'tasktrail_flush_failures_total{kind="not_written"} 1.0' in exposed


def test_a_whole_write_clears_the_mark() -> None:
    run_id = str(uuid.uuid4())
    apply(run_id, "publish", status=Status.READY,
          create={"id": run_id, "task": "mark", "enqueued_at": stamp(time.time())})  # fmt: skip
    apply(run_id, "start", attempt=1, status=Status.RUNNING, fields={"result": "NaN"})
    flush_all()
    assert flush_error(run_id)
    apply(run_id, "finish", attempt=1, status=Status.SUCCESSFUL, fields={"result": "7"})
    flush_all()
    row = TaskRun.objects.get(pk=run_id)
    assert (row.result, row.flush_error, flush_error(run_id)) == (7, "", "")


def test_the_dashboard_marks_a_run_not_fully_saved(client: Any, admin_user: Any) -> None:
    run_id = str(uuid.uuid4())
    apply(run_id, "publish", status=Status.READY,
          create={"id": run_id, "task": "mark", "enqueued_at": stamp(time.time())})  # fmt: skip
    apply(run_id, "finish", attempt=1, status=Status.FAILED, fields={"result": "Infinity"})
    flush_all()
    client.force_login(admin_user)
    page = client.get(f"/ops/runs/{run_id}/").content.decode()
    assert "data-flush-error" in page and "Not fully saved to the database" in page
    assert "result not stored" in page


@pytest.mark.parametrize("op", ["finish", "progress", "start"])
def test_a_record_rebuilt_after_redis_forgot_it_reaches_the_database(op: str) -> None:
    """Redis restarted empty under a running task (its hash is gone): whichever write
    rebuilds the record, the record names its run and the flusher writes it (issue 11,
    item 3)."""
    from tests.helpers import client

    run_id = str(uuid.uuid4())
    apply(run_id, "publish", status=Status.READY,
          create={"id": run_id, "task": "forgot", "enqueued_at": stamp(time.time())})  # fmt: skip
    apply(run_id, "start", attempt=1, status=Status.RUNNING)
    flush_all()
    client().delete(f"{keys.prefix()}:run:{run_id}")  # what an empty restart leaves
    status = {"finish": Status.SUCCESSFUL, "start": Status.RUNNING}.get(op, "")
    apply(run_id, op, attempt=1, status=status, fields={"result": "3"} if status else {},
          create={"task": "forgot"})  # fmt: skip
    assert client().hget(f"{keys.prefix()}:run:{run_id}", "id") == run_id.encode()
    flush_all()
    row = TaskRun.objects.get(pk=run_id)
    assert row.status == (Status.SUCCESSFUL if op == "finish" else Status.RUNNING)
    assert row.task == "forgot"


def test_a_hot_record_without_an_id_is_written_under_the_leased_id() -> None:
    """Records written by earlier versions lack the field: never skipped for that."""
    from tests.helpers import client

    run_id = str(uuid.uuid4())
    apply(run_id, "publish", status=Status.READY,
          create={"id": run_id, "task": "noid", "enqueued_at": stamp(time.time())})  # fmt: skip
    client().hdel(f"{keys.prefix()}:run:{run_id}", "id")
    apply(run_id, "finish", attempt=1, status=Status.SUCCESSFUL, fields={"result": "1"})
    flush_all()
    assert TaskRun.objects.get(pk=run_id).status == Status.SUCCESSFUL


def test_nul_characters_in_text_and_json_reach_the_database_replaced() -> None:
    # PostgreSQL refuses NUL in text and jsonb: a run whose error or result holds one
    # must still reach the database, whole, never be dropped once it is final.
    run_id = str(uuid.uuid4())
    apply(run_id, "publish", status=Status.READY,
          create={"id": run_id, "task": "nul", "enqueued_at": stamp(time.time())})  # fmt: skip
    apply(run_id, "start", attempt=1, status=Status.RUNNING)
    apply(run_id, "finish", attempt=1, status=Status.FAILED,
          fields={"error_type": "builtins.ValueError", "error_message": "bad\x00byte",
                  "result": '{"name": "a\\u0000b", "k\\u0000": ["\\u0000"]}'})  # fmt: skip
    flush_all()
    row = TaskRun.objects.get(pk=run_id)
    assert row.status == Status.FAILED
    assert row.error_message == "bad\ufffdbyte"
    assert row.result == {"name": "a\ufffdb", "k\ufffd": ["\ufffd"]}
    assert row.flush_error == ""


def test_a_flush_failing_round_after_round_logs_once_a_minute(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A database outage fails every round (one a second): the first failure carries its
    traceback, then one line a minute, then one line when it works again; a 30 s outage
    used to print 30 tracebacks per worker process."""
    from django.db import OperationalError

    from tasktrail import flusher

    clock = [1000.0]
    monkeypatch.setattr(flusher.time, "monotonic", lambda: clock[0])
    loop = flusher.Flusher()
    with caplog.at_level(logging.WARNING, logger="tasktrail"):
        for _ in range(150):  # 150 rounds a second apart
            loop.failed(OperationalError("connection refused"))
            clock[0] += 1.0
        loop.recovered()
    lines = [r for r in caplog.records if "flush" in r.getMessage()]
    assert [bool(r.exc_info) for r in lines] == [True, False, False, False]
    assert "still failing after 61 rounds" in lines[1].getMessage()
    assert "works again after 150 failed rounds" in lines[3].getMessage()


def test_flush_all_writes_runs_another_flusher_has_leased() -> None:
    """A worker's flusher may hold a run under lease when a test or a management command
    flushes: flush_all returns only once every change made before it is in the database
    (the upsert keeps the newest version, so writing it twice is harmless)."""
    from tasktrail.flusher import _LEASE, LEASE_SECONDS
    from tests.helpers import client

    run_id = str(uuid.uuid4())
    apply(run_id, "publish", status=Status.READY,
          create={"id": run_id, "task": "leased", "enqueued_at": stamp(time.time())})  # fmt: skip
    # Another process leases it (and has not written it yet).
    client().eval(_LEASE, 1, keys.dirty_set(keys.prefix()), "0", repr(LEASE_SECONDS), 1,
                  keys.prefix(), run_id)  # fmt: skip
    flush_all()
    assert TaskRun.objects.get(pk=run_id).status == Status.READY
