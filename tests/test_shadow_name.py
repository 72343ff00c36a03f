"""Celery's ``shadow`` ("the task name used in logs/monitoring") names the run, so a
trampoline task (the django.tasks backend's) shows the function it runs."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Task, shared_task

from tasktrail import Status, enqueue, get_run
from tests.testapp.tasks import add

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_shadowed_run_is_recorded_under_its_shadow_name(worker: object) -> None:
    run = enqueue(add, 2, 2, shadow="reports.monthly")
    assert get_run(run.id).task == "reports.monthly"
    finished = run.wait(timeout=30)
    assert finished.status == Status.SUCCESSFUL
    assert finished.task == "reports.monthly"
    assert finished.result == 4


class _NamedByArgument(Task):  # type: ignore[misc]
    def shadow_name(self, args: Any, kwargs: Any, options: dict[str, Any]) -> str:
        return f"reports.{(options.get('headers') or {}).get('report', 'unknown')}"


@shared_task(base=_NamedByArgument, name="tests.shadow.named_by_argument")
def named_by_argument() -> str:
    return "ok"


@pytest.mark.usefixtures("own_key_prefix")
def test_an_eager_run_is_named_by_the_tasks_shadow_name_hook() -> None:
    # Task.apply() (eager) drops the shadow apply_async computed, so the start asks the
    # task's own hook again, with the headers the request kept.
    result = named_by_argument.apply(headers={"report": "weekly"})
    assert get_run(result.id).task == "reports.weekly"
    plain = add.apply(args=(1, 1))
    assert get_run(plain.id).task == "tests.testapp.tasks.add"
    assert get_run(plain.id).args == [1, 1]  # no publish recorded them: the start does
