"""Failure groups: the flusher and the outage fallback fingerprint failed runs; the groups
and group pages; retry all, mute and unmute (who may, CSRF, audited); and failures from
a real worker landing in their groups."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

import tests.celery_app  # noqa: F401  (publishing needs the app)
from tasktrail import enqueue, fallback, get_run, keys
from tasktrail.connection import get_redis
from tasktrail.fingerprints import digest
from tasktrail.flusher import flush_all, row_of
from tasktrail.models import AuditEntry, FailureGroup, TaskRun
from tests.testapp.tasks import reject_order, sign_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.urls_ops")]

TASK = "tests.testapp.tasks.sleepy"  # retried runs sleep a moment: harmless to any worker
TRACEBACK = """Traceback (most recent call last):
  File "/usr/lib/python3/site-packages/celery/app/trace.py", line 453, in trace_task
    R = retval = fun(*args, **kwargs)
  File "/srv/shop/orders/billing.py", line {line}, in {function}
    raise {kind}(f"order {{order}} declined")
  File "/usr/lib/python3.12/json/decoder.py", line 337, in decode
    obj, end = self.raw_decode(s, idx=_w(s, 0).end())
{kind}: order {order} declined
"""


def _client(*, staff: bool = True, change: bool = True) -> Client:
    user = User.objects.create_user(f"u-{uuid.uuid4().hex[:8]}", "", "pw", is_staff=staff)
    if change:
        user.user_permissions.add(Permission.objects.get(codename="change_taskrun"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def boss() -> Client:
    return _client()


def _failed(
    count: int,
    kind: str,
    *,
    line: int = 12,
    function: str = "charge",
    ago: timedelta = timedelta(minutes=5),
    incomplete: bool = False,
) -> list[TaskRun]:
    """Failed runs as the flusher writes them, ``ago`` before now."""
    runs = []
    for _ in range(count):
        order = uuid.uuid4().hex[:6]
        text = TRACEBACK.format(line=line, kind=kind, order=order, function=function)
        at = timezone.now() - ago
        run = TaskRun.objects.create(
            id=str(uuid.uuid4()), task=TASK, status="FAILED", args=[0.01], kwargs={},
            error_type=kind, error_message=f"order {order} declined", error_traceback=text,
            fingerprint=digest(TASK, kind, text), enqueued_at=at, finished_at=at,
            arguments_incomplete=incomplete,
        )  # fmt: skip
        runs.append(run)
    return runs


def _kind() -> str:
    """An exception type of this test's own: its groups are no other test's."""
    return f"shop.errors.Declined{uuid.uuid4().hex[:8]}"


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_the_flusher_fingerprints_failed_runs_only() -> None:
    text = TRACEBACK.format(line=12, kind="ValueError", order="1", function="f")
    base = {"id": "r1", "task": TASK, "error_type": "ValueError", "error_traceback": text}
    assert row_of({**base, "status": "FAILED"})["fingerprint"] == digest(TASK, "ValueError", text)
    assert row_of({**base, "status": "RETRYING"})["fingerprint"] == ""
    assert row_of({**base, "status": "CANCELLED"})["fingerprint"] == ""


def test_the_outage_fallback_fingerprints_a_failure() -> None:
    run_id = str(uuid.uuid4())
    TaskRun.objects.create(id=run_id, task=TASK, status="RUNNING", enqueued_at=timezone.now())
    text = TRACEBACK.format(line=7, kind="KeyError", order="2", function="f")
    fields = {"error_type": "KeyError", "error_message": "x", "error_traceback": text}
    fallback.write(
        run_id, "finish", attempt=1, status="FAILED", fields=fields, create={}, now=time.time()
    )
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.fingerprint) == ("FAILED", digest(TASK, "KeyError", text))
    # A run the database never saw: created FAILED, in its group.
    unseen = str(uuid.uuid4())
    create = {"task": TASK, "enqueued_at": repr(time.time())}
    fallback.write(
        unseen, "finish", attempt=1, status="FAILED", fields=fields, create=create, now=time.time()
    )
    assert TaskRun.objects.get(pk=unseen).fingerprint == digest(TASK, "KeyError", text)


def test_groups_page_counts_groups_with_their_sparkline(boss: Client) -> None:
    kind = _kind()
    _failed(3, kind)
    _failed(1, kind, ago=timedelta(hours=5))
    _failed(2, kind, ago=timedelta(days=20))  # outside the window: first seen only
    other = _failed(1, kind, line=40, function="refund")[0]  # another place: another group
    page = boss.get("/ops/failures/groups/")
    assert page.status_code == 200
    rows = {r["group"].fingerprint: r for r in page.context["rows"]}
    main = rows[
        digest(TASK, kind, TRACEBACK.format(line=9, kind=kind, order="x", function="charge"))
    ]
    assert main["summary"].count == 4
    assert main["group"].frame == "/srv/shop/orders/billing.py:12 in charge"
    assert main["group"].task == TASK and main["group"].error_type == kind
    assert timezone.now() - main["summary"].first_seen > timedelta(days=19)
    # Three failed 5 minutes ago: in the last hour's bar, or the one before in an hour's
    # first 5 minutes (bars are clock hours).
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    recent = (timezone.now() - timedelta(minutes=5)).replace(minute=0, second=0, microsecond=0)
    slot = -1 - int((hour - recent).total_seconds() // 3600)
    assert sum(main["summary"].hourly) == 4 and main["summary"].hourly[slot] == 3
    assert main["spark"].total == 4 and len(main["spark"].bars) == 24
    assert rows[other.fingerprint]["summary"].count == 1
    html = page.content.decode()
    assert f'data-fingerprint="{other.fingerprint}"' in html and "<svg" in html
    assert "/ops/failures/groups/" in boss.get("/ops/failures/").content.decode()


def test_group_page_lists_its_runs_and_bad_fingerprints_are_404(boss: Client) -> None:
    kind = _kind()
    runs = _failed(3, kind)
    _failed(1, _kind())
    fingerprint = runs[0].fingerprint
    page = boss.get(f"/ops/failures/groups/{fingerprint}/")
    assert page.status_code == 200
    assert {r.id for r in page.context["runs"]} == {r.id for r in runs}
    html = page.content.decode()
    assert "Retry all in this group" in html
    assert "Traceback of the newest run" in html and "/srv/shop/orders/billing.py" in html
    for bad in ("nonsense", "0" * 16, "A" * 16, fingerprint + "0"):
        assert boss.get(f"/ops/failures/groups/{bad}/").status_code == 404, bad
        assert boss.post(f"/ops/failures/groups/{bad}/retry/").status_code == 404, bad
        assert boss.post(f"/ops/failures/groups/{bad}/mute/", {"muted": "1"}).status_code == 404
    assert boss.get(f"/ops/failures/groups/{fingerprint}/?cursor=%%%").status_code == 400


def test_mute_hides_a_group_until_unmuted_and_is_audited(boss: Client) -> None:
    fingerprint = _failed(2, _kind())[0].fingerprint

    def listed(query: str = "") -> bool:
        page = boss.get(f"/ops/failures/groups/{query}")
        return fingerprint in {r["group"].fingerprint for r in page.context["rows"]}

    assert listed()
    muted = boss.post(
        f"/ops/failures/groups/{fingerprint}/mute/", {"muted": "1"}, REMOTE_ADDR="10.0.0.9"
    )
    assert muted.status_code == 302
    assert FailureGroup.objects.get(pk=fingerprint).muted
    assert not listed() and listed("?muted=1")
    boss.post(f"/ops/failures/groups/{fingerprint}/mute/", {"muted": "0"})
    assert listed() and FailureGroup.objects.get(pk=fingerprint).muted_by == ""
    audit = AuditEntry.objects.filter(detail__fingerprint=fingerprint).order_by("at")
    assert [e.action for e in audit] == ["mute_group", "unmute_group"]
    assert audit[0].address == "10.0.0.9" and audit[0].run_id == ""


def test_who_may_see_and_act(boss: Client) -> None:
    fingerprint = _failed(1, _kind())[0].fingerprint
    pages = ["/ops/failures/groups/", f"/ops/failures/groups/{fingerprint}/"]
    actions = [f"/ops/failures/groups/{fingerprint}/retry/"]
    actions.append(f"/ops/failures/groups/{fingerprint}/mute/")
    anonymous, outsider = Client(), _client(staff=False)
    viewer = _client(change=False)
    for url in pages:
        assert anonymous.get(url).status_code == 302  # to the login page
        assert outsider.get(url).status_code == 403
        assert viewer.get(url).status_code == 200
    assert "Retry all in this group" not in viewer.get(pages[1]).content.decode()
    for url in actions:
        assert anonymous.post(url, {"muted": "1"}).status_code == 302
        assert outsider.post(url, {"muted": "1"}).status_code == 403
        assert viewer.post(url, {"muted": "1"}).status_code == 403
        assert boss.get(url).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(User.objects.create_superuser(f"s-{uuid.uuid4().hex[:6]}", "", "pw"))
    for url in actions:
        assert strict.post(url, {"muted": "1"}).status_code == 403  # no CSRF token
    assert not FailureGroup.objects.filter(pk=fingerprint, muted=True).exists()
    assert not AuditEntry.objects.filter(detail__fingerprint=fingerprint).exists()


def test_retry_all_retries_each_run_once_and_reports_the_rest(boss: Client) -> None:
    kind = _kind()
    runs = _failed(2, kind)
    # Its arguments were redacted: refused, counted, and (the newest, so tried first) it
    # does not stop the others.
    _failed(1, kind, incomplete=True, ago=timedelta(minutes=1))
    fingerprint = runs[0].fingerprint
    url = f"/ops/failures/groups/{fingerprint}/retry/"
    try:
        first = boss.post(url, REMOTE_ADDR="10.0.0.8", follow=True)
        said = _messages(first)
        assert any(
            m.startswith("Retried 2 runs of this group; 1 cannot be retried") for m in said
        ), said
        retried = AuditEntry.objects.filter(run_id__in=[r.id for r in runs], action="retry")
        assert retried.count() == 2
        for entry in retried:
            assert get_run(entry.detail["new_run"]).retry_of == entry.run_id
        group_entry = AuditEntry.objects.get(action="retry_group")
        assert group_entry.detail["fingerprint"] == fingerprint
        assert (group_entry.detail["retried"], group_entry.detail["not_replayable"]) == (2, 1)
        assert group_entry.address == "10.0.0.8"
        again = boss.post(url, follow=True)
        said = _messages(again)
        assert any(m.startswith("Retried 0 runs") and "2 skipped (already" in m for m in said), said
    finally:
        for entry in AuditEntry.objects.filter(action="retry"):
            boss.post(f"/ops/runs/{entry.detail['new_run']}/cancel/")


def _rows_in_database(run_ids: list[str], seconds: float = 30.0) -> dict[str, TaskRun]:
    deadline = time.monotonic() + seconds
    while True:
        flush_all()
        rows = {r.id: r for r in TaskRun.objects.filter(pk__in=run_ids, status="FAILED")}
        if len(rows) == len(run_ids) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


@pytest.mark.worker
def test_failures_from_a_real_worker_land_in_their_groups(
    worker: Any, boss: Client, settings: Any
) -> None:
    marker = uuid.uuid4().hex[:8]
    same_line = [enqueue(reject_order, f"{marker}-{n}") for n in range(2)]
    other = enqueue(sign_in, "nobody", "secret")
    for handle in (*same_line, other):
        assert handle.wait(timeout=60).status == "FAILED"
    rows = _rows_in_database([h.id for h in (*same_line, other)])
    assert len(rows) == 3, rows
    first, second = (rows[h.id] for h in same_line)
    assert first.error_message != second.error_message
    assert first.fingerprint and first.fingerprint == second.fingerprint
    assert rows[other.id].fingerprint not in ("", first.fingerprint)
    page = boss.get(f"/ops/failures/groups/{first.fingerprint}/")
    group = page.context["group"]
    assert group.frame.startswith("tests/testapp/tasks.py:") and group.frame.endswith(
        " in reject_order"
    )
    assert {first.id, second.id} <= {r.id for r in page.context["runs"]}
    other_group = boss.get(f"/ops/failures/groups/{rows[other.id].fingerprint}/").context["group"]
    assert other_group.error_type == "builtins.PermissionError"
    assert other_group.frame.endswith(" in sign_in")


def test_a_run_refused_meanwhile_does_not_stop_the_others(boss: Client) -> None:
    kind = _kind()
    runs = _failed(2, kind)
    # The newest run, tried first, succeeded meanwhile: Redis knows, the row does not yet.
    changed = _failed(1, kind, ago=timedelta(minutes=1))[0]
    get_redis().hset(keys.run_hash(changed.id), "status", "SUCCESSFUL")
    try:
        done = boss.post(f"/ops/failures/groups/{changed.fingerprint}/retry/", follow=True)
        said = _messages(done)
        expected = f"Retried 2 runs of this group; 1 refused ({changed.id}: Only failed"
        assert any(m.startswith(expected) for m in said), said
        retried = AuditEntry.objects.filter(action="retry").values_list("run_id", flat=True)
        assert set(retried) == {r.id for r in runs}
        assert AuditEntry.objects.get(action="retry_group").detail["refused"] == 1
    finally:
        get_redis().delete(keys.run_hash(changed.id))
        for entry in AuditEntry.objects.filter(action="retry"):
            boss.post(f"/ops/runs/{entry.detail['new_run']}/cancel/")
