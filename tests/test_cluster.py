"""Redis Cluster: the core lifecycle, streams with resume, idempotency, lost-run
detection, and a master killed mid-run, against a real local cluster.

The cluster is 6 ``redis-server`` processes in cluster mode, 3 masters and 3 replicas
(tests/redis_cluster.py). The worker nodes and the uvicorn are real processes whose
tasktrail Redis is that cluster; Celery's broker and its own result backend stay on the
shared single Redis, so Celery is the referee of what each run returned.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery.backends.redis import RedisBackend
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tasktrail import Status, connection, enqueue, keys
from tasktrail.access import make_token
from tasktrail.checks import check_settings
from tasktrail.cluster import InvalidClusterURL, parse_cluster_url
from tasktrail.models import TaskRun
from tests.celery_app import app as celery_app
from tests.conftest import ROOT, _free_port, _stop
from tests.helpers import eventually
from tests.redis_cluster import RedisCluster
from tests.sse_client import Event, read
from tests.testapp.tasks import add, always_fails, flaky, numbered_feed, sleepy

# Redis and process behaviour the database and Django's version do not change: pass 1 only.
pytestmark = pytest.mark.once

CELERY_RESULTS = "redis://127.0.0.1:6379/10"  # Celery's own results: the referee
HEARTBEAT, LOST_AFTER = 0.5, 3.0


# -- the URL and the check ---------------------------------------------------------------


def test_a_cluster_url_names_the_nodes_and_the_credentials() -> None:
    address = parse_cluster_url("redis+cluster://ann:s%40cret@10.0.0.1:7000,10.0.0.2,[::1]:7001/0")
    assert address.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7001))
    assert (address.username, address.password, address.tls) == ("ann", "s@cret", False)
    assert parse_cluster_url("rediss+cluster://h:1").tls


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://h1:7000/3", "only database 0"),
        ("redis+cluster://", "names no node"),
        ("redis+cluster://h1,,h2", "a node's host is empty"),
        ("redis+cluster://h1:port", "the port of node 'h1' is 'port'"),
        ("redis+cluster://::1", "in brackets"),
    ],
)
def test_a_malformed_cluster_url_is_refused_with_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(InvalidClusterURL, match=problem):
        parse_cluster_url(url)
    with override_settings(TASKTRAIL={**settings.TASKTRAIL, "REDIS_URL": url}):
        [error] = [m for m in check_settings() if m.id == "tasktrail.E005"]
    assert problem in error.msg


def test_the_check_refuses_braces_in_the_prefix_and_the_backend_refuses_a_cluster() -> None:
    from tasktrail.backend import TasktrailBackend

    url = "redis+cluster://:pw@127.0.0.1:27700"
    with override_settings(TASKTRAIL={**settings.TASKTRAIL, "REDIS_URL": url}):
        assert not [m for m in check_settings() if m.id == "tasktrail.E005"]
        with pytest.raises(ImproperlyConfigured, match="RecordingBackendMixin"):
            TasktrailBackend(app=celery_app)
    overrides = {**settings.TASKTRAIL, "REDIS_URL": url, "KEY_PREFIX": "app{1}"}
    with override_settings(TASKTRAIL=overrides):
        [error] = [m for m in check_settings() if m.id == "tasktrail.E005"]
    assert "brace" in error.msg and "pw" not in error.msg
    overrides = {**settings.TASKTRAIL, "REDIS_URL": url, "CLUSTER_SHARDS": 0}
    with override_settings(TASKTRAIL=overrides):
        [error] = [m for m in check_settings() if m.id == "tasktrail.E005"]
    assert "CLUSTER_SHARDS is 0" in error.msg


@pytest.mark.django_db
def test_a_cluster_that_does_not_answer_takes_the_outage_path() -> None:
    """redis-py says RedisClusterException (not a RedisError) when no node answers: the
    client makes it a ConnectionError, so a transition is deferred and the state goes
    to the database, as for a single Redis that is down."""
    from tasktrail import transitions
    from tasktrail.cluster import client

    with pytest.raises(redis.ConnectionError, match="cannot be reached"):
        client("redis+cluster://127.0.0.1:1", {"socket_connect_timeout": 0.2})
    url = "redis+cluster://127.0.0.1:1"
    run_id = str(uuid.uuid4())
    with override_settings(TASKTRAIL={**settings.TASKTRAIL, "REDIS_URL": url}):
        try:
            applied = transitions.safely(
                run_id, "publish", status=Status.READY, create={"id": run_id, "task": "t"}
            )
            assert applied is None  # deferred, not raised
            assert TaskRun.objects.get(pk=run_id).status == Status.READY  # the fallback
            assert [entry[0] for entry in transitions._backlog] == [run_id]
        finally:
            with transitions._backlog_lock:
                transitions._backlog.clear()
            transitions._down_until = 0.0
            connection._clients.pop(url, None)


# -- a real cluster, real workers, a real uvicorn -----------------------------------------


@dataclass
class Stack:
    cluster: RedisCluster
    server: str
    prefix: str
    directory: Path
    env: dict[str, str]
    nodes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def worker(self, name: str, queue: str, concurrency: int = 2) -> subprocess.Popen[bytes]:
        log = open(self.directory / f"worker-{name}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "-P", "prefork",
             "-c", str(concurrency), "-l", "warning", "-n", f"{name}@cluster", "-Q", queue,
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill reaches the pool
        )  # fmt: skip
        log.close()
        self.nodes.append(process)
        return process


@pytest.fixture(scope="module")
def cluster_stack(
    tmp_path_factory: pytest.TempPathFactory, django_db_setup: None
) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("redis-cluster")
    cluster = RedisCluster(directory)
    prefix = f"tt-cluster-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.acceptance.settings_acceptance",  # short liveness
        TASKTRAIL_ACC_HEARTBEAT=str(HEARTBEAT),
        TASKTRAIL_ACC_LOST_AFTER=str(LOST_AFTER),
        TASKTRAIL_TEST_REDIS=cluster.url,
        TASKTRAIL_TEST_PREFIX=prefix,
        TASKTRAIL_TEST_RESULT_BACKEND=CELERY_RESULTS,
        TASKTRAIL_TEST_DB_NAME=str(settings.DATABASES["default"]["NAME"]),
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]),
    )
    port = _free_port()
    # This process's Celery result backend stays the session's (made under the override
    # below, tasktrail's backend would refuse the cluster).
    assert celery_app.backend is not None
    stack = Stack(cluster, f"http://127.0.0.1:{port}", prefix, directory, env)
    web_log = open(directory / "web.log", "wb")  # noqa: SIM115
    try:
        cluster.start()
        stack.worker("main", prefix, concurrency=4)
        web = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.asgi:application", "--port", str(port),
             "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=web_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        stack.nodes.append(web)
        eventually(lambda: _answers(stack.server), timeout=60)
        overrides = {**settings.TASKTRAIL, "REDIS_URL": cluster.url, "KEY_PREFIX": prefix}
        with override_settings(TASKTRAIL=overrides):
            enqueue(add, 1, 1, queue=prefix).wait(timeout=120)  # the worker is up
            yield stack
    finally:
        for process in stack.nodes:
            _stop(process)
        web_log.close()
        client = connection._clients.pop(cluster.url, None)
        if client is not None:
            client.close()
        cluster.stop()


@pytest.fixture
def stack(cluster_stack: Stack) -> Iterator[Stack]:
    overrides = {
        **settings.TASKTRAIL,
        "REDIS_URL": cluster_stack.cluster.url,
        "KEY_PREFIX": cluster_stack.prefix,
    }
    with override_settings(TASKTRAIL=overrides):
        yield cluster_stack


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def _final_meta(celery: RedisBackend, run_id: str) -> dict[str, Any] | None:
    meta: dict[str, Any] = celery.get_task_meta(run_id)
    return meta if meta["status"] in ("SUCCESS", "FAILURE") else None


def _api(stack: Stack, run_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(
        f"{stack.server}/tasks/{run_id}/", params={"token": make_token(run_id)}, timeout=10
    ).json()
    return answer


def _agrees_with_celery(stack: Stack, expected: dict[str, tuple[str, Any]]) -> None:
    """Celery's own result of every run is what the database row and the API say."""
    celery = RedisBackend(app=celery_app, url=CELERY_RESULTS)
    to_ours = {"SUCCESS": Status.SUCCESSFUL, "FAILURE": Status.FAILED}
    try:
        for run_id, (state, result) in expected.items():
            meta = eventually(lambda run_id=run_id: _final_meta(celery, run_id), timeout=60)
            assert meta["status"] == state, (run_id, meta)
            if state == "SUCCESS":
                assert meta["result"] == result
            row = eventually(
                lambda run_id=run_id, state=state: TaskRun.objects.filter(
                    pk=run_id, status=to_ours[state]
                ).first(),
                timeout=30,
            )
            answer = _api(stack, run_id)
            assert answer["status"] == to_ours[state]
            if state == "SUCCESS":
                assert row.result == result and answer["result"] == result
    finally:
        for run_id in expected:
            celery.forget(run_id)


