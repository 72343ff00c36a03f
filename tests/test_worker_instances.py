"""Worker processes under one name are told apart by their instance ids (issue 11,
item 17): the claim rule of the settler, and the dashboard's banner."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from tasktrail import Status, keys
from tasktrail.transitions import apply, stamp
from tasktrail.workers import beat, list_workers, settle_lost_runs
from tests.helpers import client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_key_prefix")]

NAME = "twin@tests"


def _running(run_id: str, *, long_ago: bool = False) -> None:
    apply(run_id, "publish", status=Status.READY,
          create={"id": run_id, "task": "tests.testapp.tasks.sleepy",
                  "enqueued_at": stamp(time.time())})  # fmt: skip
    apply(run_id, "start", attempt=1, status=Status.RUNNING, fields={"worker": NAME})
    if long_ago:  # its last change (by the Redis clock) before every live beat
        old = int((time.time() - 60) * 1_000_000)
        client().hset(keys.run_hash(run_id), "version", str(old))


def _beat(instance: str, active: list[str]) -> None:
    """A beat of a process on another machine (this test's own pid would be taken
    for a dead predecessor of this process)."""
    beat(NAME, concurrency=1, queues=["q"], started_at=time.time(), instance=instance,
         active=active)  # fmt: skip
    key = f"{keys.prefix()}:instances:{NAME}"
    stored = json.loads(client().hget(key, instance))  # type: ignore[arg-type]
    client().hset(key, instance, json.dumps({**stored, "machine": "elsewhere/boot"}))


def test_a_run_no_live_namesake_claims_is_lost_and_the_others_are_not() -> None:
    claimed, recent, orphan = (str(uuid.uuid4()) for _ in range(3))
    _running(claimed, long_ago=True)
    _running(orphan, long_ago=True)
    _running(recent)  # started after the beats below: maybe not listed yet
    _beat("one", [claimed])
    _beat("two", [])
    assert settle_lost_runs(me="someone@else") == 1
    statuses = {
        run_id: client().hget(keys.run_hash(run_id), "status").decode()  # type: ignore[union-attr]
        for run_id in (claimed, recent, orphan)
    }
    assert statuses == {claimed: "RUNNING", recent: "RUNNING", orphan: "FAILED"}


def test_the_workers_page_warns_of_namesakes(client: Any, admin_user: Any) -> None:
    _beat("one", [])
    _beat("two", [])
    (worker,) = [w for w in list_workers() if w.hostname == NAME]
    assert worker.live_instances == 2
    client.force_login(admin_user)
    page = client.get("/ops/workers/").content.decode()
    assert "data-namesakes" in page and f"2 live worker processes use the name {NAME}" in page


def test_a_namesake_in_another_pid_namespace_on_this_host_is_not_taken_for_dead() -> None:
    # Containers sharing the host's name (host networking) each run their worker as
    # pid 1: only the pid namespace tells a live namesake from a dead predecessor.
    import os
    import subprocess
    import sys

    from tasktrail.workers import MACHINE, Instance

    probe = "from tasktrail.workers import MACHINE; print(MACHINE)"
    inside = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", probe],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": "src"},
    ).stdout.strip()  # fmt: skip
    assert inside and inside != MACHINE
    namesake = Instance(
        id="container-b", pid=os.getpid(), machine=inside, beat=time.time(), active=frozenset()
    )
    assert not namesake.dead_here()
