"""Many hosts (issue 12, item 3): two web hosts and two worker hosts, each in a network
namespace of its own, sharing a private Redis (tasktrail and the broker) and a private
PostgreSQL on the bridge's address.

- 200 SSE clients, spread over both web hosts, each follow one of 20 runs that the two
  worker hosts execute: every client receives every event of its run, in order, whichever
  host it is connected to and whichever host ran the task.
- A whole worker host is cut off (its link down; its processes keep running): the other
  host's settler finds it silent after ``LOST_AFTER`` and settles its RUNNING runs as
  docs/reliability.md says: the ``acks_late`` one goes back to its queue and runs again
  on the surviving host, the acknowledged one is FAILED ``WorkerLost``.
- Clocks: w2's wall clock is 5 s ahead; liveness is judged on Redis's clock, so w2
  never takes the live w1 for lost before the cut.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings
from scripts.services import PrivatePostgres, PrivateRedis

from tasktrail import keys
from tasktrail.access import make_token
from tests.netns import GATEWAY, Network, network

pytestmark = [
    pytest.mark.once,
    pytest.mark.timeout(240),  # about 70 s; a loaded machine starts processes slowly
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

ROOT = Path(__file__).resolve().parent.parent
REDIS_PORT, POSTGRES_PORT, WEB_PORT = 27601, 27602, 27610  # this test's port range
HEARTBEAT, LOST_AFTER = 0.5, 3.0
RUNS, CLIENTS_PER_RUN, FEED_LINES = 20, 10, 30

# Publishes runs on the private services, prints their ids: argv[1] [[task, args, options]].
ENQUEUE = """
import importlib, json, sys
import django
django.setup()
import tests.celery_app
from tasktrail import enqueue
ids = []
for path, args, options in json.loads(sys.argv[1]):
    module, _, name = path.rpartition(".")
    ids.append(enqueue(getattr(importlib.import_module(module), name), *args, **options).id)
