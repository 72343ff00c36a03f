"""What a client sees while Redis or the database is unreachable (issue 11, items 14
and 15): a JSON 503 with ``Retry-After`` where nothing honest can be answered, the
database's view where it can, and never a 500 or a traceback in the server's log.

Each test starts its own uvicorn whose Redis, or database, is a closed port (or, for
SQLite, a file in a folder that does not exist): the outage is real to that process
and disturbs no one else.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from tasktrail import Status
from tasktrail.access import make_token
from tasktrail.models import TaskRun
from tasktrail.transitions import apply, stamp
from tests.conftest import ROOT, _child_env, _free_port, _stop, use_own_key_prefix

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]


@contextlib.contextmanager
def server_with(env: dict[str, str], log: Path) -> Iterator[str]:
    """A uvicorn serving tests.urls_ops (the API under /tasks/, the dashboard under
    /ops/) with ``env`` laid over the test environment; its output goes to ``log``."""
    port = _free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "--factory", "tests.urls_ops:asgi",
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            ],
            cwd=ROOT, env={**_child_env(), **env}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/tasks/", timeout=2)
                    break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"uvicorn did not start; see {log}") from None
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(process)


def assert_503(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/json"
    assert "unreachable" in response.json()["error"]
    assert int(response.headers["Retry-After"]) > 0


def assert_clean(log: Path) -> None:
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]


def _session(user: User) -> str:
    client = Client()
    client.force_login(user)
    return str(client.cookies["sessionid"].value)


_open: list[httpx.Client] = []


def _client(base: str, sessionid: str | None = None) -> httpx.Client:
    client = httpx.Client(
        base_url=base, timeout=15, cookies={"sessionid": sessionid} if sessionid else None
    )
    _open.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def _row(owner: User, status: Status) -> TaskRun:
    now = timezone.now()
    return TaskRun.objects.create(
        id=str(uuid.uuid4()), task="tests.testapp.tasks.add", status=status, queue="celery",
        enqueued_at=now, finished_at=now if status == Status.SUCCESSFUL else None,
        args=[1, 2], kwargs={}, owner_id=owner.pk, subject="outage:1",
    )  # fmt: skip


def test_with_redis_unreachable_streams_answer_503_and_the_rest_from_the_database(
    tmp_path: Path,
) -> None:
    owner = User.objects.create_user("owner", password="pw")
    staff = User.objects.create_superuser("boss", "boss@example.com", "pw")
    running, done = _row(owner, Status.RUNNING), _row(owner, Status.SUCCESSFUL)
    log = tmp_path / "server.log"
    closed = f"redis://127.0.0.1:{_free_port()}/0"
    with server_with({"TASKTRAIL_TEST_REDIS": closed}, log) as base:
        client, as_owner = _client(base), _client(base, _session(owner))
        for run in (running, done):
            token = make_token(run.id)
            status = client.get(f"/tasks/{run.id}/", params={"token": token})
            assert status.status_code == 200, status.text[:300]
            assert status.json()["status"] == run.status
            assert_503(client.get(f"/tasks/{run.id}/events/", params={"token": token}))
        assert_503(as_owner.get("/tasks/subjects/outage:1/events/"))
        page = as_owner.get("/tasks/")
        assert page.status_code == 200, page.text[:300]
        assert {running.id, done.id} <= {r["id"] for r in page.json()["results"]}
        as_staff = _client(base, _session(staff))
        for screen in ("", "workers/", "queues/", f"runs/{running.id}/", "runs/"):
            answer = as_staff.get(f"/ops/{screen}")
            assert answer.status_code == 200, (screen, answer.status_code, answer.text[-500:])
        assert "Redis is unreachable" in as_staff.get("/ops/").text
        for stream in ("runs/events/", f"runs/{running.id}/events/"):
            answer = as_staff.get(f"/ops/{stream}")
            assert answer.status_code == 503, (stream, answer.status_code, answer.text[:300])
            assert int(answer.headers["Retry-After"]) > 0
    assert_clean(log)


def _database_down() -> dict[str, str]:
    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return {"PGPORT": str(_free_port())}
    return {"TASKTRAIL_TEST_DB_NAME": "/nonexistent-tasktrail-dir/down.sqlite3"}


def test_with_the_database_unreachable_status_answers_503_unless_redis_knows_the_run(
    tmp_path: Path, settings: object
) -> None:
    prefix = use_own_key_prefix(settings)
    hot = str(uuid.uuid4())
    create = {"id": hot, "task": "tests.testapp.tasks.add", "enqueued_at": stamp(time.time())}
    apply(hot, "publish", status=Status.READY, create=create)
    log = tmp_path / "server.log"
    with server_with({**_database_down(), "TASKTRAIL_TEST_PREFIX": prefix}, log) as base:
        client = _client(base)
        token = make_token(hot)
        known = client.get(f"/tasks/{hot}/", params={"token": token})
        assert known.status_code == 200, known.text[:300]
        assert known.json()["status"] == "READY"
        unknown = str(uuid.uuid4())
        assert_503(client.get(f"/tasks/{unknown}/", params={"token": make_token(unknown)}))
        assert_503(client.get(f"/tasks/{unknown}/events/", params={"token": make_token(unknown)}))
        assert_503(_client(base, "x" * 32).get(f"/tasks/{unknown}/"))
        assert client.get("/tasks/").status_code == 200  # anonymous: an empty page, no lookup
    assert_clean(log)
