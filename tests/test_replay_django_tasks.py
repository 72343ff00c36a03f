"""Replay with edited arguments of ``django.tasks`` runs (Django >= 6): the edit binds to
the function's own parameters (a ``takes_context`` task's context left out) and the
trampoline runs the function with it on a real worker."""

from __future__ import annotations

from typing import Any

import django
import pytest

if django.VERSION < (6, 0):
    pytest.skip(
        "django.tasks exists from Django 6.0; run with .venv-django6/bin/python -m pytest",
        allow_module_level=True,
    )

from django.tasks import TaskResultStatus, default_task_backend
from django.tasks.base import TaskResult

from tasktrail.replay import ReplayRefused, replay
from tests.helpers import eventually
from tests.testapp import django_tasks as jobs

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def finished(result_id: str, timeout: float = 30) -> TaskResult[Any, Any]:
    return eventually(
        lambda: (got := default_task_backend.get_result(result_id)).is_finished and got,
        timeout=timeout,
    )


def test_a_failed_function_replays_with_edited_arguments(worker: object) -> None:
    failed = finished(jobs.add.enqueue("x", b=1).id)  # str + int: TypeError
    assert failed.status == TaskResultStatus.FAILED
    with pytest.raises(ReplayRefused, match=r"django_tasks\.add\(a, b=0\): .* 'c'"):
        replay(failed.id, [2], {"c": 3})
    new = replay(failed.id, [2], {"b": 3})
    assert (new.task, new.retry_of, new.args, new.kwargs) == (
        "tests.testapp.django_tasks.add", failed.id, [2], {"b": 3},
    )  # fmt: skip
    done = finished(new.id)
    assert (done.status, done.return_value) == (TaskResultStatus.SUCCESSFUL, 5)


def test_a_context_task_binds_without_its_context(worker: object) -> None:
    first = finished(jobs.describe_context.enqueue("m1").id)
    assert first.return_value["marker"] == "m1"
    with pytest.raises(ReplayRefused, match=r"describe_context\(marker\): too many positional"):
        replay(first.id, ["context?", "m2"], {})
    with pytest.raises(ReplayRefused, match="unexpected keyword argument 'context'"):
        replay(first.id, ["m2"], {"context": None})
    again = finished(replay(first.id, ["m2"], {}).id)
    assert again.return_value["marker"] == "m2"
    assert again.return_value["args"] == ["m2"]