@pytest.mark.django_db(transaction=True)
def test_the_lifecycle_on_a_cluster_agrees_with_celery_and_spreads_over_the_masters(
    stack: Stack,
) -> None:
    expected: dict[str, tuple[str, Any]] = {}
    for number in range(30):
        expected[enqueue(add, number, 1, queue=stack.prefix).id] = ("SUCCESS", number + 1)
    key = f"cluster-flaky-{uuid.uuid4().hex[:6]}"
    expected[enqueue(flaky, key, 2, queue=stack.prefix).id] = (
        "SUCCESS",
        "succeeded after 3 attempts",
    )
    expected[enqueue(always_fails, "nope", queue=stack.prefix).id] = ("FAILURE", None)
    subject = f"crawl:{uuid.uuid4()}"
    on_subject = enqueue(add, 2, 2, queue=stack.prefix, subject=subject)
    expected[on_subject.id] = ("SUCCESS", 4)
    _agrees_with_celery(stack, expected)

    # Every key of a run is in its shard's slot, and the shards live on every master.
    client = redis.Redis(port=stack.cluster.masters()[0])
    for run_id in list(expected)[:5]:
        base = keys.base_of(run_id)
        slots = {
            client.cluster("keyslot", name)
            for name in (keys.run_hash(run_id), keys.run_stream(run_id), keys.dirty_set(base))
        }
        assert len(slots) == 1, slots
    masters = {stack.cluster.master_of(keys.dirty_set(base)) for base in keys.bases()}
    assert masters == set(stack.cluster.masters())
    # The subject's stream, in a slot of its own, got the run's events.
    entries: Any = connection.get_redis().xrange(keys.subject_stream(subject))
    kinds = [fields[b"kind"].decode() for _, fields in entries]
    assert kinds.count("state") >= 3 and "result" in kinds


