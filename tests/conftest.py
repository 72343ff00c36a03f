"""Fixtures that start the real parts: a Celery worker and a uvicorn server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

import tests.celery_app  # noqa: F401  (publishing needs the configured Celery app)

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The reference project's tests drive their own stack (with their own PostgreSQL
    variant): mark them so the PostgreSQL pass of the suite can leave them out."""
    for item in items:
        if item.path.name.startswith("test_example_"):
            item.add_marker(pytest.mark.example)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TASKTRAIL_TEST_DB_NAME"] = str(settings.DATABASES["default"]["NAME"])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src")])
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    return env


def _stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session", autouse=True)
def _no_journal_in_the_test_process() -> None:
    """The journal of finished records writes rows from a thread of its own after a Redis
    restart; in this process that thread would write into whichever test runs then. The
    worker and server subprocesses keep it (tests/test_outage.py relies on it there);
    tests/test_journal.py turns it on for itself."""
    from tasktrail import journal

    journal.enabled = False


@pytest.fixture(autouse=True)
def _no_outage_carried_over() -> Iterator[None]:
    """A test that made Redis unreachable leaves this process failing fast for a second
    and holding deferred transitions; neither may reach the next test (which may use
    another Redis: a result stored there went to the database fallback instead)."""
    yield
    from tasktrail import transitions

    with transitions._backlog_lock:
        transitions._backlog.clear()
    transitions._down_until = 0.0


@pytest.fixture(scope="session", autouse=True)
def _clean_redis() -> Iterator[None]:
    yield
    prefix = settings.TASKTRAIL["KEY_PREFIX"]
    for url in (settings.TASKTRAIL["REDIS_URL"], settings.CELERY_BROKER_URL):
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(f"*{prefix}*", count=1000):
            client.delete(key)


def use_own_key_prefix(settings: Any) -> str:
    """Give this test a key prefix of its own, for runs it drives by hand: the session
    worker's flusher would otherwise lease them and write them from its own
    connection, outside this test's transaction and after its flush. (The session
    clean-up above removes these keys too: they contain the session prefix.)"""
    prefix = f"{settings.TASKTRAIL['KEY_PREFIX']}-own-{os.urandom(4).hex()}"
    settings.TASKTRAIL = {**settings.TASKTRAIL, "KEY_PREFIX": prefix}
    return prefix


@pytest.fixture
def own_key_prefix(settings: Any) -> str:
    return use_own_key_prefix(settings)


@pytest.fixture(scope="session", autouse=True)
def _release_test_database(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Before the test database is dropped, end sessions the subprocesses left behind."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session")
def worker(django_db_setup: None, django_db_blocker: object) -> Iterator[subprocess.Popen[bytes]]:
    """A real prefork ``celery worker`` (2 processes) on this session's queue."""
    log = open(ROOT / "tests" / f".{settings.TASKTRAIL['KEY_PREFIX']}.worker.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
            "-P", "prefork", "-c", "2", "-l", "warning", "-n", f"test-{os.getpid()}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ],
        cwd=ROOT, env=_child_env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        from tasktrail import enqueue
        from tests.testapp.tasks import add

        probe = enqueue(add, 1, 1)
        probe.wait(timeout=180)  # a loaded 2-core machine starts a worker slowly
        yield process
    finally:
        _stop(process)
        log.close()


class ServerURL(str):
    """The base URL of the test server; ``.pid`` is its uvicorn process."""

    pid: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(name: str = "server") -> Iterator[ServerURL]:
    """A real uvicorn serving tests.asgi, stopped on exit; yields its base URL."""
    port = _free_port()
    log = open(ROOT / "tests" / f".{settings.TASKTRAIL['KEY_PREFIX']}.{name}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "tests.asgi:application",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        ],
        cwd=ROOT, env=_child_env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"uvicorn exited; see {log.name}") from None
                time.sleep(0.1)
        url = ServerURL(f"http://127.0.0.1:{port}")
        url.pid = process.pid
        yield url
    finally:
        _stop(process)
        log.close()


@pytest.fixture(scope="session")
def server(django_db_setup: None) -> Iterator[str]:
    """The session's uvicorn."""
    with running_server() as url:
        yield url
