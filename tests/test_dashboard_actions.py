"""Dashboard actions against real Redis and the real broker (no worker needed):
retry one run, cancel one run, bulk cancel and bulk retry by filter; each audited."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

import tests.celery_app  # noqa: F401  (publishing needs the app)
from tasktrail import enqueue, get_run
from tasktrail.flusher import flush_all
from tasktrail.models import AuditEntry, TaskRun
from tests.testapp.tasks import sleepy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.urls_ops")]


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


def test_cancel_one_run(admin_client: Client) -> None:
    run = enqueue(sleepy, 1, countdown=3600)
    response = admin_client.post(f"/ops/runs/{run.id}/cancel/", REMOTE_ADDR="10.0.0.7")
    assert response.status_code == 302
    assert get_run(run.id).status == "CANCELLED"
    entry = AuditEntry.objects.get(run_id=run.id)
    assert (entry.action, entry.actor_name, entry.address) == ("cancel", "boss", "10.0.0.7")


def test_retry_one_failed_run(admin_client: Client) -> None:
    run = enqueue(sleepy, 1, countdown=3600)
    admin_client.post(f"/ops/runs/{run.id}/cancel/")
    response = admin_client.post(f"/ops/runs/{run.id}/retry/")
    assert response.status_code == 302
    new_id = response["Location"].rstrip("/").rsplit("/", 1)[-1]
    assert get_run(new_id).retry_of == run.id
    assert AuditEntry.objects.filter(run_id=run.id, action="retry").exists()
    # Not retryable: a waiting run.
    refused = admin_client.post(f"/ops/runs/{new_id}/retry/", follow=True)
    assert "Only failed or cancelled runs can be retried" in refused.content.decode()
    admin_client.post(f"/ops/runs/{new_id}/cancel/")


def test_bulk_cancel_by_filter(admin_client: Client) -> None:
    marker = uuid.uuid4().hex
    runs = [enqueue(sleepy, 1, countdown=3600, kwargs={}) for _ in range(3)]
    other = enqueue(sleepy, 2, countdown=3600)
    TaskRun.objects.all().delete()
    flush_all()
    TaskRun.objects.filter(pk__in=[r.id for r in runs]).update(kwargs={"marker": marker})
    confirm = admin_client.get("/ops/bulk/cancel/", {"search": marker})
    assert confirm.context["count"] == 3
    done = admin_client.post("/ops/bulk/cancel/apply/", {"search": marker}, follow=True)
    assert "Cancelled 3 runs" in done.content.decode()
    assert {get_run(r.id).status for r in runs} == {"CANCELLED"}
    assert get_run(other.id).status == "READY"
    assert AuditEntry.objects.filter(action="cancel").count() == 3
    admin_client.post(f"/ops/runs/{other.id}/cancel/")


def _rows_of(runs: list[Any]) -> list[tuple[str, str, Any]]:
    """What the database holds for ``runs``: the failure message says it when it fails."""
    rows = TaskRun.objects.filter(pk__in=[r.id for r in runs])
    return [(row.pk, row.status, row.enqueued_at) for row in rows]


def test_bulk_retry_skips_runs_already_retried(admin_client: Client) -> None:
    # Failed runs made in the database only: a run cancelled through Redis can be written
    # back as CANCELLED by a session worker that handles the revoke later (it made this test
    # depend on whether an earlier test had started that worker). A marker in the arguments
    # keeps other tests' failed sleepy runs out of the count (the database is shared).
    marker = f"0.{uuid.uuid4().int % 10**12:012d}7"
    runs = [
        TaskRun.objects.create(
            id=str(uuid.uuid4()),
            task="tests.testapp.tasks.sleepy",
            status="FAILED",
            args=[float(marker)],
            kwargs={},
            enqueued_at=timezone.now(),
            finished_at=timezone.now(),
        )
        for _ in range(2)
    ]
    query = {"task": "tests.testapp.tasks.sleepy", "since": "1h", "search": marker}
    first = admin_client.post("/ops/bulk/retry/apply/", query, follow=True)
    said = [str(m) for m in first.context["messages"]] if first.context else []
    assert "Retried 2 runs." in said, (first.redirect_chain, said, _rows_of(runs))
    again = admin_client.post("/ops/bulk/retry/apply/", query, follow=True)
    said = [str(m) for m in again.context["messages"]] if again.context else []
    assert "Retried 0 runs; 2 skipped (already retried)." in said, (said, _rows_of(runs))
    for entry in AuditEntry.objects.filter(action="retry"):
        admin_client.post(f"/ops/runs/{entry.detail['new_run']}/cancel/")


@pytest.mark.parametrize("action", ["retry", "replay"])
def test_a_broker_that_does_not_answer_is_said_not_a_500(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """kombu raises OperationalError when it cannot publish (a broker that is down):
    the operator reads that nothing was published, and no run or audit entry appears."""
    from celery import current_app
    from kombu.exceptions import OperationalError

    run = enqueue(sleepy, 1, countdown=3600)
    admin_client.post(f"/ops/runs/{run.id}/cancel/")

    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(current_app, "send_task", down)
    form = {"args": "[2]", "kwargs": "{}"} if action == "replay" else {}
    response = admin_client.post(f"/ops/runs/{run.id}/{action}/", form, follow=True)
    assert response.status_code == (503 if action == "replay" else 200)
    assert "nothing was published" in response.content.decode()
    assert not AuditEntry.objects.filter(run_id=run.id, action=action).exists()


def test_a_bulk_retry_stops_at_a_broker_that_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first retry that cannot be published ends the round with the reason (each
    following one would fail alike); nothing raises, what was done is reported."""
    from celery import current_app
    from kombu.exceptions import OperationalError

    from tasktrail import actions, operations

    runs = [enqueue(sleepy, 1, countdown=3600) for _ in range(2)]
    for run in runs:
        actions.cancel(run.id)

    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(current_app, "send_task", down)
    outcome = operations.retry_each([r.id for r in runs], actor=None, address=None)
    assert outcome.done == [] and "nothing was published" in outcome.stopped
    assert not AuditEntry.objects.filter(action="retry").exists()