@dataclass
class Follower:
    """An EventSource that also leaves by itself every ``every`` events and comes back
    with the last id it saw (a flaky network), besides reconnecting after errors."""

    url: str
    every: int = 40
    lines: list[int] = field(default_factory=list)
    ids: list[tuple[int, int]] = field(default_factory=list)
    final: list[str] = field(default_factory=list)
    reconnects: int = 0
    ended_with: int = 0

    def run(self) -> None:
        last_id = "0-0"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                headers = {"Last-Event-ID": last_id}
                with httpx.stream("GET", self.url, headers=headers, timeout=10) as response:
                    if response.status_code == 204:  # resumed after the end: stop
                        self.ended_with = 204
                        return
                    seen = 0
                    for item in read(response):
                        if isinstance(item, Event):
                            last_id = self._take(item) or last_id
                            seen += 1
                            if seen >= self.every and not self.final:
                                break
            except httpx.HTTPError:
                pass
            self.reconnects += 1
            time.sleep(0.1)

    def _take(self, event: Event) -> str | None:
        if event.kind == "feed":
            self.lines.append(int(event.data["message"].split()[1]))
        if event.kind == "state" and event.data["status"] in ("SUCCESSFUL", "FAILED"):
            self.final.append(event.data["status"])
        if not event.id or event.id == "0-0":
            return None
        milliseconds, _, sequence = event.id.partition("-")
        self.ids.append((int(milliseconds), int(sequence)))
        return event.id


LINES = 150


