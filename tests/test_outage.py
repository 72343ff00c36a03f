"""Redis (the event log) dies mid-run and comes back empty: nothing is lost.

A private redis-server holds tasktrail's event log here, so killing it disturbs no one
else; the broker stays on the shared Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings
from django.test import override_settings
from scripts.services import PrivateRedis

from tasktrail import Status, enqueue, keys
from tasktrail.access import make_token
from tasktrail.flusher import flush_all
from tasktrail.models import TaskRun
from tests.celery_app import app as celery_app
from tests.conftest import ROOT, _free_port, _stop
from tests.helpers import eventually
from tests.sse_client import Event, read
from tests.testapp.tasks import numbered_feed, sleepy

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def outage_stack(
    request: pytest.FixtureRequest, tmp_path: Path, django_db_setup: None
) -> Iterator[tuple[PrivateRedis, str, dict[str, Any]]]:
    """A private Redis plus a worker and a uvicorn that use it for the event log (their
    environment gets the indirect parameter's variables, if any)."""
    private = PrivateRedis(tmp_path, _free_port())
    private.start()
    prefix = f"tt-outage-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ)
    env.update(
        TASKTRAIL_TEST_REDIS=private.url,
        TASKTRAIL_TEST_PREFIX=prefix,  # also the queue: the session's worker never sees these runs
        TASKTRAIL_TEST_DB_NAME=str(settings.DATABASES["default"]["NAME"]),
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]),
    )
    env.update(getattr(request, "param", {}))
    port = _free_port()
    logs = [open(tmp_path / name, "wb") for name in ("worker.log", "web.log")]  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "-P", "prefork", "-c", "2",
         "-l", "warning", "-n", f"{prefix}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=logs[0], stderr=subprocess.STDOUT,
    )  # fmt: skip
    web = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.asgi:application", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=logs[1], stderr=subprocess.STDOUT,
    )  # fmt: skip
    overrides = {**settings.TASKTRAIL, "REDIS_URL": private.url, "KEY_PREFIX": prefix}
    try:
        # This thread's Celery result backend stays on the session's Redis: made under
        # the override, it would follow the private one and die with it.
        assert celery_app.backend is not None
        with override_settings(TASKTRAIL=overrides):
            eventually(lambda: _listening(port), timeout=30)
            yield private, f"http://127.0.0.1:{port}", {"queue": prefix}
    finally:
        for process in (worker, web):
            _stop(process)
        if private.process is not None and private.process.poll() is None:
            private.kill()
        for log in logs:
            log.close()


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def test_redis_restart_mid_run_loses_no_record_and_the_stream_resumes_without_a_gap(
    outage_stack: tuple[PrivateRedis, str, dict[str, Any]],
) -> None:
    private, server, options = outage_stack
    count = 300
    run = enqueue(numbered_feed, count, 0.02, countdown=1, **options)  # ~6 s of feed lines
    url = f"{server}/tasks/{run.id}/events/?token={make_token(run.id)}"
    seen: list[int] = []
    final: list[str] = []

    def follow() -> None:
        """What EventSource does: on a closed stream, reconnect with the last event id."""
        last_id: str | None = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not final:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with httpx.stream("GET", url, headers=headers, timeout=10) as response:
                    if response.status_code != 200:
                        time.sleep(0.3)
                        continue
                    for item in read(response):
                        if not isinstance(item, Event):
                            continue
                        if item.id and item.id != "0-0":
                            last_id = item.id
                        if item.kind == "feed":
                            seen.append(int(item.data["message"].split()[1]))
                        if item.kind == "state" and item.data["status"] in ("SUCCESSFUL", "FAILED"):
                            final.append(item.data["status"])
            except httpx.HTTPError:
                pass
            time.sleep(0.3)

    client = threading.Thread(target=follow)
    client.start()
    eventually(lambda: len(seen) >= 60, timeout=20)
    private.kill()
    time.sleep(0.5)
    # While Redis is down the status API answers from the database.
    during = httpx.get(
        f"{server}/tasks/{run.id}/", params={"token": make_token(run.id)}, timeout=10
    )
    assert during.status_code == 200
    assert during.json()["status"] == "RUNNING"
    time.sleep(1.5)
    private.start()  # back, and empty
    client.join(60)
    assert not client.is_alive()
    assert final == ["SUCCESSFUL"]
    assert sorted(set(seen)) == list(range(1, count + 1))  # no gap: every line arrived
    flush_all()
    row = eventually(
        lambda: TaskRun.objects.filter(pk=run.id, status=Status.SUCCESSFUL).first(), timeout=20
    )
    assert row.result == count
    assert row.task == "tests.testapp.tasks.numbered_feed"  # the record kept what Redis forgot
    assert row.args == [count, 0.02]
    after = httpx.get(
        f"{server}/tasks/{run.id}/", params={"token": make_token(run.id)}, timeout=10
    ).json()
    assert (after["status"], after["result"], after["task"]) == ("SUCCESSFUL", count, row.task)


