"""enqueue(): validation at the call site, idempotency, owners and subjects."""

from __future__ import annotations

import multiprocessing
import re
import uuid
from datetime import date
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings

from tasktrail import Status, enqueue, get_run, keys
from tasktrail.exceptions import NotTracked, RunNotFound
from tests.helpers import client, stored_events
from tests.spawned import enqueue_with_key
from tests.testapp.tasks import add, echo

pytestmark = pytest.mark.django_db(transaction=True)

NOBODY = f"{settings.TASKTRAIL['KEY_PREFIX']}-nobody"  # no worker consumes it: runs stay READY


def firehose_length() -> int:
    return int(client().xlen(keys.firehose_stream()))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((object(),), {}, "argument 'value' (object) cannot be sent as JSON"),
        ((), {"value": {1, 2}}, "argument 'value' (set) cannot be sent as JSON"),
        ((1, 2), {}, "too many positional arguments"),
        ((1,), {"nope": 1}, "unexpected keyword argument 'nope'"),
        ((), {}, "missing a required argument: 'value'"),
    ],
)
def test_bad_arguments_raise_type_error_before_anything_is_published(
    args: Any, kwargs: Any, message: str
) -> None:
    before = firehose_length()
    with pytest.raises(TypeError, match=re.escape(message)):
        enqueue(echo, *args, kwargs=kwargs, queue=NOBODY)
    assert firehose_length() == before


def test_kombu_json_types_are_accepted() -> None:
    run = enqueue(echo, date(2026, 1, 2), queue=NOBODY)
    assert get_run(run.id).args == ["2026-01-02"]


def test_task_id_must_be_printable_and_excluded_tasks_are_refused() -> None:
    with pytest.raises(ValueError, match="task_id must be 1 to 255 printable characters"):
        enqueue(add, 1, 2, task_id="report\n1", queue=NOBODY)
    with pytest.raises(ValueError, match="task_id must be 1 to 255 printable characters"):
        enqueue(add, 1, 2, task_id="x" * 256, queue=NOBODY)
    with (
        override_settings(TASKTRAIL={**_settings(), "EXCLUDE_TASKS": ["tests.testapp.*"]}),
        pytest.raises(NotTracked),
    ):
        enqueue(add, 1, 2, queue=NOBODY)
    with pytest.raises(TypeError, match="needs a Celery task"):
        enqueue(print, 1)  # type: ignore[arg-type]


def _settings() -> dict[str, Any]:
    return dict(settings.TASKTRAIL)


def test_owner_team_and_model_subject_are_recorded() -> None:
    user = User.objects.create_user(f"u-{uuid.uuid4().hex[:6]}")
    run = enqueue(add, 1, 2, owner=user, team="acme", subject=user, queue=NOBODY)
    stored = get_run(run.id)
    assert stored.owner_id == str(user.pk)
    assert stored.team == "acme"
    assert stored.subject == f"auth.user:{user.pk}"
    with pytest.raises(ValueError, match="subject must be"):
        enqueue(add, 1, 2, subject="has space", queue=NOBODY)


def test_same_idempotency_key_gives_the_same_run_and_publishes_once() -> None:
    key = f"payment-{uuid.uuid4()}"
    first = enqueue(add, 1, 2, idempotency_key=key, queue=NOBODY)
    second = enqueue(add, 1, 2, idempotency_key=key, queue=NOBODY)
    assert first.id == second.id
    assert second.status == Status.READY
    assert [kind for _, kind, _ in stored_events(first.id)] == ["state"]


@pytest.mark.once  # the claim is Redis's (a compare-and-set); 35 s of twenty processes
def test_twenty_concurrent_processes_with_one_key_make_one_run() -> None:
    key = f"webhook-{uuid.uuid4()}"
    queue = f"{NOBODY}-{uuid.uuid4().hex[:8]}"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(20)
    results = context.Queue()
    processes = [
        context.Process(
            target=enqueue_with_key,
            args=(key, queue, settings.DATABASES["default"]["NAME"], barrier, results),
        )
        for _ in range(20)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(240)
        assert process.exitcode == 0
    ids = {results.get(timeout=5) for _ in processes}
    assert len(ids) == 1
    run_id = ids.pop()
    assert [kind for _, kind, _ in stored_events(run_id)] == ["state"]  # published once
    broker: Any = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    assert broker.llen(queue) == 1  # one message for twenty calls


def test_rolled_back_idempotent_enqueue_can_be_repeated() -> None:
    from django.db import transaction

    key = f"k-{uuid.uuid4()}"
    with pytest.raises(RuntimeError), transaction.atomic():
        doomed = enqueue(add, 1, 2, idempotency_key=key, queue=NOBODY)
        raise RuntimeError
    with pytest.raises(RunNotFound):
        get_run(doomed.id)
    run = enqueue(add, 1, 2, idempotency_key=key, queue=NOBODY)
    assert run.id == doomed.id  # one key, one run id
    assert get_run(run.id).status == Status.READY


@pytest.mark.worker
def test_one_active_run_per_key(worker: object) -> None:
    from tests.testapp.tasks import sleepy

    key = f"welcome:{uuid.uuid4()}"
    first = enqueue(sleepy, 1.0, idempotency_key=key, key_scope="active")
    again = enqueue(sleepy, 1.0, idempotency_key=key, key_scope="active")
    assert again.id == first.id  # still active: the same run
    assert first.wait(timeout=20).status == Status.SUCCESSFUL
    later = enqueue(sleepy, 0.1, idempotency_key=key, key_scope="active")
    assert later.id != first.id  # the first one ended: a new run
    assert later.wait(timeout=20).status == Status.SUCCESSFUL
    with pytest.raises(ValueError, match="key_scope"):
        enqueue(sleepy, 0.1, idempotency_key=key, key_scope="sometimes")
