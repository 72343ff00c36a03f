"""Redis Sentinel: the URL, the check, and failovers mid-run that lose nothing.

The failover tests run a real worker and a real uvicorn whose tasktrail Redis is a
local Sentinel set-up (tests/sentinel_cluster.py: 1 master, 1 replica, 3 sentinels).
Celery's broker and its own result backend stay on the shared Redis: Celery is the
referee of what each run returned.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery.backends.redis import RedisBackend
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tasktrail import Status, connection, enqueue
from tasktrail.access import make_token
from tasktrail.checks import check_settings
from tasktrail.models import TaskRun
from tasktrail.sentinel import SentinelAddress, parse_sentinel_url, redact
from tests.celery_app import app as celery_app
from tests.conftest import ROOT, _free_port, _stop
from tests.helpers import eventually
from tests.sentinel_cluster import SentinelCluster
from tests.sse_client import Event, read
from tests.testapp.tasks import add, numbered_feed

# Celery's own result backend for the failover runs: plain Redis, untouched by them.
# Redis and process behaviour the database and Django's version do not change: pass 1 only.
pytestmark = pytest.mark.once

CELERY_RESULTS = "redis://127.0.0.1:6379/10"


# -- the URL and the check ---------------------------------------------------------------


def test_a_sentinel_url_names_the_sentinels_the_service_the_db_and_the_credentials() -> None:
    assert parse_sentinel_url(
        "redis+sentinel://:s%40cret@10.0.0.1:26380,10.0.0.2,[::1]:26381/mymaster/3"
        "?sentinel_password=other"
    ) == SentinelAddress(
        sentinels=(("10.0.0.1", 26380), ("10.0.0.2", 26379), ("::1", 26381)),
        service="mymaster",
        db=3,
        password="s@cret",
        sentinel_password="other",
    )
    assert parse_sentinel_url("redis+sentinel://ann:pw@h1:1/svc/") == SentinelAddress(
        sentinels=(("h1", 1),), service="svc", username="ann", password="pw"
    )
    assert parse_sentinel_url("REDIS+SENTINEL://h/svc").db == 0
    assert redact("redis+sentinel://:pw@h1,h2/svc/0?sentinel_password=x") == (
        "redis+sentinel://h1,h2/svc/0"
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://h1:26379", "service name is missing"),
        ("redis+sentinel://h1:26379//0", "service name is missing"),
        ("redis+sentinel:///mymaster", "names no sentinel host"),
        ("redis+sentinel://h1,,h2/mymaster", "a sentinel host is empty"),
        ("redis+sentinel://h1:port/mymaster", "the port of sentinel 'h1' is 'port'"),
        ("redis+sentinel://h1:0/mymaster", "the port of sentinel 'h1' is '0'"),
        ("redis+sentinel://::1/mymaster", "in brackets"),
        ("redis+sentinel://h1/mymaster/zero", "the database 'zero' is not a number"),
        ("redis+sentinel://h1/mymaster/0/extra", "more than /service_name/db"),
        ("redis+sentinel://h1/mymaster?master_name=x", "unknown option master_name"),
    ],
)
def test_a_malformed_sentinel_url_is_refused_with_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="redis\\+sentinel://") as caught:
        parse_sentinel_url(url)
    assert problem in str(caught.value)
    with override_settings(TASKTRAIL={**settings.TASKTRAIL, "REDIS_URL": url}):
        errors = [e for e in check_settings() if e.id == "tasktrail.E005"]
    assert len(errors) == 1
    assert problem in errors[0].msg
    assert "redis+sentinel://" in (errors[0].hint or "")


def test_the_check_accepts_a_sentinel_url_and_still_refuses_other_schemes() -> None:
    good = "redis+sentinel://h1:26379,h2:26379/mymaster/0"
    with override_settings(TASKTRAIL={**settings.TASKTRAIL, "REDIS_URL": good}):
        assert not [e for e in check_settings() if e.id == "tasktrail.E005"]
    # Celery's own sentinel URL form is not tasktrail's: the hint says which to write.
    with override_settings(TASKTRAIL={**settings.TASKTRAIL, "REDIS_URL": "sentinel://h1:26379"}):
        (error,) = [e for e in check_settings() if e.id == "tasktrail.E005"]
    assert "redis+sentinel://" in (error.hint or "")


def test_a_password_never_appears_in_the_error() -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        parse_sentinel_url("redis+sentinel://:hunter2@h1/")
    assert "hunter2" not in str(caught.value)


# -- failovers mid-run -------------------------------------------------------------------


@dataclass
class Processes:
    """A worker and a uvicorn whose tasktrail Redis is the Sentinel service ``service``."""

    url: str
    server: str
    prefix: str
    logs: Path


@dataclass
class Stack:
    cluster: SentinelCluster
    server: str
    prefix: str
    logs: Path


@pytest.fixture(scope="module")
def sentinel_processes(
    tmp_path_factory: pytest.TempPathFactory, django_db_setup: None
) -> Iterator[Processes]:
    """Started once for the module (a worker and a uvicorn take most of a test's time on
    a loaded machine); each test gives them a fresh Sentinel set-up of the same name."""
    directory = tmp_path_factory.mktemp("sentinel-processes")
    url = SentinelCluster(directory).url
    prefix = f"tt-sentinel-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ)
    env.update(
        TASKTRAIL_TEST_REDIS=url,
        TASKTRAIL_TEST_PREFIX=prefix,  # also the queue: the session's worker never sees these
        TASKTRAIL_TEST_RESULT_BACKEND=CELERY_RESULTS,
        TASKTRAIL_TEST_DB_NAME=str(settings.DATABASES["default"]["NAME"]),
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]),
    )
    port = _free_port()
    logs = [open(directory / name, "wb") for name in ("worker.log", "web.log")]  # noqa: SIM115
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "-P", "prefork",
             "-c", "5", "-l", "warning", "-n", f"{prefix}@%h", "--without-gossip",
             "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=logs[0], stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.asgi:application", "--port", str(port),
             "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=logs[1], stderr=subprocess.STDOUT,
        ),
    ]  # fmt: skip
    try:
        eventually(lambda: _listening(port), timeout=60)
        yield Processes(url, f"http://127.0.0.1:{port}", prefix, directory)
    finally:
        for process in processes:
            _stop(process)
        for log in logs:
            log.close()
        client = connection._clients.pop(url, None)
        if client is not None:
            client.close()


@pytest.fixture
def sentinel_stack(sentinel_processes: Processes, tmp_path: Path) -> Iterator[Stack]:
    """A fresh Sentinel set-up for the module's worker and uvicorn."""
    cluster = SentinelCluster(tmp_path, service=sentinel_processes.url.rsplit("/", 2)[-2])
    assert cluster.url == sentinel_processes.url
    # This thread's Celery result backend stays on the session's Redis (a backend made
    # under the override below would keep the cluster's URL for good).
    assert celery_app.backend is not None
    try:
        cluster.start()
        overrides = {
            **settings.TASKTRAIL,
            "REDIS_URL": cluster.url,
            "KEY_PREFIX": sentinel_processes.prefix,
        }
        with override_settings(TASKTRAIL=overrides):
            yield Stack(
                cluster, sentinel_processes.server, sentinel_processes.prefix,
                sentinel_processes.logs,
            )  # fmt: skip
    finally:
        cluster.stop()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


