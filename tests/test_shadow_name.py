"""Celery's ``shadow`` ("the task name used in logs/monitoring") names a run only for a
function runner (the django.tasks backend's trampoline, see tasktrail.naming): a plain
task's shadow must not hide the task from redaction, retry, EXCLUDE_TASKS or redelivery."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Task, shared_task

from tasktrail import Status, enqueue, get_run
from tests.testapp.tasks import add, sign_in

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_plain_tasks_shadow_is_a_log_name_the_run_keeps_its_tasks_name(
    worker: object,
) -> None:
    run = enqueue(add, 2, 2, shadow="reports.monthly")
    assert get_run(run.id).task == "tests.testapp.tasks.add"
    finished = run.wait(timeout=30)
    assert finished.status == Status.SUCCESSFUL
    assert finished.task == "tests.testapp.tasks.add"
    assert finished.result == 4


def test_a_shadow_never_unredacts_secret_arguments(worker: object) -> None:
    run = enqueue(sign_in, "ann", "hunter2", shadow="auth.login")
    stored = get_run(run.id).args
    assert stored[0] == "ann"
    assert "hunter2" not in str(stored)


class _NamedByArgument(Task):  # type: ignore[misc]
    def shadow_name(self, args: Any, kwargs: Any, options: dict[str, Any]) -> str:
        return f"reports.{(options.get('headers') or {}).get('report', 'unknown')}"


@shared_task(base=_NamedByArgument, name="tests.shadow.named_by_argument")
def named_by_argument() -> str:
    return "ok"


@pytest.mark.usefixtures("own_key_prefix")
def test_an_eager_run_of_a_plain_task_with_a_shadow_hook_keeps_its_name() -> None:
    result = named_by_argument.apply(headers={"report": "weekly"})
    assert get_run(result.id).task == "tests.shadow.named_by_argument"
    plain = add.apply(args=(1, 1))
    assert get_run(plain.id).task == "tests.testapp.tasks.add"
    assert get_run(plain.id).args == [1, 1]  # no publish recorded them: the start does
