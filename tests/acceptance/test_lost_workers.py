"""Guarantee 1, honest status: SIGKILL real prefork workers mid-task.

Two ways to lose a run:
- a pool child dies (OOM killer, segfault): the worker's main process sees it and
  Celery reports ``WorkerLostError``; a re-runnable task (``acks_late`` and
  ``reject_on_worker_lost``) is requeued by Celery itself;
- the whole node dies (main process and children, a machine gone): nobody reports
  anything, so tasktrail's settler on another worker finds the silent node after
  ``LOST_AFTER`` and re-queues or fails its runs.

In both, every body execution is counted in Redis, so "ran twice" is a fact.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from tasktrail import Run, Status, enqueue, get_run
from tasktrail.models import TaskRun
from tasktrail.transitions import apply
from tasktrail.workers import redeliver, settle_lost_runs
from tests.acceptance.conftest import (
    HEARTBEAT,
    LOST_AFTER,
    ROOT,
    Worker,
    Workers,
    broker_client,
    child_env,
    prefix,
    record_figure,
    redis_client,
)
from tests.acceptance.tasks import executions_key, once, pids_key, rerunnable, unrouted_rerunnable
from tests.helpers import eventually, stored_events

# once: Redis, HTTP and process behaviour the database and Django's version do not change.
pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True), pytest.mark.once]

HOLD = 300.0  # the first execution sleeps this long: it is always killed mid-task
WORKER_LOST_CELERY = "billiard.exceptions.WorkerLostError"
WORKER_LOST_TASKTRAIL = "tasktrail.exceptions.WorkerLost"


@dataclass
class Trial:
    key: str
    rerunnable: bool
    run: Run

    @property
    def executions(self) -> int:
        return int(redis_client().get(executions_key(self.key)) or 0)

    @property
    def pid(self) -> int | None:
        raw: Any = redis_client().hget(pids_key(), self.key)
        return int(raw) if raw else None


def launch(queue: str, rerunnable_count: int, once_count: int) -> list[Trial]:
    trials = []
    for index in range(rerunnable_count + once_count):
        key = f"{uuid.uuid4().hex}"
        safe = index < rerunnable_count
        task = rerunnable if safe else once
        trials.append(Trial(key, safe, enqueue(task, key, HOLD, queue=queue)))
    return trials


def wait_running(trials: list[Trial], timeout: float = 60.0) -> None:
    """Every trial's body has started (counted once, pid known, status RUNNING)."""
    eventually(
        lambda: all(
            t.executions == 1 and t.pid and get_run(t.run.id).status == Status.RUNNING
            for t in trials
        ),
        timeout=timeout,
    )


def wait_finished(trials: list[Trial], timeout: float) -> dict[str, Run]:
    def probe() -> dict[str, Run] | None:
        runs = {t.run.id: get_run(t.run.id) for t in trials}
        return runs if all(r.is_finished for r in runs.values()) else None

    return eventually(probe, timeout=timeout, every=0.1)


def check_outcomes(
    trials: list[Trial], runs: dict[str, Run], lost_error: str, kind: str
) -> Counter[str]:
    outcome: Counter[str] = Counter()
    for trial in trials:
        run = runs[trial.run.id]
        assert run.status != Status.RUNNING
        if trial.rerunnable:
            assert run.status == Status.SUCCESSFUL, (trial, run)
            assert run.result == 2  # the second execution finished it
            assert trial.executions == 2
            outcome["re-queued and SUCCESSFUL"] += 1
        else:
            assert run.status == Status.FAILED, (trial, run)
            assert run.error is not None and run.error.type == lost_error, run.error
            assert trial.executions == 1  # never run twice
            outcome[f"FAILED {lost_error.rsplit('.', 1)[-1]}"] += 1
    # Still once, a while later: nothing redelivers a non-re-runnable run.
    time.sleep(1.0)
    assert all(t.executions == (2 if t.rerunnable else 1) for t in trials)
    record_figure(kind, trials=len(trials), outcomes=dict(outcome))
    return outcome


