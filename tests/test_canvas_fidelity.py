"""Ids Celery settles without running them, and runs that go on under another task:
the record agrees with Celery's own AsyncResult (tasktrail is the result backend)."""

from __future__ import annotations

import pytest
from celery import chain, chord
from celery.result import AsyncResult

from tasktrail import Status, get_run
from tests.helpers import eventually
from tests.testapp.tasks import add, boom, fan_out

pytestmark = pytest.mark.usefixtures("worker")


def _settled(task_id: str) -> AsyncResult:
    result = AsyncResult(task_id)
    eventually(result.ready, timeout=30)
    return result


def _record(task_id: str, status: Status) -> None:
    eventually(lambda: get_run(task_id).status == status or None, timeout=15)


def test_a_chord_body_whose_header_failed_is_failed_like_celery_says() -> None:
    body = chord([add.s(1, 1), boom.s("header")], add.s(0).set(immutable=True)).apply_async()
    assert _settled(body.id).state == "FAILURE"
    _record(body.id, Status.FAILED)
    run = get_run(body.id)
    assert run.task == "tests.testapp.tasks.add"
    assert run.error is not None and run.error.type == "celery.exceptions.ChordError"


def test_chain_steps_after_a_failure_are_failed_like_celery_says() -> None:
    last = chain(add.s(1, 1), boom.si("middle"), add.si(2, 2), add.si(3, 3)).apply_async()
    assert _settled(last.id).state == "FAILURE"
    for step in (last, last.parent):
        _record(step.id, Status.FAILED)
        assert get_run(step.id).error.type == "builtins.ValueError"  # type: ignore[union-attr]


def test_a_task_replaced_by_a_group_ends_with_the_groups_result() -> None:
    result = fan_out.delay(3)
    assert _settled(result.id).get(timeout=10) == [0, 2, 4]
    _record(result.id, Status.SUCCESSFUL)
    assert get_run(result.id).result == [0, 2, 4]
