"""Django 6's task backend contract (``django.tasks``) on Celery through tasktrail,
against a real worker: written from Django's own tasks test suite and documentation.

Run it in the Django 6 environment: ``.venv-django6/bin/python -m pytest
tests/test_django_tasks.py`` (``TASKTRAIL_TEST_DB=postgres`` for PostgreSQL)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import django
import pytest

if django.VERSION < (6, 0):
    pytest.skip(
        "django.tasks exists from Django 6.0; run with .venv-django6/bin/python -m pytest",
        allow_module_level=True,
    )

import httpx
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.tasks import TaskResultStatus, default_task_backend, task_backends
from django.tasks.base import TaskResult
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
from django.test import Client, RequestFactory
from django.utils import timezone

from tasktrail import Status, enqueue, get_run
from tasktrail.actions import cancel, retry
from tasktrail.connection import get_redis
from tasktrail.contrib.django_tasks import CeleryBackend
from tasktrail.contrib.django_tasks.backend import celery_priority
from tasktrail.flusher import flush_all
from tasktrail.keys import prefix, run_hash
from tasktrail.models import TaskRun
from tests.celery_app import app as celery_app
from tests.helpers import eventually, stored_events
from tests.sse_client import Event, read
from tests.testapp import django_tasks as jobs
from tests.testapp import tasks as celery_tasks
from tests.testapp.django_tasks_example import build_report, start_report

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent
NOBODYS_QUEUE = "reports"  # mapped to a Celery queue no test worker consumes


@pytest.fixture
def unconsumed() -> Iterator[list[str]]:
    """Ids of runs left on queues no worker reads: cancelled after the test."""
    left: list[str] = []
    yield left
    for run_id in left:
        with contextlib.suppress(Exception):
            cancel(run_id)


def finished(result: TaskResult[Any, Any], timeout: float = 30) -> TaskResult[Any, Any]:
    return eventually(
        lambda: (got := default_task_backend.get_result(result.id)).is_finished and got,
        timeout=timeout,
    )


def signals_of(result_id: str) -> list[dict[str, Any]]:
    entries: Any = get_redis().lrange(jobs.signal_log_key(), 0, -1)
    return [e for e in map(json.loads, entries) if e["id"] == result_id]


def go(result_id: str) -> None:
    get_redis().set(f"{prefix()}:django-tasks-go:{result_id}", "1", ex=120)


# The backend and its flags


def test_the_configured_backend_is_celerys_with_honest_flags() -> None:
    backend = task_backends["default"]
    assert isinstance(backend, CeleryBackend)
    assert default_task_backend.alias == "default"
    assert backend.queues == {"default", "reports"}
    assert backend.options == {"CELERY_QUEUES": {"reports": f"{prefix()}-reports"}}
    assert backend.supports_defer is True
    assert backend.supports_async_task is True
    assert backend.supports_get_result is True
    assert backend.supports_priority is True


def test_check_passes_here_and_names_bad_options() -> None:
    assert default_task_backend.check() == []
    broken = CeleryBackend(
        "broken", {"QUEUES": ["default"], "OPTIONS": {"CELERY_QUEUES": {"mail": "m"}, "X": 1}}
    )
    assert sorted(m.id for m in broken.check()) == ["tasktrail.E102", "tasktrail.E103"]


def test_check_warns_when_celery_has_no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(celery_app.conf, "broker_url", None)
    assert [m.id for m in default_task_backend.check()] == ["tasktrail.W101"]


# enqueue, get_result, refresh


def test_enqueue_returns_a_ready_result_whose_id_is_the_run(unconsumed: list[str]) -> None:
    task = jobs.add.using(queue_name=NOBODYS_QUEUE)
    result = task.enqueue(1, b=2)
    unconsumed.append(result.id)
    assert result.status == TaskResultStatus.READY
    assert result.task == task
    assert (result.args, result.kwargs) == ([1], {"b": 2})
    assert result.enqueued_at is not None
    assert result.started_at is result.finished_at is result.last_attempted_at is None
    assert (result.attempts, result.worker_ids, result.errors) == (0, [], [])
    assert result.is_finished is False
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value
    run = get_run(result.id)  # the dashboard and the API show the user's function
    assert run.task == "tests.testapp.django_tasks.add"
    assert run.queue == f"{prefix()}-reports"
    assert default_task_backend.get_result(result.id) == result
    assert jobs.add.get_result(result.id) == result


def test_a_run_on_the_worker_succeeds_with_every_field(worker: object) -> None:
    result = jobs.add.enqueue(2, b=3)
    done = finished(result)
    assert done.status == TaskResultStatus.SUCCESSFUL and done.is_finished
    assert done.return_value == 5
    assert done.errors == []
    assert done.attempts == 1 and len(done.worker_ids) == 1 and done.worker_ids[0]
    assert done.worker_ids == [get_run(result.id).worker]
    assert done.enqueued_at is not None and done.started_at is not None
    assert done.finished_at is not None and done.last_attempted_at is not None
    assert done.enqueued_at <= done.started_at <= done.last_attempted_at <= done.finished_at
    assert result.status == TaskResultStatus.READY
    result.refresh()  # the original object catches up
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert (result.return_value, result.finished_at) == (5, done.finished_at)


def test_async_twins_enqueue_read_and_refresh(worker: object) -> None:
    async def scenario() -> tuple[TaskResult[Any, Any], TaskResult[Any, Any]]:
        result = await jobs.echo.aenqueue(1, (2, 3), key="v")
        await_done = await default_task_backend.aget_result(result.id)
        while not await_done.is_finished:
            await_done = await jobs.echo.aget_result(result.id)
        await result.arefresh()
        return result, await_done

    result, done = async_to_sync(scenario)()
    assert result.args == [1, [2, 3]]  # Django's JSON normalisation
    assert result.status == done.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"args": [1, [2, 3]], "kwargs": {"key": "v"}}


def test_an_async_function_runs_on_the_worker(worker: object) -> None:
    done = finished(jobs.async_double.enqueue(21))
    assert done.return_value == 42
    progress = [d for _, kind, d in stored_events(done.id) if kind == "progress"]
    assert [(p["current"], p["message"]) for p in progress] == [(1, "halfway")]


# Errors


def test_an_exception_is_recorded_in_errors(worker: object) -> None:
    done = finished(jobs.fails.enqueue("disk full"))
    assert done.status == TaskResultStatus.FAILED and done.is_finished
    with pytest.raises(ValueError, match="Task failed"):
        _ = done.return_value
    assert len(done.errors) == 1
    assert done.errors[0].exception_class is ValueError
    assert done.errors[0].exception_class_path == "builtins.ValueError"
    assert done.errors[0].traceback.endswith("ValueError: disk full\n")
    assert done.finished_at is not None and done.attempts == 1


def test_a_return_value_that_is_not_json_fails_the_task(worker: object) -> None:
    done = finished(jobs.returns_a_set.enqueue())
    assert done.status == TaskResultStatus.FAILED
    assert done.errors[0].exception_class is TypeError


def test_bad_arguments_fail_at_the_call_site_and_publish_nothing() -> None:
    with pytest.raises(TypeError, match="Unsupported type"):
        jobs.add.enqueue(timezone.now())
    with pytest.raises(TypeError, match=re.escape("tests.testapp.django_tasks.add")):
        jobs.add.enqueue(1, 2, 3)
    with pytest.raises(TypeError):
        jobs.describe_context.enqueue()  # its one argument besides the context is missing


# Unknown ids


def test_unknown_and_malformed_ids_do_not_exist() -> None:
    for result_id in ("00000000-0000-0000-0000-000000000000", "no such\nid", "x" * 500):
        with pytest.raises(TaskResultDoesNotExist):
            default_task_backend.get_result(result_id)
        with pytest.raises(TaskResultDoesNotExist):
            async_to_sync(default_task_backend.aget_result)(result_id)


def test_a_plain_celery_run_is_no_django_tasks_result(unconsumed: list[str]) -> None:
    run = enqueue(celery_tasks.add, 1, 1, queue=f"{prefix()}-nobody")
    unconsumed.append(run.id)
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(run.id)


def test_a_result_of_another_task_is_a_mismatch(unconsumed: list[str]) -> None:
    result = jobs.echo.using(queue_name=NOBODYS_QUEUE).enqueue()
    unconsumed.append(result.id)
    with pytest.raises(TaskResultMismatch):
        jobs.add.get_result(result.id)


# Context and attempts


def test_a_task_that_takes_context_sees_its_own_result(worker: object) -> None:
    result = jobs.describe_context.enqueue("m")
    seen = finished(result).return_value
    assert seen["id"] == result.id
    assert seen["attempt"] == 1
    assert seen["status"] == "RUNNING" and seen["started"] is True
    assert seen["args"] == ["m"] and seen["marker"] == "m"
    assert len(seen["worker_ids"]) == 1


def test_the_attempt_counts_celerys_retries(worker: object) -> None:
    result = jobs.retried_once.enqueue()
    done = finished(result)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == 2
    assert done.attempts == 2 and len(done.worker_ids) == 2
    assert get_run(result.id).attempts == 2
    states = [d["status"] for _, kind, d in stored_events(result.id) if kind == "state"]
    assert "RETRYING" in states  # tasktrail's RETRYING is Django's READY (see the docs)


def test_between_attempts_the_result_is_ready_again(worker: object) -> None:
    result = jobs.retried_once.enqueue(countdown=4)
    eventually(lambda: get_run(result.id).status == Status.RETRYING, timeout=30)
    between = default_task_backend.get_result(result.id)
    assert between.status == TaskResultStatus.READY  # Django: "ready to be executed again"
    assert between.is_finished is False
    assert between.attempts == 1 and between.last_attempted_at is not None
    assert finished(result).return_value == 2


def test_eager_runs_work_in_users_test_suites(own_key_prefix: str) -> None:
    celery_app.conf.task_always_eager = True
    try:
        result = jobs.describe_context.enqueue("eager")
    finally:
        celery_app.conf.task_always_eager = False
    assert result.status == TaskResultStatus.SUCCESSFUL  # it ran inside enqueue()
    assert result == default_task_backend.get_result(result.id)
    assert result.return_value["attempt"] == 1 and result.return_value["id"] == result.id
    assert get_run(result.id).task == "tests.testapp.django_tasks.describe_context"
    assert [e["signal"] for e in signals_of(result.id)] == ["enqueued", "started", "finished"]


def test_a_result_is_read_from_the_database_once_redis_let_it_go(worker: object) -> None:
    done = finished(jobs.add.enqueue(7, b=8))
    flush_all()  # the worker's flusher may hold it meanwhile: wait for the row
    eventually(lambda: TaskRun.objects.filter(pk=done.id, status=Status.SUCCESSFUL).exists())
    get_redis().delete(run_hash(done.id))
    again = default_task_backend.get_result(done.id)
    assert (again.status, again.return_value, again.attempts) == (done.status, 15, 1)
    assert again.finished_at == done.finished_at


# run_after, priority, queues


def test_run_after_waits_for_its_time(worker: object) -> None:
    start_at = timezone.now() + timedelta(seconds=3)
    result = jobs.add.using(run_after=start_at).enqueue(1)
    waiting = default_task_backend.get_result(result.id)
    assert waiting.status == TaskResultStatus.READY
    assert get_run(result.id).next_attempt_at is not None
    done = finished(result, timeout=40)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.started_at is not None and done.started_at >= start_at - timedelta(seconds=0.5)


def test_priorities_map_onto_celerys_in_the_brokers_order(worker: object) -> None:
    levels = [celery_priority(p) for p in (-100, -1, 0, 1, 50, 100)]
    assert all(0 <= level <= 9 for level in levels)
    assert levels == sorted(levels, reverse=True)  # Redis serves 0 first
    assert celery_priority(100) == 0 and celery_priority(-100) == 9
    for priority in (100, -100):
        done = finished(jobs.celery_priority.using(priority=priority).enqueue())
        assert done.return_value == celery_priority(priority)


def test_queue_names_are_validated_against_queues() -> None:
    with pytest.raises(InvalidTask, match="Queue 'mail' is not valid"):
        jobs.add.using(queue_name="mail")
    unchecked = CeleryBackend("open", {"QUEUES": []})
    assert unchecked.celery_queue("mail") == "mail"
    assert unchecked.celery_queue("default") is None  # Celery's default routing


# Signals: enqueued where enqueue() runs, started and finished in the worker


def test_signals_are_sent_where_django_says(worker: object) -> None:
    ok = finished(jobs.add.enqueue(1, b=1))
    bad = finished(jobs.fails.enqueue("no"))
    eventually(lambda: len(signals_of(bad.id)) == 3)
    # task_enqueued follows the publish, so a fast worker may log task_started first:
    # the two processes are not ordered (Django's database backend races the same way).
    ok_log = {e["signal"]: e for e in signals_of(ok.id)}
    bad_log = {e["signal"]: e for e in signals_of(bad.id)}
    assert {k: (e["status"], e["errors"]) for k, e in ok_log.items()} == {
        "enqueued": ("READY", []), "started": ("RUNNING", []), "finished": ("SUCCESSFUL", []),
    }  # fmt: skip
    assert {k: (e["status"], e["errors"]) for k, e in bad_log.items()} == {
        "enqueued": ("READY", []),
        "started": ("RUNNING", []),
        "finished": ("FAILED", ["builtins.ValueError"]),
    }
    for log in (ok_log, bad_log):
        assert {e["sender"] for e in log.values()} == {"CeleryBackend"}
        assert log["enqueued"]["pid"] == os.getpid()  # enqueued: in this process
        assert log["started"]["pid"] != os.getpid()  # started, finished: in the worker
        assert log["finished"]["pid"] == log["started"]["pid"] and log["finished"]["finished"]
        in_worker = [e["signal"] for e in signals_of(ok.id if log is ok_log else bad.id)]
        assert in_worker.index("started") < in_worker.index("finished")


def test_inside_a_transaction_the_task_is_enqueued_on_commit(worker: object) -> None:
    with transaction.atomic():
        result = jobs.add.enqueue(5)
        assert result.enqueued_at is None
        assert signals_of(result.id) == []
        with pytest.raises(TaskResultDoesNotExist):
            default_task_backend.get_result(result.id)
    assert result.enqueued_at is not None
    assert signals_of(result.id)[0]["signal"] == "enqueued"
    assert finished(result).return_value == 5

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        dropped = jobs.add.enqueue(6)
        raise Abort
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(dropped.id)
    assert signals_of(dropped.id) == []


# Where django.tasks has no word: cancel, progress, live events, the 202


def test_cancel_through_the_result_id_ends_it_failed(worker: object) -> None:
    result = jobs.waits_for_go.enqueue()
    eventually(lambda: default_task_backend.get_result(result.id).status == "RUNNING")
    assert cancel(result.id).cancel_requested_at is not None  # its next progress() stops it
    done = finished(result)
    assert get_run(result.id).status == Status.CANCELLED
    assert done.status == TaskResultStatus.FAILED
    # Either the task stopped itself at its next progress() (RunCancelled), or the
    # worker got Celery's revoke first and stored REVOKED: then the error is Celery's.
    assert done.errors[0].exception_class_path in (
        "tasktrail.exceptions.RunCancelled",
        "celery.exceptions.TaskRevokedError",
    )
    assert done.errors[0].traceback


def test_retry_from_the_dashboard_runs_the_function_again(worker: object) -> None:
    failed = finished(jobs.fails.enqueue("once more"))
    again = retry(failed.id)  # what the dashboard's and the API's retry call
    assert again.retry_of == failed.id
    assert again.task == "tests.testapp.django_tasks.fails"
    done = finished(default_task_backend.get_result(again.id))
    assert done.args == ["once more"]
    assert done.errors[0].exception_class is ValueError
    assert done.errors[0].traceback.endswith("ValueError: once more\n")


def test_a_run_cancelled_before_it_started_failed_to_start(unconsumed: list[str]) -> None:
    result = jobs.add.using(queue_name=NOBODYS_QUEUE).enqueue(1)
    cancel(result.id)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.is_finished
    assert result.started_at is None and result.attempts == 0
    assert result.errors[0].exception_class_path == "tasktrail.exceptions.RunCancelled"


@pytest.mark.server
def test_progress_of_a_context_task_reaches_an_sse_client_live(worker: object, server: str) -> None:
    result = jobs.waits_for_go.enqueue(3)
    run = get_run(result.id)
    url = f"{server}/tasks/{result.id}/events/?token={run.token()}"
    seen: list[Event] = []
    waiting = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", url, timeout=60) as response:
            for item in read(response):
                if isinstance(item, Event):
                    seen.append(item)
                    if item.kind == "progress" and item.data.get("message") == "waiting for go":
                        waiting.set()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert waiting.wait(30), [e.kind for e in seen]
    # The progress arrived while the task was still running (it waits for this key).
    assert default_task_backend.get_result(result.id).status == TaskResultStatus.RUNNING
    go(result.id)
    listener.join(30)
    assert not listener.is_alive()
    steps = [e.data["current"] for e in seen if e.kind == "progress"]
    assert steps[-1] == 3
    assert finished(result).return_value == "done"


def test_the_dashboard_lists_the_run_under_the_functions_path(
    worker: object, admin_client: Client
) -> None:
    done = finished(jobs.add.enqueue(4, b=4))
    flush_all()  # the dashboard reads the database
    listed = admin_client.get("/ops/runs/", {"task": "tests.testapp.django_tasks.add"})
    assert done.id in [r.id for r in listed.context["runs"]]
    page = admin_client.get(f"/ops/runs/{done.id}/")
    assert page.status_code == 200
    assert b"tests.testapp.django_tasks.add" in page.content


def test_a_functions_secret_parameters_are_redacted_under_its_name(
    unconsumed: list[str],
) -> None:
    result = jobs.signs_in.using(queue_name=NOBODYS_QUEUE).enqueue("ann", "hunter2")
    run = get_run(result.id)
    assert run.task == "tests.testapp.django_tasks.signs_in"
    assert run.args[0] == "ann" and "hunter2" not in str(run.args)


def test_a_context_taking_functions_secrets_are_redacted_under_the_right_names(
    unconsumed: list[str],
) -> None:
    """The context comes first in the function, never in the run's arguments: the names
    must be matched past it (the password was stored, and the user name hidden)."""
    task = jobs.signs_in_with_context.using(queue_name=NOBODYS_QUEUE)
    run = get_run(task.enqueue("ann", "hunter2").id)
    assert run.args[0] == "ann" and "hunter2" not in str(run.args)


def test_a_function_runs_name_leads_to_the_trampoline_for_redelivery() -> None:
    # A lost acks_late run goes back to its queue only if its Celery task is found.
    from tasktrail import naming
    from tasktrail.contrib.django_tasks.execution import TASK_NAME

    trampoline = naming.celery_task("tests.testapp.django_tasks.add")
    assert trampoline is not None and trampoline.name == TASK_NAME and trampoline.acks_late
    assert naming.function("tests.testapp.django_tasks.signs_in") is jobs.signs_in.func
    assert naming.celery_task("no.such.module.function") is None


def test_the_docs_example_is_the_file_the_tests_run() -> None:
    page = (ROOT / "docs" / "django-tasks.md").read_text()
    block = re.search(r"```python\n(# The complete example.*?)```", page, re.S)
    assert block is not None
    assert block.group(1) == (ROOT / "tests" / "testapp" / "django_tasks_example.py").read_text()


@pytest.mark.server
def test_the_docs_example_answers_202_and_runs(worker: object, server: str) -> None:
    response = start_report(RequestFactory().post("/reports/", {"year": "2024"}))
    assert response.status_code == 202
    body = json.loads(response.content)
    assert response["Location"] == body["status_url"]
    status_url = server + urlsplit(body["status_url"])._replace(scheme="", netloc="").geturl()
    status = eventually(
        lambda: (got := httpx.get(status_url, timeout=10).json())["status"] == "SUCCESSFUL" and got,
        timeout=30,
    )
    assert status["task"] == "tests.testapp.django_tasks_example.build_report"
    assert status["progress"]["percent"] == 100
    done = build_report.get_result(body["id"])
    assert done.return_value == {"year": 2024, "months": 12}
    feed = [d["message"] for _, kind, d in stored_events(body["id"]) if kind == "feed"]
    assert feed == ["Report 2024 ready (attempt 1)"]


def test_results_are_frozen_dataclasses_like_djangos(unconsumed: list[str]) -> None:
    result = jobs.add.using(queue_name=NOBODYS_QUEUE).enqueue(1)
    unconsumed.append(result.id)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.status = TaskResultStatus.FAILED  # type: ignore[misc]
    assert settings.TASKS["default"]["BACKEND"].endswith("CeleryBackend")
