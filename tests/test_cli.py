"""Every subcommand of ``manage.py tasktrail``, against real Redis, broker and worker."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

import tests.celery_app  # noqa: F401  (publishing needs the app)
from tasktrail import enqueue, get_run
from tasktrail.flusher import flush_all
from tasktrail.models import AuditEntry, TaskRun
from tests.conftest import ROOT, _child_env
from tests.testapp.tasks import add, always_fails, numbered_feed, sleepy, staged

pytestmark = pytest.mark.django_db(transaction=True)


def run_cli(*args: str) -> str:
    out = io.StringIO()
    call_command("tasktrail", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def make_run(**fields: Any) -> TaskRun:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "task": "tests.testapp.tasks.add",
        "status": "SUCCESSFUL",
        "enqueued_at": timezone.now(),
        "finished_at": timezone.now(),
    }
    values.update(fields)
    return TaskRun.objects.create(**values)


def test_list_filters_and_json() -> None:
    done = make_run(task="tests.testapp.tasks.echo", queue="fast")
    failed = make_run(status="FAILED")
    text = run_cli("list", "--status", "FAILED")
    assert failed.id in text and done.id not in text
    rows = [json.loads(line) for line in run_cli("list", "--queue", "fast", "--json").splitlines()]
    assert [r["id"] for r in rows] == [done.id]
    with pytest.raises(CommandError, match="Unknown status"):
        run_cli("list", "--status", "BOGUS")


@pytest.mark.usefixtures("worker")
def test_show_a_finished_run() -> None:
    run = enqueue(add, 2, 3).wait(30)
    text = run_cli("show", run.id)
    assert "status:       SUCCESSFUL" in text
    assert "result:       5" in text
    data = json.loads(run_cli("show", run.id, "--json"))
    assert data["result"] == 5
    with pytest.raises(CommandError, match="No run"):
        run_cli("show", str(uuid.uuid4()))


@pytest.mark.usefixtures("worker")
def test_show_a_failure_with_traceback() -> None:
    run = enqueue(always_fails, "bad input")
    assert run.wait(30).status == "FAILED"
    text = run_cli("show", run.id)
    assert "error:        builtins.ValueError: bad input" in text
    assert "Traceback" in text


@pytest.mark.usefixtures("worker")
def test_watch_follows_to_the_end() -> None:
    run = enqueue(staged, "doc")
    text = run_cli("watch", run.id, "--timeout", "30")
    assert "indexing" in text
    assert 'result: "doc"' in text


@pytest.mark.usefixtures("worker")
def test_watch_exits_non_zero_when_the_run_fails() -> None:
    run = enqueue(always_fails, "no")
    with pytest.raises(CommandError, match="ended FAILED"):
        run_cli("watch", run.id, "--timeout", "30")


@pytest.mark.usefixtures("worker")
def test_watch_stops_cleanly_on_ctrl_c() -> None:
    # Long enough to be running still when a slow-starting watcher is interrupted (at 200
    # lines, a loaded CI machine once let the run end first: the watcher ended by itself).
    run = enqueue(numbered_feed, 2000, 0.05)
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "tasktrail", "watch", run.id],
        cwd=ROOT, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    # Interrupt once it is really watching (a loaded machine starts Django slowly).
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + 60
    while b"line 1" not in seen and time.monotonic() < deadline:
        chunk = process.stdout.read1(4096)  # type: ignore[attr-defined]
        if not chunk:
            break
        seen += chunk
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=20)
    out = seen + out
    run_cli("cancel", run.id)  # the worker has better things to do
    assert process.returncode == 0, err.decode()
    assert b"Stopped watching" in out, out.decode()[-2000:]
    assert b"Traceback" not in err
    assert b"line 1" in out


def test_cancel_and_retry_by_id() -> None:
    run = enqueue(sleepy, 1, countdown=3600)
    assert "CANCELLED" in run_cli("cancel", run.id)
    entry = AuditEntry.objects.get(run_id=run.id)
    assert entry.actor_name.startswith("cli")
    text = run_cli("retry", run.id)
    new_id = text.split("retried as ")[1].strip()
    assert get_run(new_id).retry_of == run.id
    with pytest.raises(CommandError, match="1 of 1 runs refused"):
        run_cli("retry", new_id)
    run_cli("cancel", new_id)


def test_cancel_by_filter_asks_first() -> None:
    marker = str(uuid.uuid4().int % 10**9)  # digits float() keeps as they are
    runs = [enqueue(sleepy, float(marker), countdown=3600) for _ in range(2)]
    flush_all()
    text = run_cli("cancel", "--task", "tests.testapp.tasks.sleepy", "--search", marker)
    assert "2 runs match; add --yes" in text
    assert {get_run(r.id).status for r in runs} == {"READY"}
    text = run_cli("cancel", "--task", "tests.testapp.tasks.sleepy", "--search", marker, "--yes")
    assert "cancel: 2 done" in text
    with pytest.raises(CommandError, match="Give run ids, or filters"):
        run_cli("cancel")


def test_prune_dry_run_then_for_real(settings: Any) -> None:
    settings.TASKTRAIL = {**settings.TASKTRAIL, "RETENTION": {"default": 7}}
    old = timezone.now() - timedelta(days=10)
    gone = [make_run(enqueued_at=old, finished_at=old) for _ in range(3)]
    kept = make_run()
    assert "total: would delete 3" in run_cli("prune", "--dry-run")
    # Only this test's rows: a session worker's flusher may add recent runs of other tests.
    mine = [r.id for r in [*gone, kept]]
    assert TaskRun.objects.filter(pk__in=mine).count() == 4
    assert "total: deleted 3" in run_cli("prune", "--batch-size", "2")
    assert list(TaskRun.objects.filter(pk__in=mine).values_list("pk", flat=True)) == [kept.id]


def test_stats() -> None:
    make_run(status="FAILED")
    make_run(status="FAILED")
    text = run_cli("stats", "--since", "1h")
    assert "FAILED" in text and "2" in text
    assert "Queues:" in text and "Workers:" in text


@pytest.mark.usefixtures("worker")
def test_healthcheck_all_up() -> None:
    text = run_cli("healthcheck")
    lines = text.splitlines()
    assert [line.split()[0] for line in lines] == [
        "database", "migrations", "redis", "broker", "workers"
    ]  # fmt: skip
    assert all(line.split()[1] == "ok" for line in lines)


def test_healthcheck_redis_down_exits_non_zero() -> None:
    env = _child_env()
    process = subprocess.run(
        [sys.executable, "-c", (
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='tests.settings'; "
            "django.setup(); from django.conf import settings; "
            "settings.TASKTRAIL = {**settings.TASKTRAIL, 'REDIS_URL': 'redis://127.0.0.1:1/0'}; "
            "from django.core.management import call_command; call_command('tasktrail', 'healthcheck')"
        )],
        cwd=ROOT, env=env, capture_output=True, timeout=60,
    )  # fmt: skip
    assert process.returncode != 0
    assert b"redis     DOWN" in process.stdout
    assert b"database  ok" in process.stdout


def test_healthcheck_broker_down_exits_non_zero() -> None:
    process = subprocess.run(
        [sys.executable, "-c", (
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='tests.settings'; "
            "django.setup(); from tests.celery_app import app; "
            "app.conf.broker_url = 'redis://127.0.0.1:1/0'; "
            "from django.core.management import call_command; call_command('tasktrail', 'healthcheck')"
        )],
        cwd=ROOT, env=_child_env(), capture_output=True, timeout=60,
    )  # fmt: skip
    assert process.returncode == 1
    assert b"broker    DOWN" in process.stdout