def _follow(
    stack: Stack, runs: int, delay: float
) -> tuple[list[str], list[Follower], list[threading.Thread]]:
    ids, followers, threads = [], [], []
    for _ in range(runs):
        run = enqueue(numbered_feed, LINES, delay, queue=stack.prefix)
        follower = Follower(f"{stack.server}/tasks/{run.id}/events/?token={make_token(run.id)}")
        thread = threading.Thread(target=follower.run, daemon=True)
        thread.start()
        ids.append(run.id)
        followers.append(follower)
        threads.append(thread)
    return ids, followers, threads


def _every_line_once(followers: list[Follower]) -> None:
    for follower in followers:
        assert follower.final == ["SUCCESSFUL"], follower
        assert follower.lines == list(range(1, LINES + 1)), follower.lines  # no gap, no repeat
        assert follower.ids == sorted(set(follower.ids))  # ids only increase
        assert follower.ended_with == 204  # a spec-conforming client is told to stop


# What a master killed outright may take with it (docs/reliability.md, "Asynchronous
# replication", case 2): the writes of the moment of the kill, a line or two at 30 ms each.
LOST_AT_A_KILL = 3


def _every_kept_line_once(ids: list[str], followers: list[Follower]) -> None:
    """After a kill, Redis itself may have lost the lines its replica had not received:
    each client has every line the promoted master kept, once and in order, and it lacks
    only lines Redis lost. (Lines seen live just before the kill may be ones it lost.)"""
    client = connection.get_redis()
    for run_id, follower in zip(ids, followers, strict=True):
        kept = {
            int(json.loads(values[b"data"])["message"].split()[1])
            for _, values in client.xrange(keys.run_stream(run_id))
            if values.get(b"kind") == b"feed"
        }
        everything = set(range(1, LINES + 1))
        lost_by_redis = everything - kept
        assert len(lost_by_redis) <= LOST_AT_A_KILL, (sorted(lost_by_redis), follower)
        assert everything - set(follower.lines) <= lost_by_redis, follower.lines
        assert follower.lines == sorted(set(follower.lines)), follower.lines  # no repeat
        assert follower.final == ["SUCCESSFUL"], follower
        assert follower.ids == sorted(set(follower.ids))
        assert follower.ended_with == 204


