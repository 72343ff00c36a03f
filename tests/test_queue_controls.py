"""Queue controls against a real worker: pause/resume a queue (remembered for workers
that start later), a task's rate limit, and who may do it (staff with the change
permission, CSRF-checked, audited)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.test import Client

import tests.celery_app
from tasktrail import enqueue, get_run, keys, queue_controls
from tasktrail.connection import get_redis
from tasktrail.models import AuditEntry
from tests.queue_worker import running_worker, still_waiting
from tests.testapp.tasks import add

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.urls_ops"),
]
APP = tests.celery_app.app
LIMITED_TASK = "tests.testapp.tasks.hot_loop"  # rare elsewhere; and the limit below is harmless


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"{settings.TASKTRAIL['KEY_PREFIX']}-qc-{uuid.uuid4().hex[:6]}"
    yield name
    get_redis().srem(keys.paused_queues(), name)  # leave nothing remembered for later tests


@pytest.fixture
def boss_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser(f"boss-{uuid.uuid4().hex[:6]}", "", "pw"))
    return client


@pytest.mark.once  # two worker start-ups and two 3-second waits
def test_pause_is_remembered_and_resume_lets_runs_through(
    boss_client: Client, queue: str, tmp_path: Path
) -> None:
    paused = boss_client.post("/ops/queues/pause/", {"queue": queue, "paused": "1"})
    assert paused.status_code == 302
    assert queue in queue_controls.paused_queues()
    # A worker started after the pause leaves the queue alone...
    node = f"qc-{uuid.uuid4().hex[:6]}@queue-controls"
    with running_worker(queue, node, tmp_path / "worker.log"):
        first = enqueue(add, 1, 2, queue=queue)
        assert still_waiting(first.id, 3.0), get_run(first.id).status
        page = boss_client.get("/ops/queues/").content.decode()
        assert f'value="{queue}"' in page and "Paused" in page
        # ...until it is resumed: the broadcast reaches it and the run goes through.
        resumed = boss_client.post(
            "/ops/queues/pause/", {"queue": queue, "paused": "0"}, follow=True
        )
        assert node in resumed.content.decode()
        assert first.wait(timeout=30).status == "SUCCESSFUL"
        # Paused again while the worker runs: cancel_consumer reaches it live.
        boss_client.post("/ops/queues/pause/", {"queue": queue, "paused": "1"})
        second = enqueue(add, 2, 3, queue=queue)
        assert still_waiting(second.id, 3.0), get_run(second.id).status
        boss_client.post("/ops/queues/pause/", {"queue": queue, "paused": "0"})
        assert second.wait(timeout=30).status == "SUCCESSFUL"
    actions = list(
        AuditEntry.objects.filter(detail__queue=queue)
        .order_by("at")
        .values_list("action", flat=True)
    )
    assert actions == ["pause_queue", "resume_queue", "pause_queue", "resume_queue"]
    assert AuditEntry.objects.filter(detail__queue=queue, run_id="").count() == 4


def test_rate_limit_reaches_running_and_later_workers(
    boss_client: Client, queue: str, tmp_path: Path
) -> None:
    try:
        done = boss_client.post(
            "/ops/queues/rate-limit/", {"task": LIMITED_TASK, "rate": "1000/s"}, follow=True
        )
        assert f"Rate limit of {LIMITED_TASK}: 1000/s" in done.content.decode()
        assert queue_controls.rate_limits()[LIMITED_TASK] == "1000/s"
        node = f"qc-{uuid.uuid4().hex[:6]}@queue-controls"
        with running_worker(queue, node, tmp_path / "worker.log"):
            inspect = APP.control.inspect(destination=[node], timeout=5)
            registered = inspect.registered("rate_limit")
        assert f"{LIMITED_TASK} [rate_limit=1000/s]" in registered[node]
        entry = AuditEntry.objects.get(action="rate_limit", detail__task=LIMITED_TASK)
        assert entry.detail["rate"] == "1000/s" and entry.actor_name.startswith("boss-")
    finally:
        boss_client.post("/ops/queues/rate-limit/", {"task": LIMITED_TASK, "rate": ""})
    assert LIMITED_TASK not in queue_controls.rate_limits()


@pytest.mark.parametrize("rate", ["ten per minute", "10/x", "10/m; rm", "-1/s"])
def test_a_bad_rate_limit_is_refused_clearly(boss_client: Client, rate: str) -> None:
    page = boss_client.post(
        "/ops/queues/rate-limit/", {"task": LIMITED_TASK, "rate": rate}, follow=True
    )
    assert page.status_code == 200
    assert "is not a rate limit" in page.content.decode()
    assert LIMITED_TASK not in queue_controls.rate_limits()
    assert not AuditEntry.objects.filter(action="rate_limit").exists()


def test_only_staff_with_the_change_permission_may_act(queue: str) -> None:
    form = {"queue": queue, "paused": "1"}
    assert Client().post("/ops/queues/pause/", form).status_code == 302  # to the login page
    viewer = User.objects.create_user(f"viewer-{uuid.uuid4().hex[:6]}", is_staff=True)
    looking = Client()
    looking.force_login(viewer)
    assert looking.post("/ops/queues/pause/", form).status_code == 403
    assert "Pause</button>" not in looking.get("/ops/queues/").content.decode()
    outsider = Client()
    outsider.force_login(User.objects.create_user(f"user-{uuid.uuid4().hex[:6]}"))
    assert (
        outsider.post("/ops/queues/rate-limit/", {"task": LIMITED_TASK, "rate": "1/s"}).status_code
        == 403
    )
    viewer.user_permissions.add(Permission.objects.get(codename="change_taskrun"))
    checked = Client(enforce_csrf_checks=True)
    checked.force_login(viewer)
    assert checked.post("/ops/queues/pause/", form).status_code == 403  # no CSRF token
    assert checked.get("/ops/queues/pause/").status_code == 405
    assert queue not in queue_controls.paused_queues()
    assert not AuditEntry.objects.filter(detail__queue=queue).exists()


def test_a_paused_queue_nobody_lists_can_still_be_resumed(boss_client: Client, queue: str) -> None:
    boss_client.post("/ops/queues/pause/", {"queue": queue, "paused": "1"})
    page = boss_client.get("/ops/queues/")
    assert page.context["paused_elsewhere"] == [queue]
    assert f'<span data-queue="{queue}">' in page.content.decode()
    boss_client.post("/ops/queues/pause/", {"queue": queue, "paused": "0"})
    assert boss_client.get("/ops/queues/").context["paused_elsewhere"] == []
    assert queue not in queue_controls.paused_queues()


def test_a_bad_queue_name_is_refused(boss_client: Client) -> None:
    page = boss_client.post("/ops/queues/pause/", {"queue": "a b", "paused": "1"}, follow=True)
    assert "Give a queue name" in page.content.decode()
    assert "a b" not in queue_controls.paused_queues()


def test_a_broker_that_refuses_the_broadcast_is_reported(queue: str) -> None:
    from celery import Celery

    down = Celery("down", broker="redis://127.0.0.1:27599/0")  # our port range; nothing there
    down.set_current()
    try:
        broadcast = queue_controls.pause(queue)
    finally:
        APP.set_current()
    assert "Connection refused" in broadcast.error
    assert "running workers were not told" in broadcast.summary()
    assert queue in queue_controls.paused_queues()  # remembered all the same
