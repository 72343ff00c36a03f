"""The acceptance tier's own processes: Celery workers it may kill, and a uvicorn.

Every worker runs ``tests.acceptance.celery_app`` with ``settings_acceptance`` (a
heartbeat every 0.5 s, lost after 3 s) in its own process group, so a test can
SIGKILL a whole node (main process and pool children) at once, and teardown can
stop every process it started, whatever the test did.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

import tests.acceptance.tasks  # noqa: F401  (the test process publishes these tasks)

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT = 0.5
LOST_AFTER = 3.0
FIGURES = ROOT / "tests" / ".acceptance-figures.log"


def prefix() -> str:
    return str(settings.TASKTRAIL["KEY_PREFIX"])


def requeue_queue() -> str:
    """Where re-queued acceptance runs go (``CELERY_TASK_ROUTES`` in settings_acceptance)."""
    return f"{prefix()}-acc-requeue"


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.TASKTRAIL["REDIS_URL"])


def broker_client() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TASKTRAIL_TEST_DB_NAME"] = str(settings.DATABASES["default"]["NAME"])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src")])
    env["DJANGO_SETTINGS_MODULE"] = "tests.acceptance.settings_acceptance"
    env["TASKTRAIL_ACC_HEARTBEAT"] = str(HEARTBEAT)
    env["TASKTRAIL_ACC_LOST_AFTER"] = str(LOST_AFTER)
    return env


def record_figure(name: str, **values: Any) -> None:
    """Append one measured figure to ``tests/.acceptance-figures.log`` (JSON lines)."""
    with FIGURES.open("a") as out:
        out.write(json.dumps({"figure": name, "at": time.time(), **values}) + "\n")
    print(f"[acceptance] {name}: {values}")


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


@dataclass
class Worker:
    """One ``celery worker`` node; its process group is its main process's pid."""

    hostname: str
    queues: list[str]
    process: subprocess.Popen[bytes]
    log: Path
    killed: bool = False

    @property
    def pgid(self) -> int:
        return self.process.pid

    def kill_node(self) -> None:
        """SIGKILL the main process and every pool child at once (a machine gone)."""
        _signal_group(self.pgid, signal.SIGKILL)
        self.process.wait(10)
        self.killed = True

    def stop(self, grace: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # warm shutdown: the main process
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.pgid, signal.SIGKILL)
                self.process.wait(10)
        # Pool children that outlived their main process (a killed node's) go too.
        deadline = time.monotonic() + 5
        while _group_alive(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_group(self.pgid, signal.SIGKILL)


@dataclass
class Workers:
    """Starts worker nodes for one test and stops every one of them afterwards."""

    started: list[Worker] = field(default_factory=list)

    def start(
        self,
        tag: str,
        *,
        queues: list[str] | None = None,
        concurrency: int = 2,
        hostname: str | None = None,
        wait: bool = True,
    ) -> Worker:
        name = hostname or f"acc-{tag}-{uuid.uuid4().hex[:6]}@acceptance"
        queues = queues or [f"{prefix()}-acc-{tag}"]
        log = ROOT / "tests" / f".acc-worker-{tag}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", "tests.acceptance.celery_app", "worker",
                    "-P", "prefork", "-c", str(concurrency), "-O", "fair", "-l", "warning",
                    "-n", name, "-Q", ",".join(queues),
                    "--without-gossip", "--without-mingle", "--without-heartbeat",
                ],
                cwd=ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches the pool
            )  # fmt: skip
        worker = Worker(name, queues, process, log)
        self.started.append(worker)
        if wait:
            self.wait_ready(worker)
        return worker

    def wait_ready(self, worker: Worker, timeout: float = 60.0) -> None:
        """Ready once tasktrail's heartbeat (sent after ``worker_ready``) is in Redis."""
        client = redis_client()
        deadline = time.monotonic() + timeout
        while client.zscore(f"{prefix()}:workers", worker.hostname) is None:
            if worker.process.poll() is not None:
                raise RuntimeError(f"worker {worker.hostname} exited; see {worker.log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {worker.hostname} not ready; see {worker.log}")
            time.sleep(0.05)

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


@pytest.fixture
def workers(transactional_db: None) -> Iterator[Workers]:
    """Start workers with ``workers.start(tag)``; all are stopped when the test ends."""
    pool = Workers()
    try:
        yield pool
    finally:
        pool.stop_all()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def acceptance_server(django_db_setup: None) -> Iterator[str]:
    """A real uvicorn on ``tests.acceptance.urls`` (tasktrail under /tasks/, webhooks)."""
    port = _free_port()
    log = ROOT / "tests" / ".acc-server.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "tests.asgi:application",
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            ],
            cwd=ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"uvicorn exited; see {log}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"uvicorn did not listen; see {log}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(10)


@pytest.fixture(scope="session", autouse=True)
def _forget_unacked_messages() -> Iterator[None]:
    """SIGKILLed ``acks_late`` workers leave their messages in kombu's ``unacked`` hash
    (restored after the visibility timeout, an hour). Drop this session's ones."""
    yield
    client = broker_client()
    mine = prefix()
    for tag, raw in client.hscan_iter("unacked"):
        try:
            _, _, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if isinstance(routing_key, str) and mine in routing_key:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
