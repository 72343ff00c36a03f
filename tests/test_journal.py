"""The journal of finished records (src/tasktrail/journal.py): what it writes after Redis
restarts empty never moves a row backwards, and nothing but a real restart sets it off.

An earlier journal replayed part of a run's history into Redis, and the flusher wrote
those records over newer rows (a RUNNING run became READY); these tests hold the
replacement to the flusher's rule instead: a newer row wins.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from scripts.services import PrivateRedis

from tasktrail import journal
from tasktrail.flusher import row_of, upsert
from tasktrail.models import TaskRun
from tests.conftest import _free_port

pytestmark = pytest.mark.django_db(transaction=True)


def _record(run_id: str, status: str, version: int, **extra: str) -> str:
    return json.dumps(
        {"id": run_id, "task": "tests.job", "status": status, "version": str(version),
         "attempts": "1", "enqueued_at": "1700000000.0", **extra}
    )  # fmt: skip


def _kept(url: str, run_id: str, record: str) -> journal.Kept:
    return journal.Kept(0.0, url, "tt-journal", run_id, record, None)


@pytest.fixture(autouse=True)
def no_watcher(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The tests call ``check()`` themselves: no watcher thread racing them."""
    monkeypatch.setattr(journal, "_watcher", object())
    monkeypatch.setattr(journal, "enabled", True)
    yield
    journal._entries.clear()
    journal._identities.clear()


@pytest.fixture
def private(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, _free_port())
    server.start()
    yield server
    server.kill()


def test_a_kept_record_never_overwrites_a_newer_row() -> None:
    run_id = str(uuid.uuid4())
    newer = json.loads(_record(run_id, "RUNNING", 2_000, worker="w@h"))
    upsert([row_of(newer)])
    journal.restore([_kept("redis://unused", run_id, _record(run_id, "SUCCESSFUL", 1_000))])
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.version) == ("RUNNING", 2_000)


def test_the_newest_kept_record_of_a_run_wins_over_an_older_row() -> None:
    run_id = str(uuid.uuid4())
    upsert([row_of(json.loads(_record(run_id, "READY", 500)))])
    journal.restore(
        [
            _kept("redis://unused", run_id, _record(run_id, "FAILED", 1_500, error_type="E")),
            _kept("redis://unused", run_id, _record(run_id, "SUCCESSFUL", 1_000)),
        ]
    )
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.version, row.error_type) == ("FAILED", 1_500, "E")


def test_only_a_restart_sets_it_off_not_keys_that_were_deleted(private: PrivateRedis) -> None:
    run_id = str(uuid.uuid4())
    client = redis.Redis.from_url(private.url)
    journal.remember(private.url, "tt-journal", run_id, _record(run_id, "SUCCESSFUL", 10), None)
    journal.check()  # learns who the server is
    client.flushdb()  # keys gone, same server: the flusher's rows are not in doubt
    assert journal.check() == 0
    assert not TaskRun.objects.filter(pk=run_id).exists()
    private.kill()
    private.start()  # the same address, another server, empty
    assert journal.check() == 1
    assert TaskRun.objects.get(pk=run_id).status == "SUCCESSFUL"


def test_a_database_refusal_keeps_the_records_for_the_next_round(
    private: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasktrail import flusher

    run_id = str(uuid.uuid4())
    journal.remember(private.url, "tt-journal", run_id, _record(run_id, "SUCCESSFUL", 10), None)
    journal.check()
    private.kill()
    private.start()

    def refuse(rows: object) -> None:
        raise flusher.DatabaseError("the database is down")

    monkeypatch.setattr(flusher, "write_rows", refuse)
    with pytest.raises(flusher.DatabaseError):
        journal.check()
    monkeypatch.undo()
    assert journal.check() == 1  # the restart is still known, the record still kept
    assert TaskRun.objects.get(pk=run_id).status == "SUCCESSFUL"


def test_a_promoted_replicas_older_state_is_replaced_and_a_newer_one_kept(
    private: PrivateRedis,
) -> None:
    """After a failover the new master may hold an older state of a finished run: it is
    replaced (else reads show it, and the sweep would settle it with a newer version over
    the restored row); a newer state there is left alone."""
    from tasktrail import keys

    client = redis.Redis.from_url(private.url)
    older, newer = str(uuid.uuid4()), str(uuid.uuid4())
    client.hset(keys.run_hash(older, "tt-journal"), mapping={"status": "READY", "version": "5"})
    client.zadd(keys.waiting_set("tt-journal"), {older: 1.0})
    client.hset(keys.run_hash(newer, "tt-journal"), mapping={"status": "RUNNING", "version": "99"})
    journal.restore(
        [
            _kept(private.url, older, _record(older, "SUCCESSFUL", 10)),
            _kept(private.url, newer, _record(newer, "SUCCESSFUL", 10)),
        ]
    )
    assert client.hget(keys.run_hash(older, "tt-journal"), "status") == b"SUCCESSFUL"
    assert client.ttl(keys.run_hash(older, "tt-journal")) > 0
    assert client.zscore(keys.waiting_set("tt-journal"), older) is None
    assert client.hget(keys.run_hash(newer, "tt-journal"), "status") == b"RUNNING"


def test_records_the_flusher_has_not_written_outlive_the_window(
    private: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During a database outage a finished run stays in the flusher's dirty set, and its
    record stays in the journal past the window: Redis may still restart before the
    database is back."""
    from tasktrail import keys

    client = redis.Redis.from_url(private.url)
    written, unwritten = str(uuid.uuid4()), str(uuid.uuid4())
    client.zadd(keys.dirty_set("tt-journal"), {unwritten: 1.0})
    for run_id in (written, unwritten):
        journal.remember(private.url, "tt-journal", run_id, _record(run_id, "FAILED", 3), None)
    monkeypatch.setattr(journal, "window", lambda: 0.0)
    journal.check()
    assert [entry.run_id for entry in journal._entries] == [unwritten]