@dataclass
class Follower:
    """What a browser's EventSource does: on a closed stream or an error, reconnect
    with the last event id it saw."""

    url: str
    lines: list[int] = field(default_factory=list)
    ids: list[tuple[int, int]] = field(default_factory=list)
    final: list[str] = field(default_factory=list)
    reconnects: int = 0

    def run(self) -> None:
        last_id = "0-0"  # the whole log: the run may have begun before the client connects
        deadline = time.monotonic() + 75
        while time.monotonic() < deadline and not self.final:
            headers = {"Last-Event-ID": last_id}
            try:
                with httpx.stream("GET", self.url, headers=headers, timeout=10) as response:
                    if response.status_code == 200:
                        for item in read(response):
                            if isinstance(item, Event):
                                last_id = self._take(item) or last_id
            except httpx.HTTPError:
                pass
            if not self.final:
                self.reconnects += 1
                time.sleep(0.3)

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
DELAY = 0.03  # about 4.5 s of feed lines per followed run


def _follow(stack: Stack, runs: int) -> tuple[list[str], list[Follower], list[threading.Thread]]:
    ids, followers, threads = [], [], []
    for _ in range(runs):
        run = enqueue(numbered_feed, LINES, DELAY, queue=stack.prefix)
        follower = Follower(f"{stack.server}/tasks/{run.id}/events/?token={make_token(run.id)}")
        thread = threading.Thread(target=follower.run, daemon=True)
        thread.start()
        ids.append(run.id)
        followers.append(follower)
        threads.append(thread)
    return ids, followers, threads