print(json.dumps(ids))
"""


def _prefix() -> str:
    return str(settings.TASKTRAIL["KEY_PREFIX"])


# No host's clock is trusted: w2's runs 5 s ahead (libfaketime, the wall clock only, as
# scripts/skew_trial.py does), more than LOST_AFTER.
FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SKEWS = {"w2": 5.0}


def _env(host: str = "") -> dict[str, str]:
    shifted: dict[str, str] = {}
    if host in SKEWS:
        shifted = {
            "LD_PRELOAD": str(FAKETIME),
            "FAKETIME": f"{SKEWS[host]:+g}",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }
    # scripts/faketime_site: a sitecustomize that keeps time.sleep working under it.
    path = [str(ROOT / "scripts" / "faketime_site")] if shifted else []
    return {
        **os.environ,
        **shifted,
        "PYTHONPATH": os.pathsep.join([*path, str(ROOT), str(ROOT / "src")]),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TASKTRAIL_TEST_REDIS": f"redis://{GATEWAY}:{REDIS_PORT}/0",
        "TASKTRAIL_TEST_BROKER": f"redis://{GATEWAY}:{REDIS_PORT}/1",
        "TASKTRAIL_TEST_DB": "postgres",
        "TASKTRAIL_TEST_DB_NAME": "postgres",
        "PGHOST": GATEWAY,
        "PGPORT": str(POSTGRES_PORT),
        "PGUSER": "postgres",
        "TASKTRAIL_TEST_HEARTBEAT": str(HEARTBEAT),
        "TASKTRAIL_TEST_LOST_AFTER": str(LOST_AFTER),
    }


@dataclass
class Stack:
    net: Network
    redis: redis.Redis
    logs: Path
    webs: list[str]

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]

    def enqueue(self, *calls: tuple[str, list[Any], dict[str, Any]]) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", ENQUEUE, json.dumps(calls)], cwd=ROOT, env=_env(),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        ids: list[str] = json.loads(done.stdout.splitlines()[-1])
        return ids

    def start_worker(self, host: str, concurrency: int) -> None:
        argv = [
            sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
            "-P", "prefork", "-c", str(concurrency), "--prefetch-multiplier", "1",
            "-l", "warning", "-n", f"{host}@tt-mh-{host}", "--include", "tests.acceptance.tasks",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        self.net.start(host, argv, _env(host), self.logs / f"{host}.log")

    def wait_worker(self, host: str) -> None:
        name = f"{host}@tt-mh-{host}"
        _until(
            lambda: self.redis.zscore(f"{_prefix()}:workers", name) is not None,
            f"worker {name} to beat",
            90,
            lambda: self.log(host),
        )

    def record(self, run_id: str) -> dict[str, str]:
        raw: Any = self.redis.hgetall(keys.run_hash(run_id))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def detail(self, run_id: str) -> dict[str, Any]:
        url = f"{self.webs[0]}/tasks/{run_id}/?token={make_token(run_id)}"
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json())


_BEGAN = time.monotonic()


def _mark(what: str) -> None:
    print(f"[multihost] {time.monotonic() - _BEGAN:6.1f} s  {what}", flush=True)


def _until(probe: Callable[[], object], what: str, timeout: float, log: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"waited {timeout:g} s for {what}:\n{log()}"
        time.sleep(0.1)


def _listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _clock_shift(net: Network, host: str) -> float:
    """How far ``time.time()`` of a process started on ``host`` is from this one's."""
    code = "import time; time.sleep(0.01); print(time.time())"
    command = net.hosts[host].command([sys.executable, "-c", code])
    before = time.time()
    done = subprocess.run(command, env=_env(host), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout) - (before + time.time()) / 2


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    if not FAKETIME.exists():
        pytest.fail(f"{FAKETIME} is missing; install it: apt-get install -y libfaketime")
    with network() as net:
        for host in ("web1", "web2", "w1", "w2"):
            net.add_host(host)
        for host, skew in SKEWS.items():
            assert abs(_clock_shift(net, host) - skew) < 1.0, f"{host}'s clock is not shifted"
        private_redis = PrivateRedis(tmp_path, port=REDIS_PORT, host=GATEWAY)
        _mark("namespaces up")
        postgres = PrivatePostgres(listen=GATEWAY, port=POSTGRES_PORT)
        _mark("initdb done")
        try:
            private_redis.start()
            postgres.start()
            migrate = subprocess.Popen(
                [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
                cwd=ROOT, env=_env(),
            )  # fmt: skip
            webs = []
            for web in ("web1", "web2"):
                address = net.hosts[web].address
                argv = [sys.executable, "-m", "uvicorn", "tests.asgi:application",
                        "--host", address, "--port", str(WEB_PORT), "--log-level", "warning"]  # fmt: skip
                net.start(web, argv, _env(web), tmp_path / f"{web}.log")
                webs.append(f"http://{address}:{WEB_PORT}")
            assert migrate.wait(120) == 0
            _mark("migrated")
            client = redis.Redis.from_url(private_redis.url)
            yield Stack(net, client, tmp_path, webs)
        finally:
            net.stop_processes()
            private_redis.kill()
            postgres.remove()


@dataclass
class Followed:
    connected_ms: float  # this machine's clock, as Redis's stream ids (one machine here)
    ids: list[str] = field(default_factory=list)

    def live(self) -> int:
        return sum(1 for i in self.ids if int(i.split("-")[0]) > self.connected_ms)


def _follow(stack: Stack, run_ids: list[str]) -> tuple[dict[tuple[str, int], Followed], float]:
    """``CLIENTS_PER_RUN`` SSE clients per run, alternately on each web host; returns the
    event ids each received (by run and client) and the seconds until the last closed."""

    async def one(client: httpx.AsyncClient, url: str) -> Followed:
        # From the log's start, as a resuming EventSource asks: a client that connects
        # after its run began still gets every event; the rest arrive live.
        headers = {"Last-Event-ID": "0-0"}
        async with client.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200
            followed = Followed(connected_ms=time.time() * 1000)
            async for line in response.aiter_lines():
                if line.startswith("id:"):
                    followed.ids.append(line[3:].strip())
        return followed

    async def everyone() -> dict[tuple[str, int], Followed]:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=httpx.Timeout(60), limits=limits) as client:
            jobs = {
                (run_id, n): one(
                    client,
                    f"{stack.webs[n % 2]}/tasks/{run_id}/events/?token={make_token(run_id)}",
                )
                for run_id in run_ids
                for n in range(CLIENTS_PER_RUN)
            }
            results = await asyncio.gather(*jobs.values())
            return dict(zip(jobs, results, strict=True))

    started = time.monotonic()
    received = asyncio.run(everyone())
    return received, time.monotonic() - started