def wait_recorded(runs: dict[str, Run], timeout: float = 20.0) -> None:
    """The durable record (the database) agrees with Redis once the flusher has run."""
    expected = {run_id: run.status.value for run_id, run in runs.items()}

    def probe() -> bool:
        rows = dict(TaskRun.objects.filter(pk__in=expected).values_list("id", "status"))
        return rows == expected

    eventually(probe, timeout=timeout, every=0.2)


def test_sigkill_pool_children_mid_task(workers: Workers) -> None:
    """12 trials: 2 rounds of SIGKILL to 6 busy pool children (3 re-runnable, 3 not)."""
    worker = workers.start("children", concurrency=6)
    all_trials: list[Trial] = []
    runs: dict[str, Run] = {}
    kills = 0
    for _ in range(2):
        trials = launch(worker.queues[0], rerunnable_count=3, once_count=3)
        wait_running(trials)
        for trial in trials:
            assert trial.pid is not None
            os.kill(trial.pid, signal.SIGKILL)
            kills += 1
        runs.update(wait_finished(trials, timeout=30))
        all_trials += trials
    outcome = check_outcomes(all_trials, runs, WORKER_LOST_CELERY, "sigkill pool child")
    assert outcome == {"re-queued and SUCCESSFUL": 6, "FAILED WorkerLostError": 6}
    record_figure("pool child kills", kills=kills)
    wait_recorded(runs)


def test_sigkill_whole_nodes_mid_task(workers: Workers) -> None:
    """12 trials: 3 nodes with 4 busy children each are SIGKILLed whole; a fresh worker
    settles their runs within LOST_AFTER (+ one heartbeat round)."""
    victims = [workers.start(f"node{i}", concurrency=4) for i in range(3)]
    trials = []
    by_host: dict[str, str] = {}
    for victim in victims:
        launched = launch(victim.queues[0], rerunnable_count=2, once_count=2)
        by_host.update({t.run.id: victim.hostname for t in launched})
        trials += launched
    wait_running(trials)
    killed_at = time.time()
    for victim in victims:
        victim.kill_node()
    # A fresh node on the victims' queues (re-queued runs go back where they were sent)
    # settles the silent ones and runs the re-queued ones.
    settler = workers.start("settler", queues=[v.queues[0] for v in victims], concurrency=4)
    runs = wait_finished(trials, timeout=LOST_AFTER + 30)
    outcome = check_outcomes(trials, runs, WORKER_LOST_TASKTRAIL, "sigkill whole node")
    assert outcome == {"re-queued and SUCCESSFUL": 6, "FAILED WorkerLost": 6}
    settled_after = []
    for trial in trials:
        run = runs[trial.run.id]
        if not trial.rerunnable:
            assert run.error is not None
            assert by_host[trial.run.id] in run.error.message  # names the lost worker
            assert run.finished_at is not None
            settled_after.append(run.finished_at.timestamp() - killed_at)
    # Detection is bounded: LOST_AFTER, one settler round, plus the settler's start.
    assert max(settled_after) < LOST_AFTER + HEARTBEAT + 20
    client = redis_client()
    for victim in victims:
        assert not client.exists(f"{prefix()}:active:{victim.hostname}")
    record_figure(
        "node kills",
        kills=len(victims),
        settler=settler.hostname,
        settled_after_s=[round(s, 2) for s in sorted(settled_after)],
    )
    wait_recorded(runs)


def test_node_restarted_under_the_same_name_settles_its_lost_runs(workers: Workers) -> None:
    name = f"acc-same-{uuid.uuid4().hex[:6]}@acceptance"
    victim = workers.start("same", hostname=name, concurrency=1)
    [trial] = launch(victim.queues[0], rerunnable_count=0, once_count=1)
    wait_running([trial])
    victim.kill_node()
    workers.start("same", hostname=name, queues=victim.queues, concurrency=1)
    run = wait_finished([trial], timeout=LOST_AFTER + 10)[trial.run.id]
    assert run.status == Status.FAILED


