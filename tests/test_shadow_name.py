"""Celery's ``shadow`` ("the task name used in logs/monitoring") names the run, so a
trampoline task (the django.tasks backend's) shows the function it runs."""

from __future__ import annotations

import pytest

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
