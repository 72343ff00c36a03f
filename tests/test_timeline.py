"""The workflow timeline's JSON and page through Django's test client: which runs make a
family, their order and bars, members not yet saved, the cap, and who may look."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from tasktrail import Status
from tasktrail.dashboard import workflow
from tasktrail.flusher import flush_all
from tasktrail.models import TaskRun
from tasktrail.transitions import apply, stamp
from tests.testapp.tasks import add

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls_ops")]

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.get_fixed_timezone(0))


@pytest.fixture(autouse=True)
def _only_these_runs(own_key_prefix: str) -> None:
    """Runs of this test only: its own key prefix (no worker flushes them) and a clean
    table."""
    TaskRun.objects.all().delete()


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


def run(offset: float, ran: float | None = 1.0, **fields: Any) -> TaskRun:
    """A run enqueued ``offset`` seconds after T0 that waited half a second and ran ``ran``."""
    enqueued = T0 + timedelta(seconds=offset)
    started = enqueued + timedelta(seconds=0.5) if ran is not None else None
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "task": "tests.testapp.tasks.add",
        "status": "SUCCESSFUL" if ran is not None else "READY",
        "enqueued_at": enqueued,
        "started_at": started,
        "last_attempted_at": started,
        "finished_at": started + timedelta(seconds=ran) if started and ran else None,
        "attempts": 1 if started else 0,
    }
    values.update(fields)
    return TaskRun.objects.create(**values)


def bars(client: Client, run_id: str) -> dict[str, Any]:
    response = client.get(f"/ops/runs/{run_id}/timeline/data/")
    assert response.status_code == 200, response.content
    data: dict[str, Any] = response.json()
    return data


def test_a_chain_sorted_by_start_with_waits_runs_and_attempts(admin_client: Client) -> None:
    first = run(0)
    second = run(2, root_id=first.id, parent_id=first.id, task="tests.testapp.tasks.echo")
    started = T0 + timedelta(seconds=4.5)
    retried = run(
        4, root_id=first.id, parent_id=second.id, status="RUNNING", attempts=3,
        started_at=started, last_attempted_at=started + timedelta(seconds=3), finished_at=None,
    )  # fmt: skip
    waiting = run(1, ran=None, root_id=first.id, parent_id=first.id)  # never started
    failed = run(3, root_id=first.id, status="FAILED")
    TaskRun.objects.filter(pk=first.pk).update(root_id=first.id)
    run(0)  # not of the family

    data = bars(admin_client, second.id)
    ids = [bar["id"] for bar in data["bars"]]
    # By start; a run that has not started comes after those that have.
    assert ids == [first.id, second.id, failed.id, retried.id, waiting.id]
    assert data["total"] == data["shown"] == 5
    assert data["finished"] is False  # READY and RUNNING members
    by_id = {bar["id"]: bar for bar in data["bars"]}
    assert [by_id[i]["status"] for i in ids] == [
        "SUCCESSFUL", "SUCCESSFUL", "FAILED", "RUNNING", "READY",
    ]  # fmt: skip
    one = by_id[first.id]
    assert one["started"] - one["enqueued"] == pytest.approx(0.5)  # the wait
    assert one["finished"] - one["started"] == pytest.approx(1.0)  # the run
    assert by_id[waiting.id]["started"] is None and by_id[waiting.id]["finished"] is None
    attempts = by_id[retried.id]
    assert attempts["attempts"] == 3
    assert attempts["attempted"] - attempts["started"] == pytest.approx(3.0)  # earlier attempts
    assert attempts["parent"] == second.id
    assert by_id[second.id]["url"] == f"/ops/runs/{second.id}/"


def test_a_chord_from_any_member(admin_client: Client) -> None:
    """A chord published outside a task: each header member is its own root, they share
    the group, and the callback's root is the header member that finished last."""
    group = str(uuid.uuid4())
    header = [run(i * 0.1) for i in range(4)]
    for member in header:
        TaskRun.objects.filter(pk=member.pk).update(root_id=member.id, group_id=group)
    callback = run(5, root_id=header[2].id, parent_id=header[2].id, task="tests.testapp.tasks.echo")
    child = run(7, root_id=header[2].id, parent_id=callback.id)  # a task the callback spawned
    everyone = {m.id for m in header} | {callback.id, child.id}
    for member_id in (header[0].id, callback.id, child.id):
        data = bars(admin_client, member_id)
        assert {bar["id"] for bar in data["bars"]} == everyone
        assert data["bars"][-2]["id"] == callback.id and data["finished"] is True