@pytest.mark.parametrize("keyprefix", ["", "acc-pfx:"])
def test_requeued_run_goes_back_to_the_queue_it_was_enqueued_on(keyprefix: str) -> None:
    """The settler, in process, on a lost worker as its heartbeats leave it in Redis:
    the original message goes back to its queue once, and is never copied; with
    kombu's ``global_keyprefix`` too (kombu prefixes some commands and not others)."""
    from celery import current_app

    queue = f"{prefix()}-acc-unrouted-{uuid.uuid4().hex[:6]}"
    ghost = f"acc-ghost-{uuid.uuid4().hex[:6]}@acceptance"
    broker = broker_client()
    run = enqueue(unrouted_rerunnable, uuid.uuid4().hex, 0, queue=queue)
    # A worker reserved the message (kombu's Redis QoS keeps it unacknowledged) ...
    raw = broker.lpop(queue)
    assert raw
    message = json.loads(raw)
    tag = message["properties"]["delivery_tag"]
    info = message["properties"]["delivery_info"]
    unacked = [message, info["exchange"], info["routing_key"]]
    broker.hset(f"{keyprefix}unacked", tag, json.dumps(unacked))
    broker.zadd(f"{keyprefix}unacked_index", {tag: time.time()})
    apply(run.id, "start", attempt=1, status=Status.RUNNING, fields={"worker": ghost})
    redis_client().zadd(f"{prefix()}:workers", {ghost: time.time() - 1000})  # ... and died
    tasktrail = {**settings.TASKTRAIL, "LOST_AFTER": LOST_AFTER}
    options = current_app.conf.broker_transport_options
    current_app.conf.broker_transport_options = {**options, "global_keyprefix": keyprefix}
    try:
        with override_settings(TASKTRAIL=tasktrail):
            assert settle_lost_runs(me="acc-test@acceptance") == 1
            assert redeliver(run.id) is None  # a second settler finds nothing to hand back
    finally:
        current_app.conf.broker_transport_options = options
    assert get_run(run.id).status == Status.READY
    assert broker.llen(f"{keyprefix}{queue}") == 1, "the message is not back on its queue"
    back = json.loads(broker.lindex(f"{keyprefix}{queue}", 0))
    assert back["headers"]["id"] == run.id
    assert back["body"] == message["body"]  # the original: chain, links and options kept
    assert not broker.hexists(f"{keyprefix}unacked", tag)
    broker.delete(f"{keyprefix}{queue}")


def test_a_lost_run_whose_message_was_acknowledged_is_failed_not_copied() -> None:
    """Not acks_late: the worker acknowledged the message when it started, so Celery
    alone would never run it again; tasktrail fails it and publishes nothing."""
    queue = f"{prefix()}-acc-unrouted-{uuid.uuid4().hex[:6]}"
    ghost = f"acc-ghost-{uuid.uuid4().hex[:6]}@acceptance"
    broker = broker_client()
    run = enqueue(once, uuid.uuid4().hex, 0, queue=queue)
    assert broker.lpop(queue)  # taken and acknowledged
    apply(run.id, "start", attempt=1, status=Status.RUNNING, fields={"worker": ghost})
    redis_client().zadd(f"{prefix()}:workers", {ghost: time.time() - 1000})
    with override_settings(TASKTRAIL={**settings.TASKTRAIL, "LOST_AFTER": LOST_AFTER}):
        assert settle_lost_runs(me="acc-test@acceptance") == 1
    lost = get_run(run.id)
    assert lost.status == Status.FAILED
    assert lost.error is not None and lost.error.reason == "lost"
    assert broker.llen(queue) == 0
    # Celery's own result says so too: AsyncResult.get() ends instead of waiting.
    from celery.result import AsyncResult

    assert AsyncResult(run.id).state == "FAILURE"


def _hold(queue: str, hold: float) -> Trial:
    key = uuid.uuid4().hex
    return Trial(key, False, enqueue(once, key, hold, queue=queue))