def test_two_web_hosts_and_two_worker_hosts(stack: Stack) -> None:
    # Host w1 takes two runs that hold (300 s) before w2 exists, so they run there.
    stack.start_worker("w1", concurrency=4)
    stack.wait_worker("w1")
    _mark("w1 beats")
    hold: list[tuple[str, list[Any], dict[str, Any]]] = [
        ("tests.acceptance.tasks.rerunnable", ["mh-again", 300], {}),
        ("tests.acceptance.tasks.once", ["mh-once", 300], {}),
    ]
    again, once = stack.enqueue(*hold)
    _until(
        lambda: all(stack.record(r).get("status") == "RUNNING" for r in (again, once)),
        "the held runs to start on w1",
        60,
        lambda: stack.log("w1"),
    )
    _mark("held runs RUNNING on w1")
    stack.start_worker("w2", concurrency=3)
    stack.wait_worker("w2")
    _mark("w2 beats")
    for web in ("web1", "web2"):  # both web hosts answer
        address = stack.net.hosts[web].address
        _until(partial(_listening, address, WEB_PORT), web, 60, partial(stack.log, web))

    # 200 clients over both web hosts. The runs start 3 s later, so that most events
    # reach the clients live (the clients connect meanwhile, on a loaded machine).
    feed = ("tests.testapp.tasks.numbered_feed", [FEED_LINES, 0.05], {"countdown": 3})
    feeds: list[tuple[str, list[Any], dict[str, Any]]] = [feed]
    run_ids = stack.enqueue(*(feeds * RUNS))
    _mark("feeds enqueued")
    received, followed_for = _follow(stack, run_ids)
    _mark("clients done")
    workers: set[str | None] = set()
    for run_id in run_ids:
        entries: Any = stack.redis.xrange(keys.run_stream(run_id))
        stored = [i.decode() for i, _ in entries]
        assert len(stored) > FEED_LINES  # the feed lines, progress and state changes
        for n in range(CLIENTS_PER_RUN):
            got = received[(run_id, n)].ids
            assert [i for i in got if i in stored] == stored, (run_id, n, got, stored)
        assert stack.detail(run_id)["status"] == "SUCCESSFUL"
        workers.add(stack.record(run_id).get("worker"))
    assert workers == {"w1@tt-mh-w1", "w2@tt-mh-w2"}  # both worker hosts ran feeds
    events = sum(len(f.ids) for f in received.values())
    live = sum(f.live() for f in received.values())
    print(
        f"[multihost] {len(received)} clients, {events} events ({live} live), {followed_for:.1f} s"
    )

    # w2's settler, its clock 5 s ahead, ran every round all along: a live w1 lost nothing.
    for run_id in (again, once):
        assert stack.record(run_id)["status"] == "RUNNING"
        assert stack.record(run_id)["worker"] == "w1@tt-mh-w1"
    # Host w1 drops off the network; w2's settler settles its two runs.
    stack.net.cut("w1")
    cut_at = time.monotonic()
    _mark("w1 cut")
    settled: dict[str, float] = {}

    def both_settled() -> bool:
        for run_id in (again, once):
            record = stack.record(run_id)
            if run_id not in settled and record.get("worker") != "w1@tt-mh-w1":
                settled[run_id] = time.monotonic() - cut_at
            if run_id not in settled and record.get("status") != "RUNNING":
                settled[run_id] = time.monotonic() - cut_at
        return len(settled) == 2

    _until(both_settled, "w2 to settle w1's runs", LOST_AFTER + 30, lambda: stack.log("w2"))
    _until(
        lambda: (
            stack.detail(again)["status"] == "SUCCESSFUL"
            and stack.detail(once)["status"] == "FAILED"
        ),
        "the settled runs to finish",
        30,
        lambda: stack.log("w2"),
    )
    assert stack.record(again)["worker"] == "w2@tt-mh-w2"  # ran again on the other host
    executions = stack.redis.get(f"{_prefix()}:acc:exec:mh-again")
    assert executions == b"2"  # the held first execution (cut off) and w2's
    failed = stack.detail(once)["error"]
    assert failed["type"] == "tasktrail.exceptions.WorkerLost", failed
    assert stack.redis.get(f"{_prefix()}:acc:exec:mh-once") == b"1"  # never copied
    print(f"[multihost] w1 cut off: settled after {max(settled.values()):.1f} s")
    assert max(settled.values()) < LOST_AFTER + 10