def test_members_only_in_redis_appear_and_hot_records_refresh_the_rows(
    admin_client: Client, own_key_prefix: str
) -> None:
    root = run(0, status="RUNNING", finished_at=None)
    TaskRun.objects.filter(pk=root.pk).update(root_id=root.id)
    queue = f"{own_key_prefix}-nowhere"  # published for real, consumed by no worker
    unsaved = add.s(1, 2).apply_async(queue=queue, root_id=root.id, parent_id=root.id)
    assert not TaskRun.objects.filter(pk=unsaved.id).exists()
    data = bars(admin_client, root.id)
    by_id = {bar["id"]: bar for bar in data["bars"]}
    assert set(by_id) == {root.id, unsaved.id}
    assert by_id[unsaved.id]["status"] == "READY" and by_id[unsaved.id]["enqueued"]
    assert by_id[root.id]["status"] == "RUNNING"  # no hot record: the row as it is
    assert data["note"] == ""
    # The unsaved member's own timeline finds the saved root through its root link.
    assert {bar["id"] for bar in bars(admin_client, unsaved.id)["bars"]} == set(by_id)

    flush_all()  # saved as READY; then it starts, and the row lags behind the hot record
    now = stamp(time.time())  # as the worker's task_prerun receiver sends them
    apply(
        unsaved.id, "start", attempt=1, status=Status.RUNNING,
        fields={"last_attempted_at": now}, create={"started_at": now},
    )  # fmt: skip
    assert TaskRun.objects.get(pk=unsaved.id).status == "READY"
    fresh = {bar["id"]: bar for bar in bars(admin_client, root.id)["bars"]}[unsaved.id]
    assert fresh["status"] == "RUNNING" and fresh["started"] and fresh["attempts"] == 1


def test_members_saved_while_the_timeline_reads_are_not_lost(
    admin_client: Client, own_key_prefix: str, monkeypatch: Any
) -> None:
    """The flusher saves members between the timeline's database query and its look at
    the dirty set: they left the set after their rows were written, so a read of the set
    before the query finds them in one place or the other (CI saw a chord of 20 shrink
    to 4 under load)."""
    from tasktrail import family

    root = run(0, status="RUNNING", finished_at=None)
    TaskRun.objects.filter(pk=root.pk).update(root_id=root.id)
    queue = f"{own_key_prefix}-nowhere"
    unsaved = [
        add.s(1, i).apply_async(queue=queue, root_id=root.id, parent_id=root.id) for i in range(3)
    ]
    discover = family._discover

    def flusher_runs_meanwhile(*args: Any) -> Any:
        found = discover(*args)
        flush_all()  # written to the database and released from the dirty set
        return found

    monkeypatch.setattr(family, "_discover", flusher_runs_meanwhile)
    data = bars(admin_client, root.id)
    assert {bar["id"] for bar in data["bars"]} == {root.id, *(r.id for r in unsaved)}


def test_the_cap_says_how_many_it_shows(admin_client: Client, monkeypatch: Any) -> None:
    monkeypatch.setattr(workflow, "MAX_MEMBERS", 5)
    first = run(0, root_id="the-root")
    for index in range(1, 8):
        run(index, root_id="the-root")
    data = bars(admin_client, first.id)
    assert (data["shown"], data["total"]) == (5, 8)
    page = admin_client.get(f"/ops/runs/{first.id}/timeline/")
    assert page.status_code == 200
    assert "data-gantt" in page.content.decode()


def test_staff_only_and_unknown_runs(admin_client: Client) -> None:
    member = run(0, root_id="r")
    for path in (f"/ops/runs/{member.id}/timeline/", f"/ops/runs/{member.id}/timeline/data/"):
        assert Client().get(path).status_code == 302  # to the login page
        someone = Client()
        someone.force_login(User.objects.create_user(f"u-{uuid.uuid4().hex[:6]}"))
        assert someone.get(path).status_code == 403
    missing = uuid.uuid4()
    response = admin_client.get(f"/ops/runs/{missing}/timeline/data/")
    assert response.status_code == 404 and "No run" in response.json()["error"]
    assert admin_client.get(f"/ops/runs/{missing}/timeline/").status_code == 404
    assert admin_client.get("/ops/runs/~%25/timeline/data/").status_code == 404  # bad escape


def test_the_run_page_links_to_the_timeline_only_in_a_workflow(admin_client: Client) -> None:
    alone = run(0)
    first = run(1, root_id="chain-root")
    assert b"data-timeline-link" not in admin_client.get(f"/ops/runs/{alone.id}/").content
    page = admin_client.get(f"/ops/runs/{first.id}/").content.decode()
    assert f'href="/ops/runs/{first.id}/timeline/" data-timeline-link' in page


def test_a_crowded_dirty_set_refreshes_every_unfinished_member(
    admin_client: Client, own_key_prefix: str, monkeypatch: Any
) -> None:
    from tasktrail import family

    root = run(0, root_id="crowded")
    queue = f"{own_key_prefix}-nowhere"
    saved = add.s(1, 1).apply_async(queue=queue, root_id="crowded")
    flush_all()
    now = stamp(time.time())
    apply(saved.id, "start", attempt=1, status=Status.RUNNING, create={"started_at": now})
    add.s(2, 2).apply_async(queue=queue, root_id="crowded")  # unsaved, not looked for now
    monkeypatch.setattr(family, "DIRTY_SCAN", 0)
    data = bars(admin_client, root.id)
    assert {bar["id"]: bar["status"] for bar in data["bars"]} == {
        root.id: "SUCCESSFUL", saved.id: "RUNNING",
    }  # fmt: skip
    assert "show once saved" in data["note"]


def test_redis_down_draws_what_the_database_holds(admin_client: Client, settings: Any) -> None:
    first = run(0, root_id="offline")
    second = run(1, root_id="offline", status="RUNNING", finished_at=None)
    settings.TASKTRAIL = {**settings.TASKTRAIL, "REDIS_URL": "redis://127.0.0.1:1/0"}
    data = bars(admin_client, first.id)
    assert [bar["id"] for bar in data["bars"]] == [first.id, second.id]
    assert "Redis is unreachable" in data["note"]