def test_two_live_workers_under_one_name_never_settle_each_other(workers: Workers) -> None:
    """Two processes started with one -n (issue 11, item 17): neither settles the
    other's runs while both live, the second says so loudly, and when one dies its run
    is settled while its namesake's keeps running to its end."""
    name = f"acc-twin-{uuid.uuid4().hex[:6]}@acceptance"
    first = workers.start("twin-a", hostname=name, concurrency=1)
    a = _hold(first.queues[0], HOLD)  # killed with its node below
    wait_running([a])
    second = workers.start("twin-b", hostname=name, concurrency=1)
    b = _hold(second.queues[0], 25.0)
    wait_running([b])
    time.sleep(2 * LOST_AFTER + 4 * HEARTBEAT)  # every settler round had its chance
    assert get_run(a.run.id).status == Status.RUNNING
    assert get_run(b.run.id).status == Status.RUNNING
    assert f"another live worker process uses the name {name}" in second.log.read_text()
    first.kill_node()
    lost = eventually(
        lambda: (run := get_run(a.run.id)).is_finished and run, timeout=LOST_AFTER + 10
    )
    assert lost.status == Status.FAILED and lost.error is not None
    assert lost.error.type == WORKER_LOST_TASKTRAIL
    assert get_run(b.run.id).status == Status.RUNNING  # its namesake's run goes on
    done = wait_finished([b], timeout=30)[b.run.id]
    assert (done.status, done.result) == (Status.SUCCESSFUL, 1)
    assert (a.executions, b.executions) == (1, 1)


def _node(name: str, queue: str, env: dict[str, str], log: Any, concurrency: int = 1) -> Worker:
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.acceptance.celery_app", "worker",
         "-P", "prefork", "-c", str(concurrency), "-l", "warning", "-n", name, "-Q", queue,
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    return Worker(name, [queue], process, Path(log.name))


def test_lost_workers_are_found_after_redis_restarts_empty(
    tmp_path: Path, transactional_db: None
) -> None:
    """Tracking Redis restarts empty under running runs (issue 11, item 3): a node that
    beats once more registers its runs again, so its death is seen; a node that died
    while Redis was down is found through the database. Both runs end FAILED WorkerLost
    instead of RUNNING for ever."""
    from tests.test_outage import PrivateRedis

    private = PrivateRedis(tmp_path)
    private.start()
    own = f"{prefix()}-empty-{uuid.uuid4().hex[:6]}"
    env = {**child_env(), "TASKTRAIL_TEST_REDIS": private.url, "TASKTRAIL_TEST_PREFIX": own}
    tag = uuid.uuid4().hex[:6]
    nodes: list[Worker] = []
    log = (tmp_path / "workers.log").open("ab")
    tasktrail = {**settings.TASKTRAIL, "REDIS_URL": private.url, "KEY_PREFIX": own}
    try:
        with override_settings(TASKTRAIL=tasktrail):
            for role in ("beats-again", "dies-in-outage", "settler"):
                nodes.append(_node(f"acc-{role}-{tag}@acceptance", f"{own}-{role}", env, log))
            beats_again, dies_in_outage, _ = nodes
            eventually(lambda: redis_client().zcard(f"{own}:workers") == 3, timeout=60)
            runs = [enqueue(once, uuid.uuid4().hex, HOLD, queue=n.queues[0]) for n in nodes[:2]]
            ids = [r.id for r in runs]
            eventually(  # the flusher wrote them: the database knows them as RUNNING
                lambda: TaskRun.objects.filter(pk__in=ids, status=Status.RUNNING).count() == 2,
                timeout=60,
            )
            private.kill()
            dies_in_outage.kill_node()
            private.start()  # back, and empty
            time.sleep(4 * HEARTBEAT)  # one node beats again, with its running run
            beats_again.kill_node()
            eventually(
                lambda: TaskRun.objects.filter(pk__in=ids, status=Status.FAILED).count() == 2,
                timeout=3 * LOST_AFTER + 20,
            )
            for run_id, node in zip(ids, nodes, strict=False):
                row = TaskRun.objects.get(pk=run_id)
                assert row.error_type == WORKER_LOST_TASKTRAIL
                assert node.hostname in row.error_message
    finally:
        for node in nodes:
            node.stop()
        log.close()
        if private.process is not None and private.process.poll() is None:
            private.kill()


