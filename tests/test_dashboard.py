"""Dashboard views through Django's test client: staff, read-only staff, non-staff."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from tasktrail.models import AuditEntry, TaskRun

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls_ops")]


@pytest.fixture(autouse=True)
def _only_these_runs() -> None:
    """Other tests' runs reach the table behind them: flush them and start clean."""
    from tasktrail.flusher import flush_all
    from tasktrail.models import TaskRun

    flush_all()
    TaskRun.objects.all().delete()


def make_run(**fields: Any) -> TaskRun:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "task": "tests.testapp.tasks.add",
        "status": "SUCCESSFUL",
        "queue": "celery",
        "enqueued_at": timezone.now(),
        "args": [1, 2],
        "kwargs": {},
    }
    values.update(fields)
    return TaskRun.objects.create(**values)


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


@pytest.fixture
def readonly_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_user("viewer", is_staff=True))
    return client


@pytest.fixture
def operator_client() -> Client:
    user = User.objects.create_user("operator", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_taskrun"))
    client = Client()
    client.force_login(user)
    return client


PAGES = ["", "runs/", "failures/", "workers/", "queues/", "schedules/", "latency/"]


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_is_sent_to_login(page: str) -> None:
    response = Client().get(f"/ops/{page}")
    assert response.status_code == 302
    assert "login" in response["Location"]


@pytest.mark.parametrize("page", PAGES)
def test_non_staff_is_refused(page: str) -> None:
    client = Client()
    client.force_login(User.objects.create_user("someone"))
    response = client.get(f"/ops/{page}")
    assert response.status_code == 403
    assert b"staff only" in response.content


@pytest.mark.parametrize("page", PAGES)
def test_staff_sees_every_page(admin_client: Client, page: str) -> None:
    make_run(status="FAILED", error_type="ValueError", error_message="boom")
    response = admin_client.get(f"/ops/{page}")
    assert response.status_code == 200
    assert b"<main" in response.content


def test_overview_counts_by_status(admin_client: Client) -> None:
    for _ in range(3):
        make_run(status="FAILED")
    make_run(status="SUCCESSFUL")
    make_run(status="FAILED", enqueued_at=timezone.now() - timedelta(days=3))  # outside window
    response = admin_client.get("/ops/")
    counts = {c.status.value: c.count for c in response.context["counts"]}
    # The session worker may flush another test's run meanwhile: bound each count by
    # this test's runs below and, above, the table read after the page with the
    # page's one-day window (the three-day-old run is outside it).
    for status, mine in (("FAILED", 3), ("SUCCESSFUL", 1)):
        in_window = TaskRun.objects.filter(
            status=status, enqueued_at__gte=timezone.now() - timedelta(days=1)
        ).count()
        assert mine <= counts[status] <= in_window, (status, counts, in_window)
    assert b"<svg" in response.content


def test_runs_filters_and_search(admin_client: Client) -> None:
    wanted = make_run(task="tests.testapp.tasks.echo", kwargs={"needle": "haystack-42"})
    make_run(task="tests.testapp.tasks.echo", kwargs={"needle": "other"})
    make_run(task="tests.testapp.tasks.add", status="FAILED")
    by_task = admin_client.get("/ops/runs/", {"task": "tests.testapp.tasks.echo"})
    assert len(by_task.context["runs"]) == 2
    by_status = admin_client.get("/ops/runs/", {"status": "FAILED"})
    assert [r.task for r in by_status.context["runs"]] == ["tests.testapp.tasks.add"]
    found = admin_client.get("/ops/runs/", {"search": "haystack-42"})
    assert [r.id for r in found.context["runs"]] == [wanted.id]
    assert admin_client.get("/ops/runs/", {"status": "NOPE"}).status_code == 400
    assert admin_client.get("/ops/runs/", {"since": "yesterday"}).status_code == 400


def test_runs_keyset_pagination(admin_client: Client, settings: Any) -> None:
    settings.TASKTRAIL = {**settings.TASKTRAIL, "LIST_PAGE_SIZE": 2}
    start = timezone.now()
    made = [make_run(enqueued_at=start - timedelta(seconds=i)) for i in range(5)]
    seen: list[str] = []
    params: dict[str, str] = {}
    while True:
        response = admin_client.get("/ops/runs/", params)
        seen += [r.id for r in response.context["runs"]]
        if not response.context["next_cursor"]:
            break
        params = {"cursor": response.context["next_cursor"]}
    assert seen == [r.id for r in made]
    assert admin_client.get("/ops/runs/", {"cursor": "!!"}).status_code == 400


def test_run_detail_shows_error_and_redacts(admin_client: Client) -> None:
    run = make_run(
        status="FAILED",
        kwargs={"user": "ann", "password": "hunter2"},
        error_type="ValueError",
        error_message="boom",
        error_traceback="Traceback (most recent call last):\n  ValueError: boom",
        attempts=3,
    )
    response = admin_client.get(f"/ops/runs/{run.id}/")
    body = response.content.decode()
    assert "Traceback (most recent call last)" in body
    assert "hunter2" not in body
    assert "ann" in body
    assert admin_client.get(f"/ops/runs/{uuid.uuid4()}/").status_code == 404


def test_family_of_a_chain(admin_client: Client) -> None:
    root = make_run()
    make_run(root_id=root.id, parent_id=root.id, task="tests.testapp.tasks.echo")
    TaskRun.objects.filter(pk=root.pk).update(root_id=root.id)
    response = admin_client.get(f"/ops/runs/{root.id}/")
    assert len(response.context["family"]) == 2


def test_read_only_staff_sees_no_buttons_and_cannot_post(readonly_client: Client) -> None:
    run = make_run(status="FAILED")
    page = readonly_client.get("/ops/failures/").content.decode()
    assert "read-only" in page
    assert f"/ops/runs/{run.id}/retry/" not in page
    assert "Retry all matching" not in page
    response = readonly_client.post(f"/ops/runs/{run.id}/retry/")
    assert response.status_code == 403
    assert readonly_client.post("/ops/bulk/retry/apply/", {"task": run.task}).status_code == 403
    assert not AuditEntry.objects.exists()


def test_actions_need_post_and_csrf(operator_client: Client) -> None:
    run = make_run(status="FAILED")
    assert operator_client.get(f"/ops/runs/{run.id}/retry/").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = operator_client.cookies
    assert strict.post(f"/ops/runs/{run.id}/retry/").status_code == 403


def test_bulk_confirmation_states_the_count(operator_client: Client) -> None:
    for _ in range(3):
        make_run(status="FAILED", task="tests.testapp.tasks.always_fails")
    make_run(status="SUCCESSFUL", task="tests.testapp.tasks.always_fails")
    response = operator_client.get("/ops/bulk/retry/", {"task": "tests.testapp.tasks.always_fails"})
    assert response.context["count"] == 3
    assert b"Retry 3 runs?" in response.content


def test_streams_are_staff_only(readonly_client: Client) -> None:
    run = make_run()
    assert Client().get("/ops/runs/events/").status_code == 403
    assert Client().get(f"/ops/runs/{run.id}/events/").status_code == 403
    assert readonly_client.get("/ops/runs/events/", {"last_event_id": "x"}).status_code == 400


def test_assets_are_served(admin_client: Client) -> None:
    response = Client().get("/ops/assets/dashboard.js")
    assert response.status_code == 200
    assert b"EventSource" in response.content
    assert Client().get("/ops/assets/secret.py").status_code == 404


def test_schedules_from_settings(admin_client: Client) -> None:
    from celery import current_app

    from tests.celery_app import app

    assert current_app.main == app.main
    app.conf.beat_schedule = {
        "add-every-minute": {"task": "tests.testapp.tasks.add", "schedule": 60.0, "args": [1, 2]}
    }
    try:
        last = make_run(task="tests.testapp.tasks.add", status="FAILED")
        response = admin_client.get("/ops/schedules/")
        (entry,) = response.context["entries"]
        assert entry.name == "add-every-minute"
        assert entry.last_run.id == last.id
        assert entry.next_run_at is not None
        assert f"/ops/runs/{last.id}/" in response.content.decode()
    finally:
        app.conf.beat_schedule = {}


def test_running_a_schedule_now_is_audited(admin_client: Client) -> None:
    from tasktrail.models import AuditEntry
    from tests.celery_app import app

    app.conf.beat_schedule = {
        "add-every-minute": {"task": "tests.testapp.tasks.add", "schedule": 60.0, "args": [1, 2]}
    }
    try:
        response = admin_client.post(
            "/ops/schedules/run-now/", {"key": "settings:add-every-minute"}, REMOTE_ADDR="10.0.0.5"
        )
        assert response.status_code == 302
        entry = AuditEntry.objects.get(action="run_now")
        assert (entry.actor_name, entry.address) == ("boss", "10.0.0.5")
        assert entry.detail["schedule"] == "add-every-minute"
        assert response["Location"].rstrip("/").endswith(entry.detail["new_run"])
    finally:
        app.conf.beat_schedule = {}
