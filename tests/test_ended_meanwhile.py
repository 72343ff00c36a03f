"""A run that ended while Redis was unreachable: its end is in the database (the outage
fallback), its hot record still says RUNNING or READY until the process that ran it
replays the transition. Neither lost-run detection nor the sweep may judge it by the
hot record meanwhile (CI saw a followed run FAILED "lost with worker" after a cluster
failover: it had finished during the failover, its worker alive)."""

from __future__ import annotations

import time
import uuid

import pytest
from django.conf import settings
from django.test import override_settings

from tasktrail import Status, workers
from tasktrail.models import TaskRun
from tasktrail.runs import get_run
from tasktrail.sweep import sweep
from tasktrail.transitions import apply, stamp

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_key_prefix")]


def _ended_in_the_database(run_id: str) -> None:
    """What fallback.write leaves for a finish Redis did not take."""
    TaskRun.objects.filter(pk=run_id).update(status=Status.SUCCESSFUL, generation=1)


def _published(run_id: str, queue: str = "") -> None:
    apply(run_id, "publish", status=Status.READY,
          create={"id": run_id, "task": "tests.testapp.tasks.add", "queue": queue,
                  "enqueued_at": stamp(time.time() - 60)})  # fmt: skip
    from django.utils import timezone

    TaskRun.objects.create(
        id=run_id, task="tests.testapp.tasks.add", status=Status.READY, enqueued_at=timezone.now()
    )


def test_a_run_that_ended_meanwhile_is_not_settled_as_lost() -> None:
    run_id, node = str(uuid.uuid4()), f"gone-{uuid.uuid4().hex[:6]}@host"
    _published(run_id)
    apply(run_id, "start", attempt=1, status=Status.RUNNING, fields={"worker": node})
    _ended_in_the_database(run_id)
    assert workers._settle(run_id, node) == 0
    assert get_run(run_id).status != Status.FAILED
    # Without the end in the database it is lost, as before.
    TaskRun.objects.filter(pk=run_id).update(status=Status.RUNNING)
    assert workers._settle(run_id, node) == 1
    assert get_run(run_id).status == Status.FAILED


def test_a_run_that_ended_meanwhile_is_not_settled_as_never_delivered() -> None:
    run_id = str(uuid.uuid4())
    queue = f"{settings.TASKTRAIL['KEY_PREFIX']}-nobody"  # the broker holds nothing there
    _published(run_id, queue)
    _ended_in_the_database(run_id)
    with override_settings(TASKTRAIL={**settings.TASKTRAIL, "UNDELIVERED_AFTER": 1}):
        assert sweep(now=time.time() + 120) == 0
    assert get_run(run_id).status != Status.FAILED


def test_a_settlers_lock_outlives_a_killed_holder_by_a_few_heartbeats_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node judging itself holds the lock on its own name; SIGKILLed then, the lock
    kept every other node from settling it for 30 s (seen on the cluster tests)."""
    from tasktrail import keys
    from tasktrail.connection import get_redis

    node = f"judged-{uuid.uuid4().hex[:6]}@host"
    run_id = str(uuid.uuid4())
    _published(run_id)
    apply(run_id, "start", attempt=1, status=Status.RUNNING, fields={"worker": node})
    client = get_redis()
    client.zadd(f"{keys.prefix()}:workers", {node: time.time() - 3600})  # silent long ago
    held: list[int] = []

    def settle(run: str, hostname: str, *, before: float | None = None) -> int:
        held.append(int(client.ttl(f"{keys.prefix()}:settling:{hostname}")))
        return 0

    monkeypatch.setattr(workers, "_settle", settle)
    with override_settings(TASKTRAIL={**settings.TASKTRAIL, "HEARTBEAT_INTERVAL": 1}):
        workers._settle_node(client, node, time.time(), silent=True)
    assert held and 0 < held[0] <= 5  # a few heartbeats, at least 5 s