def _restart_empty(private: PrivateRedis) -> None:
    private.kill()
    private.start()


def test_a_run_whose_record_redis_forgot_still_reaches_a_final_row(
    outage_stack: tuple[PrivateRedis, str, dict[str, Any]],
) -> None:
    """Redis restarts empty while runs execute: the records their finish rebuilds carry
    their id, so the flusher writes them (issue 11, item 3: 4 of 4 stayed RUNNING)."""
    private, _, options = outage_stack
    runs = [enqueue(sleepy, 2.0, **options) for _ in range(2)]
    eventually(
        lambda: (
            TaskRun.objects.filter(pk__in=[r.id for r in runs], status="RUNNING").count() == 2
            or None
        ),
        timeout=30,
    )
    _restart_empty(private)
    rows = eventually(
        lambda: (
            list(TaskRun.objects.filter(pk__in=[r.id for r in runs], status="SUCCESSFUL"))
            if TaskRun.objects.filter(pk__in=[r.id for r in runs], status="SUCCESSFUL").count() == 2
            else None
        ),
        timeout=20,
    )
    assert all(row.result == 2.0 for row in rows)


def test_a_run_that_ran_entirely_during_the_outage_streams_its_feed_lines_later(
    outage_stack: tuple[PrivateRedis, str, dict[str, Any]],
) -> None:
    """Redis is down from before the start to after the end (issue 11, item 3): the
    database has the final state at once (the fallback); once Redis is back (empty),
    the worker's deferred events are replayed in order into the run's log, and a
    follower resuming from the start of the log receives all 5 feed lines. (A regression
    test of the data path: it passed before this round too. What a follower that never
    sends Last-Event-ID sees is the stream view's business; docs/reliability.md.)"""
    private, server, options = outage_stack
    run = enqueue(numbered_feed, 5, 0.2, countdown=1.5, **options)  # starts in the outage
    private.kill()
    eventually(
        lambda: TaskRun.objects.filter(pk=run.id, status=Status.SUCCESSFUL).exists(), timeout=30
    )
    private.start()  # back, and empty
    url = f"{server}/tasks/{run.id}/events/?token={make_token(run.id)}"

    def lines() -> list[str] | None:
        # From the start of the log: what a follower whose first connection was served
        # from the database during the outage asks for when it comes back.
        with httpx.stream("GET", url, headers={"Last-Event-ID": "0-0"}, timeout=10) as response:
            found = [
                item.data["message"]
                for item in read(response)
                if isinstance(item, Event) and item.kind == "feed"
            ]
        return found if len(found) == 5 else None

    assert eventually(lines, timeout=20, every=0.5) == [f"line {n}" for n in range(1, 6)]


@pytest.mark.parametrize(
    "outage_stack", [{"TASKTRAIL_TEST_FLUSH_INTERVAL": "3600"}], indirect=True, ids=["unflushed"]
)
def test_runs_redis_forgot_before_they_were_flushed_still_reach_final_rows(
    outage_stack: tuple[PrivateRedis, str, dict[str, Any]],
) -> None:
    """Redis took the whole life of some runs, then restarted empty before the flusher
    wrote them (a Redis that keeps nothing on disk; here the worker's flusher waits an
    hour). The processes that sent those transitions see that Redis lost its data and
    send them again (issue 11, item 17: 3 of 200 runs stayed READY or RUNNING for ever;
    bench/drain.py saw 6 of 1,000)."""
    private, _, options = outage_stack
    runs = [enqueue(sleepy, 0.05, **options) for _ in range(3)]
    ids = [run.id for run in runs]
    client = redis.Redis.from_url(private.url)

    def ended_in_redis() -> bool | None:
        return all(client.hget(keys.run_hash(i), "status") == b"SUCCESSFUL" for i in ids) or None

    eventually(ended_in_redis, timeout=30)
    assert not TaskRun.objects.filter(pk__in=ids, status="SUCCESSFUL").exists()
    _restart_empty(private)

    def final_rows() -> list[TaskRun] | None:
        flush_all()
        rows = list(TaskRun.objects.filter(pk__in=ids, status="SUCCESSFUL"))
        return rows if len(rows) == len(ids) else None

    rows = eventually(final_rows, timeout=20)
    assert {(row.task, row.result, row.attempts) for row in rows} == {
        ("tests.testapp.tasks.sleepy", 0.05, 1)
    }
    # Celery's own result, stored beside the record, is back as well.
    assert all(client.exists(f"celery-task-meta-{i}") for i in ids)