@pytest.mark.django_db(transaction=True)
def test_streams_resume_without_a_gap_on_a_cluster(stack: Stack) -> None:
    ids, followers, threads = _follow(stack, 4, delay=0.01)
    for thread in threads:
        thread.join(90)
    _every_line_once(followers)
    assert all(f.reconnects >= LINES // f.every for f in followers)  # it did resume
    _agrees_with_celery(stack, dict.fromkeys(ids, ("SUCCESS", LINES)))


@pytest.mark.django_db(transaction=True)
def test_idempotency_on_a_cluster(stack: Stack) -> None:
    key = f"payment:{uuid.uuid4().hex[:8]}"
    first = enqueue(add, 1, 2, queue=stack.prefix, idempotency_key=key)
    again = enqueue(add, 1, 2, queue=stack.prefix, idempotency_key=key)
    assert again.id == first.id
    welcome = f"welcome:{uuid.uuid4().hex[:8]}"
    held = enqueue(sleepy, 1.0, queue=stack.prefix, idempotency_key=welcome, key_scope="active")
    assert enqueue(sleepy, 1.0, queue=stack.prefix, idempotency_key=welcome,
                   key_scope="active").id == held.id  # fmt: skip
    held.wait(timeout=60)
    after = enqueue(sleepy, 0.0, queue=stack.prefix, idempotency_key=welcome, key_scope="active")
    assert after.id != held.id  # the holder finished: a new run
    _agrees_with_celery(
        stack, {first.id: ("SUCCESS", 3), held.id: ("SUCCESS", 1.0), after.id: ("SUCCESS", 0.0)}
    )


@pytest.mark.django_db(transaction=True)
def test_a_killed_nodes_runs_are_settled_by_another_on_a_cluster(stack: Stack) -> None:
    queue = f"{stack.prefix}-victim"
    name = f"victim-{uuid.uuid4().hex[:4]}"
    victim = stack.worker(name, queue, concurrency=4)
    runs = [enqueue(sleepy, 60, queue=queue).id for _ in range(4)]

    def all_running() -> list[str] | None:
        pipe = connection.get_redis().pipeline(transaction=False)
        for run_id in runs:
            pipe.hget(keys.run_hash(run_id), "status")
        return runs if all(s == b"RUNNING" for s in pipe.execute()) else None

    running = eventually(all_running, timeout=60)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    killed_at = time.time()
    # The main worker settles them: the active sets are in the runs' shards.
    for run_id in running:
        row = eventually(
            lambda run_id=run_id: TaskRun.objects.filter(pk=run_id, status=Status.FAILED).first(),
            timeout=LOST_AFTER + 30,
        )
        assert row.error_type == "tasktrail.exceptions.WorkerLost"
        assert row.finished_at.timestamp() - killed_at < LOST_AFTER + 15
    # Its active sets, one per shard, are gone with it.
    client = connection.get_redis()
    assert not any(client.exists(keys.active_set(f"{name}@cluster", b)) for b in keys.bases())


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_a_killed_master_mid_run_loses_no_record_and_streams_resume_without_a_gap(
    stack: Stack,
) -> None:
    adds: dict[str, tuple[str, Any]] = {}
    for number in range(10):
        adds[enqueue(add, number, 1, queue=stack.prefix).id] = ("SUCCESS", number + 1)
    ids, followers, threads = _follow(stack, 3, delay=0.03)
    eventually(lambda: all(len(f.lines) >= 25 for f in followers), timeout=60)
    # The master of the first followed run's shard: its streams, record and dirty set.
    victim = stack.cluster.master_of(keys.run_hash(ids[0]))
    started = time.monotonic()
    stack.cluster.kill(victim)
    for number in range(10, 30):  # publishes while the replica takes over
        adds[enqueue(add, number, 1, queue=stack.prefix).id] = ("SUCCESS", number + 1)
        time.sleep(0.05)
    promoted = stack.cluster.failed_over(victim)
    print(f"\nmaster {victim} killed; {promoted} took over in {time.monotonic() - started:.2f} s")
    for thread in threads:
        thread.join(90)
    _every_kept_line_once(ids, followers)
    print(f"stream reconnects: {[f.reconnects for f in followers]}")
    _agrees_with_celery(stack, {**adds, **dict.fromkeys(ids, ("SUCCESS", LINES))})
    # The killed node comes back empty, as a replica of the promoted one.
    stack.cluster.start_node(victim)
    eventually(stack.cluster.healthy, timeout=60)


@pytest.mark.django_db(transaction=True)
@pytest.mark.urls("tests.urls_ops")
def test_the_dashboard_metrics_and_cancel_go_through_every_shard(stack: Stack) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    from tasktrail.actions import cancel

    task = "tests.testapp.tasks.add"
    done = [enqueue(add, n, n, queue=stack.prefix) for n in range(12)]
    for run in done:
        run.wait(timeout=60)
    # A waiting run (its queue has no worker) cancelled: every worker learns it.
    waiting = enqueue(add, 0, 0, queue=f"{stack.prefix}-nobody")
    cancel(waiting.id)
    assert waiting.refresh().status == Status.CANCELLED
    client = connection.get_redis()
    assert any(client.zscore(keys.cancels(b), waiting.id) for b in keys.bases())

    staff = Client()
    staff.force_login(User.objects.create_superuser(f"boss-{uuid.uuid4().hex[:6]}", "", "pw"))
    for page in ("/ops/", "/ops/runs/", "/ops/workers/", "/ops/queues/", "/ops/latency/",
                 f"/ops/runs/{done[0].id}/", f"/ops/runs/{done[0].id}/timeline/data/"):  # fmt: skip
        response = staff.get(page)
        assert response.status_code == 200, (page, response.content[:300])
    workers = staff.get("/ops/workers/").content.decode()
    assert "main@cluster" in workers
    # Counters summed over the shards: at least these twelve (the module ran more).
    text = staff.get("/metrics").content.decode()
    [line] = [
        line for line in text.splitlines()
        if line.startswith("tasktrail_runs_finished_total") and f'task="{task}"' in line
        and 'status="SUCCESSFUL"' in line
    ]  # fmt: skip
    assert float(line.rsplit(" ", 1)[1]) >= 12


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_stream_openers_waits_for_connections_instead_of_a_503(stack: Stack) -> None:
    """The uvicorn holds REDIS_POOL_SIZE (8) connections per node: 80 openers at once
    take turns (redis-py's asyncio cluster client alone raised at once: a 503 each)."""
    run = enqueue(sleepy, 3.0, queue=stack.prefix)
    url = f"{stack.server}/tasks/{run.id}/events/?token={make_token(run.id)}"
    answers: list[int] = []

    def open_one() -> None:
        with httpx.stream("GET", url, timeout=30) as response:
            answers.append(response.status_code)
            for item in read(response):
                if isinstance(item, Event):
                    break  # the snapshot arrived

    threads = [threading.Thread(target=open_one) for _ in range(80)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers == [200] * 80


@pytest.mark.django_db(transaction=True)
def test_a_child_inherits_from_its_parent_in_another_shard_only_when_new(stack: Stack) -> None:
    """As on one Redis: a new run takes its parent's owner, team and subject; a run that
    names its own owner, or whose record exists, takes nothing."""
    from tasktrail.transitions import apply

    parent, child, own, known = (str(uuid.uuid4()) for _ in range(4))
    while keys.base_of(child) == keys.base_of(parent):
        child = str(uuid.uuid4())
    apply(
        parent,
        "publish",
        status=Status.READY,
        create={"id": parent, "task": "t", "owner": "7", "team": "ops", "subject": "crawl:x"},
    )
    apply(
        child, "publish", status=Status.READY, create={"id": child, "task": "t"}, parent_id=parent
    )
    apply(
        own,
        "publish",
        status=Status.READY,
        create={"id": own, "task": "t", "owner": ""},
        parent_id=parent,
    )
    apply(known, "publish", status=Status.READY, create={"id": known, "task": "t"})
    apply(known, "start", attempt=1, status=Status.RUNNING, create={"id": known},
          parent_id=parent)  # fmt: skip
    client = connection.get_redis()

    def context(run_id: str) -> list[Any]:
        return list(client.hmget(keys.run_hash(run_id), "owner", "team", "subject"))

    assert context(child) == [b"7", b"ops", b"crawl:x"]
    assert context(own) == [b"", None, None]
    assert context(known) == [None, None, None]


@pytest.mark.django_db(transaction=True)
def test_a_failed_subject_append_never_applies_the_transition_twice(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasktrail import transitions
    from tasktrail.transitions import apply

    def refused(*args: Any) -> None:
        raise redis.ConnectionError("the subject's master is failing over")

    monkeypatch.setattr(transitions, "_append_to_subject", refused)
    run_id = str(uuid.uuid4())
    apply(run_id, "publish", status=Status.READY,
          create={"id": run_id, "task": "t", "subject": "crawl:y"})  # fmt: skip
    applied = apply(run_id, "feed", attempt=0, events=[("feed", {"message": "one"})])
    assert applied is not None and len(applied.ids) == 1
    assert not transitions._backlog and transitions._down_until == 0.0  # nothing deferred
    events: Any = connection.get_redis().xrange(keys.run_stream(run_id))
    assert [e[b"kind"] for _, e in events].count(b"feed") == 1


def test_a_web_process_takes_turns_for_a_nodes_connections(stack: Stack) -> None:
    """A web process's sync client holds REDIS_POOL_SIZE connections per node; twenty
    threads blocking at once wait their turn (the cluster nodes alone raised at once)."""
    overrides = {**settings.TASKTRAIL, "REDIS_URL": stack.cluster.url,
                 "KEY_PREFIX": stack.prefix, "REDIS_POOL_SIZE": 2}  # fmt: skip
    with override_settings(TASKTRAIL=overrides):
        connection._clients.pop(stack.cluster.url, None)
        try:
            client = connection.get_redis()
            key = f"{stack.prefix}:nothing-{uuid.uuid4().hex}"
            errors: list[BaseException] = []

            def wait_a_moment() -> None:
                try:
                    client.blpop([key], timeout=0.3)  # holds its connection 0.3 s
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=wait_a_moment) for _ in range(20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert errors == []
        finally:
            connection._clients.pop(stack.cluster.url, None)