def _enqueue_adds(stack: Stack, count: int, into: list[tuple[str, int]]) -> None:
    for number in range(count):
        into.append((enqueue(add, number, 1, queue=stack.prefix).id, number + 1))
        time.sleep(0.05)


def _break_mid_run(stack: Stack, break_it: Callable[[SentinelCluster], int]) -> None:
    """Fail the master over while runs report and streams follow them; nothing is lost."""
    adds: list[tuple[str, int]] = []
    _enqueue_adds(stack, 10, adds)
    streamed, followers, threads = _follow(stack, 3)
    eventually(lambda: all(len(f.lines) >= 25 for f in followers), timeout=30)
    started = time.monotonic()
    moved: list[int] = []
    breaking = threading.Thread(target=lambda: moved.append(break_it(stack.cluster)))
    breaking.start()
    _enqueue_adds(stack, 20, adds)  # publishes while the master changes
    breaking.join(40)
    print(f"\nfailover to {moved} took {time.monotonic() - started:.2f} s")
    for thread in threads:
        thread.join(75)

    for follower in followers:
        assert follower.final == ["SUCCESSFUL"], follower
        # Every feed line exactly once, in order: no gap, no duplicate.
        assert follower.lines == list(range(1, LINES + 1)), follower.lines
        assert follower.ids == sorted(set(follower.ids))  # ids only increase
    print(f"stream reconnects: {[f.reconnects for f in followers]}")

    # 0 records lost: what Celery says each run returned is in the database and the API.
    celery = RedisBackend(app=celery_app, url=CELERY_RESULTS)
    expected = dict(adds)
    expected.update(dict.fromkeys(streamed, LINES))
    try:
        for run_id, result in expected.items():
            meta = eventually(lambda run_id=run_id: _final_meta(celery, run_id), timeout=30)
            assert (meta["status"], meta["result"]) == ("SUCCESS", result)
            row = eventually(
                lambda run_id=run_id: TaskRun.objects.filter(
                    pk=run_id, status=Status.SUCCESSFUL
                ).first(),
                timeout=30,
            )
            assert row.result == result
            answer = httpx.get(
                f"{stack.server}/tasks/{run_id}/", params={"token": make_token(run_id)}, timeout=10
            ).json()
            assert (answer["status"], answer["result"]) == ("SUCCESSFUL", result)
    finally:
        for run_id in expected:
            celery.forget(run_id)
    assert len(expected) == 33