def test_soft_shutdown_mid_run_then_a_same_name_restart(tmp_path: Path, workers: Workers) -> None:
    """Celery 5.5's soft shutdown (worker_soft_shutdown_timeout, SIGTERM remapped to
    SIGQUIT) cancels runs still executing when it ends; the node restarts under the
    same name (issue 11, item 17). No run may stay RETRYING or RUNNING, and none may
    run more often than Celery alone runs it."""
    (tmp_path / "soft_settings.py").write_text(
        "from tests.acceptance.settings_acceptance import *  # noqa\n"
        "CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 1.0\n"
    )
    name = f"acc-soft-{uuid.uuid4().hex[:6]}@acceptance"
    queue = f"{prefix()}-acc-soft-{uuid.uuid4().hex[:6]}"
    env = {
        **child_env(),
        "DJANGO_SETTINGS_MODULE": "soft_settings",
        "REMAP_SIGTERM": "SIGQUIT",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), child_env()["PYTHONPATH"]]),
    }
    log = (tmp_path / "soft.log").open("ab")
    first = _node(name, queue, env, log, concurrency=2)
    workers.started.append(first)
    workers.wait_ready(first)
    trials = [
        Trial(key, task is rerunnable, enqueue(task, key, 8.0, queue=queue))
        for key, task in ((uuid.uuid4().hex, t) for t in (rerunnable, once))
    ]
    wait_running(trials)
    first.process.send_signal(signal.SIGTERM)  # soft, then cold shutdown
    first.process.wait(30)
    second = _node(name, queue, env, log, concurrency=2)
    workers.started.append(second)
    workers.wait_ready(second)
    runs = wait_finished(trials, timeout=LOST_AFTER + 30)
    time.sleep(LOST_AFTER + 2)  # nothing runs them again afterwards
    outcome = {t.run.id: (get_run(t.run.id).status.value, t.executions) for t in trials}
    log.close()
    record_figure("soft shutdown then same-name restart", outcome=list(outcome.values()))
    assert all(run.is_finished for run in runs.values()), outcome
    rerun, once_run = (outcome[t.run.id] for t in trials)
    # acks_late: Celery puts the cancelled message back; it runs once more and succeeds.
    assert rerun == ("SUCCESSFUL", 2), outcome
    # ... and never FAILED on the way (AsyncResult.get() would have raised): the
    # restarted node finds the message back in its queue, not lost.
    states = [d.get("status") for _, kind, d in stored_events(trials[0].run.id) if kind == "state"]
    assert "FAILED" not in states, states
    # Acknowledged at start: Celery marks it RETRY and never runs it again; tasktrail
    # settles it FAILED (the sweep: no message left to deliver), never re-runs it.
    assert once_run == ("FAILED", 1), outcome


def test_messages_a_dead_node_had_prefetched_run_soon_after_a_same_name_restart(
    tmp_path: Path, workers: Workers
) -> None:
    """A node killed with messages taken and not started (prefetch), then restarted
    under its name (issue 11, item 17: one run READY for ever): those messages go back
    to their queue at once, not after the broker's visibility timeout (an hour)."""
    (tmp_path / "prefetch_settings.py").write_text(
        "from tests.acceptance.settings_acceptance import *  # noqa\n"
        "CELERY_WORKER_PREFETCH_MULTIPLIER = 4\n"
    )
    name = f"acc-prefetch-{uuid.uuid4().hex[:6]}@acceptance"
    queue = f"{prefix()}-acc-prefetch-{uuid.uuid4().hex[:6]}"
    env = {
        **child_env(),
        "DJANGO_SETTINGS_MODULE": "prefetch_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), child_env()["PYTHONPATH"]]),
    }
    log = (tmp_path / "prefetch.log").open("ab")
    first = _node(name, queue, env, log)
    workers.started.append(first)
    workers.wait_ready(first)
    busy = _hold(queue, HOLD)
    wait_running([busy])
    waiting = [_hold(queue, 0.2) for _ in range(2)]

    eventually(lambda: broker_client().llen(queue) == 0, timeout=20)  # taken by the node
    time.sleep(4 * HEARTBEAT)  # and named in its beats
    first.kill_node()
    second = _node(name, queue, env, log)
    workers.started.append(second)
    workers.wait_ready(second)
    runs = wait_finished([busy, *waiting], timeout=LOST_AFTER + 30)
    log.close()
    assert runs[busy.run.id].status == Status.FAILED  # acknowledged at start: not re-run
    assert [runs[t.run.id].status for t in waiting] == [Status.SUCCESSFUL] * 2
    assert [t.executions for t in (busy, *waiting)] == [1, 1, 1]