def _final_meta(celery: RedisBackend, run_id: str) -> dict[str, Any] | None:
    meta: dict[str, Any] = celery.get_task_meta(run_id)
    return meta if meta["status"] in ("SUCCESS", "FAILURE") else None


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_a_sentinel_failover_mid_run_loses_no_record_and_streams_resume_without_a_gap(
    sentinel_stack: Stack,
) -> None:
    web, worker = sentinel_stack.logs / "web.log", sentinel_stack.logs / "worker.log"
    offsets = (web.stat().st_size, worker.stat().st_size)
    _break_mid_run(sentinel_stack, SentinelCluster.failover)
    # The old master stayed up with its connections open: the hub and the worker's
    # cancellation follower left it on their own, before the sentinels demoted it.
    moved = "the master moved (Sentinel failover)"
    assert f"event subscriber lost Redis ({moved})" in web.read_bytes()[offsets[0] :].decode()
    assert (
        f"cancellation follower lost Redis: {moved}" in worker.read_bytes()[offsets[1] :].decode()
    )


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_a_killed_master_mid_run_loses_no_record_and_streams_resume_without_a_gap(
    sentinel_stack: Stack,
) -> None:
    _break_mid_run(sentinel_stack, SentinelCluster.kill_master)


@pytest.mark.django_db(transaction=True)
def test_the_result_backend_and_the_health_check_work_through_sentinel(tmp_path: Path) -> None:
    from tasktrail.backend import TasktrailBackend
    from tasktrail.operations import healthcheck

    cluster = SentinelCluster(tmp_path)
    try:
        cluster.start(for_failover=False)
        overrides = {**settings.TASKTRAIL, "REDIS_URL": cluster.url}
        with override_settings(TASKTRAIL=overrides):
            backend = TasktrailBackend(app=celery_app)
            run_id = str(uuid.uuid4())
            backend.store_result(run_id, 42, "SUCCESS")
            assert backend.get_task_meta(run_id)["result"] == 42
            assert backend.client.connection_pool.master_address == ("127.0.0.1", 27100)
            backend.client.close()
            (redis_check,) = [c for c in healthcheck() if c.name == "redis"]
            assert redis_check.ok
            assert redis_check.detail == f"{cluster.url} (master 127.0.0.1:27100)"
    finally:
        client = connection._clients.pop(cluster.url, None)
        if client is not None:
            client.close()
        cluster.stop()


def test_sentinel_pools_keep_the_bounds_and_names_of_single_node_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No server is needed: a pool connects on first use."""
    import asyncio

    import redis as redis_py
    from redis.sentinel import SentinelConnectionPool

    url = "redis+sentinel://127.0.0.1:27199/svc/2"
    with override_settings(TASKTRAIL={**settings.TASKTRAIL, "REDIS_URL": url}):
        monkeypatch.setattr(connection, "_clients", {})
        web = connection.get_redis().connection_pool
        assert isinstance(web, SentinelConnectionPool)
        assert isinstance(web, redis_py.BlockingConnectionPool)  # bounded in a web process
        assert web.max_connections == settings.TASKTRAIL.get("REDIS_POOL_SIZE", 8)
        assert web.connection_kwargs["client_name"] == connection.client_name()
        assert web.connection_kwargs["db"] == 2
        monkeypatch.setattr(connection, "_bounded", False)  # what in_worker() sets
        monkeypatch.setattr(connection, "_clients", {})
        worker = connection.get_redis().connection_pool
        assert isinstance(worker, SentinelConnectionPool)
        assert not isinstance(worker, redis_py.BlockingConnectionPool)

        async def loop_pool() -> object:
            return connection.get_async_redis().connection_pool

        pool: Any = asyncio.run(loop_pool())
        assert pool.service_name == "svc"
        assert isinstance(pool, redis_py.asyncio.BlockingConnectionPool)
        assert pool.max_connections == settings.TASKTRAIL.get("REDIS_POOL_SIZE", 8)
        assert pool.connection_kwargs["client_name"] == connection.client_name()
        for client_pool in (web, worker):
            client_pool.disconnect()
