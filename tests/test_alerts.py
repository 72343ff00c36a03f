"""Alerts: every rule kind through every channel, once per group and window.

Real parts: the session's celery worker makes the failing, retried and slow runs; an
aiosmtpd server and an HTTP receiver count what arrives. Ports 27400-27401.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import django
import pytest
from django.core.management import call_command
from django.test import RequestFactory

from tasktrail import enqueue
from tasktrail.alerts.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER
from tasktrail.alerts.delivery import MAX_ATTEMPTS, current_time, evaluate
from tasktrail.alerts.evaluation import window_start
from tasktrail.alerts.models import AlertDelivery
from tasktrail.checks import check_alerts
from tasktrail.models import TaskRun
from tasktrail.webhooks import HmacSha256
from tests.alerts_support import (
    Inbox,
    Mailbox,
    fresh_window,
    http_receiver,
    mail_to_smtp_server,
    smtp_server,
    wait_for,
)
from tests.testapp.tasks import add, always_fails, boom, sleepy

SMTP_PORT, HTTP_PORT, CLOSED_PORT = 27400, 27401, 27499
HTTP = f"http://127.0.0.1:{HTTP_PORT}"
SECRET = "alerts-test-secret"
DAY = 86400
CHANNELS = {
    "mail": {"type": "email", "to": ["ops@example.com"], "from": "alerts@example.com"},
    "slack": {"type": "slack", "url": f"{HTTP}/slack"},
    "hook": {"type": "webhook", "url": f"{HTTP}/hook", "secret": SECRET},
}
ALL = ["mail", "slack", "hook"]


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    with smtp_server(SMTP_PORT) as box:
        yield box


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    with http_receiver(HTTP_PORT) as box:
        yield box


@pytest.fixture
def receivers(mailbox: Mailbox, inbox: Inbox, settings: Any) -> tuple[Mailbox, Inbox]:
    """Both receivers, empty, and Django's mail going to the SMTP server."""
    mail_to_smtp_server(settings, SMTP_PORT)
    mailbox.messages.clear()
    inbox.deliveries.clear()
    inbox.refuse.clear()
    return mailbox, inbox


def alerts(settings: Any, rules: dict[str, Any], channels: dict[str, Any] = CHANNELS) -> None:
    settings.TASKTRAIL = {**settings.TASKTRAIL, "ALERTS": {"CHANNELS": channels, "RULES": rules}}


def counts(mailbox: Mailbox, inbox: Inbox) -> tuple[int, int, int]:
    return len(mailbox.messages), len(inbox.to("/slack")), len(inbox.to("/hook"))


def check_ids(settings: Any, raw: Any) -> dict[str, str]:
    settings.TASKTRAIL = {**settings.TASKTRAIL, "ALERTS": raw}
    found: dict[str, str] = {}
    for m in check_alerts():
        found[str(m.id)] = f"{found.get(str(m.id), '')} {m.msg} {m.hint}"
    return found


def test_checks_name_each_mistake_and_its_fix(settings: Any) -> None:
    assert check_ids(settings, {"CHANNELS": CHANNELS, "RULES": {
        "ok": {"kind": "failed", "channels": ALL}}}) == {}  # fmt: skip
    assert "CHANNELS" in check_ids(settings, ["not", "a", "dict"])["tasktrail.E201"]
    assert "INTERVAL" in check_ids(settings, {"RULES": {}, "SPEED": 1})["tasktrail.E201"]
    found = check_ids(
        settings,
        {
            "CHANNELS": {
                "pager": {"type": "webhook", "url": "https://pager.example.com/in"},
                "plain": {"type": "slack", "url": "http://chat.example.com/hook"},
                "fax": {"type": "fax"},
            },
            "RULES": {
                "a": {"kind": "failed", "channels": ["nowhere"]},
                "b": {"kind": "runtime", "channels": ["plain"]},
            },
        },
    )
    assert "'secret'" in found["tasktrail.E202"] and "environment" in found["tasktrail.E202"]
    assert "'type': 'email', 'slack' or 'webhook'" in found["tasktrail.E202"]
    assert "needs 'seconds'" in found["tasktrail.E203"]
    assert "unknown channel(s) nowhere" in found["tasktrail.E204"]
    assert "https://" in found["tasktrail.W202"]
    rate = check_ids(settings, {"CHANNELS": CHANNELS, "RULES": {
        "r": {"kind": "failure_rate", "threshold": 20, "channels": ALL}}})  # fmt: skip
    assert "between 0 and 1" in rate["tasktrail.E203"]
    mailer = {"type": "email", "to": ["ops@example.com"], "mailer": "alerts"}
    named = check_ids(settings, {"CHANNELS": {"m": mailer}, "RULES": {
        "r": {"kind": "failed", "channels": ["m"]}}})  # fmt: skip
    assert ("tasktrail.E202" in named) is (django.VERSION < (6, 1))  # MAILERS came in 6.1
    unused = check_ids(settings, {"CHANNELS": CHANNELS, "RULES": {}})
    assert "used by no rule" in unused["tasktrail.W201"]


def test_windows_are_cut_alike_everywhere() -> None:
    now = current_time()
    start = window_start(now, 300)
    assert start.timestamp() % 300 == 0 and start <= now < start + timedelta(seconds=300)


def test_signed_webhook_verifies_with_tasktrail_webhook_provider(
    receivers: tuple[Mailbox, Inbox], settings: Any, db: None
) -> None:
    """The signature scheme is the one tasktrail's own intake verifies."""
    _, inbox = receivers
    queue = f"nobody-{os.urandom(3).hex()}"
    alerts(settings, {"orphan": {"kind": "no_worker", "queues": [queue], "channels": ["hook"]}})
    assert evaluate().sent == 1
    [delivery] = inbox.to("/hook")
    payload = json.loads(delivery.body)
    assert payload["rule"] == "orphan" and payload["group"] == queue and payload["count"] == 0
    request = RequestFactory().post(
        "/in", delivery.body, content_type="application/json",
        headers={k: delivery.headers[k] for k in (SIGNATURE_HEADER, TIMESTAMP_HEADER)},
    )  # fmt: skip
    provider = HmacSha256(secrets=[SECRET], signature_header=SIGNATURE_HEADER,
                          timestamp_header=TIMESTAMP_HEADER)  # fmt: skip
    provider.verify(request, delivery.body)  # raises when the signature does not match
    assert provider.event_id(request, payload) == payload["id"]
    wrong = HmacSha256(secrets=["another"], signature_header=SIGNATURE_HEADER,
                       timestamp_header=TIMESTAMP_HEADER)  # fmt: skip
    with pytest.raises(Exception, match="does not match"):
        wrong.verify(request, delivery.body)


def test_a_failing_channel_is_retried_with_backoff_and_blocks_no_other(
    receivers: tuple[Mailbox, Inbox], settings: Any, db: None
) -> None:
    mailbox, inbox = receivers
    inbox.refuse["/hook"] = 1
    channels = {**CHANNELS, "down": {"type": "slack", "url": f"http://127.0.0.1:{CLOSED_PORT}/"}}
    queue = f"nobody-{os.urandom(3).hex()}"
    fresh_window(DAY)
    alerts(settings, {"orphan": {"kind": "no_worker", "queues": [queue], "window": DAY,
                                 "channels": [*ALL, "down"]}}, channels)  # fmt: skip
    now = current_time()
    report = evaluate(now)
    assert (report.claimed, report.sent, report.failed) == (4, 2, 2)
    assert counts(mailbox, inbox) == (1, 1, 0)
    rows = {row.channel: row for row in AlertDelivery.objects.all()}
    assert rows["hook"].state == "pending" and "HTTP 500" in rows["hook"].last_error
    assert "unreachable" in rows["down"].last_error and rows["down"].attempts == 1

    assert evaluate(now + timedelta(seconds=1)).sent == 0  # backing off (2 s)
    later = evaluate(now + timedelta(seconds=2.5))
    assert later.sent == 1 and counts(mailbox, inbox) == (1, 1, 1)
    assert AlertDelivery.objects.get(channel="hook").state == "sent"
    AlertDelivery.objects.filter(channel="down").update(attempts=MAX_ATTEMPTS - 1)
    assert evaluate(now + timedelta(seconds=30)).failed == 1
    assert AlertDelivery.objects.get(channel="down").state == "failed"  # gave up
    assert counts(mailbox, inbox) == (1, 1, 1)


def test_one_broken_rule_does_not_stop_the_others(
    receivers: tuple[Mailbox, Inbox], settings: Any, db: None
) -> None:
    mailbox, _ = receivers
    queue = f"nobody-{os.urandom(3).hex()}"
    alerts(settings, {
        "broken": {"kind": "failed", "tasks": ["x"], "channels": ["mail"]},
        "orphan": {"kind": "no_worker", "queues": [queue], "channels": ["mail"]},
    })  # fmt: skip
    from tasktrail.alerts import evaluation

    original = evaluation.FINDERS["failed"]
    evaluation.FINDERS["failed"] = lambda rule, now: 1 / 0  # type: ignore[assignment,return-value]
    try:
        report = evaluate()
    finally:
        evaluation.FINDERS["failed"] = original
    assert report.sent == 1 and report.errors == ["broken: division by zero"]
    assert len(mailbox.messages) == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_each_rule_fires_once_per_group_per_window_through_each_channel(
    worker: Any, receivers: tuple[Mailbox, Inbox], settings: Any
) -> None:
    mailbox, inbox = receivers
    fresh_window(DAY)
    nobody = f"{settings.TASKTRAIL['KEY_PREFIX']}-nobody-{os.urandom(3).hex()}"
    prefix = "tests.testapp.tasks."
    alerts(settings, {
        "failed": {"kind": "failed", "tasks": [f"{prefix}boom", f"{prefix}always_fails"],
                   "window": DAY, "channels": ALL},
        "retries": {"kind": "retries_exhausted", "tasks": [f"{prefix}always_*"], "window": DAY,
                    "channels": ALL},
        "slow": {"kind": "runtime", "tasks": [f"{prefix}sleepy"], "seconds": 1, "window": DAY,
                 "channels": ALL},
        "backlog": {"kind": "queue_age", "queues": [nobody], "seconds": 1, "window": DAY,
                    "channels": ALL},
        "orphan": {"kind": "no_worker", "queues": [nobody], "window": DAY, "channels": ALL},
        "rate": {"kind": "failure_rate", "tasks": [f"{prefix}boom"], "threshold": 0.5,
                 "min_runs": 2, "period": 600, "window": DAY, "channels": ALL},
    })  # fmt: skip
    runs = [enqueue(boom, "one"), enqueue(boom, "two"), enqueue(always_fails, "no"),
            enqueue(sleepy, 1.6), enqueue(add, 1, 1, queue=nobody)]  # fmt: skip
    ids = [run.id for run in runs]

    def settled() -> bool:
        found = dict(TaskRun.objects.filter(id__in=ids).values_list("id", "status"))
        return [found.get(i) for i in ids] == ["FAILED"] * 3 + ["SUCCESSFUL", "READY"]

    wait_for(settled, timeout=90)
    retried = TaskRun.objects.get(id=runs[2].id)
    assert retried.attempts == 3  # always_fails: one try and two retries
    wait_for(lambda: current_time() - TaskRun.objects.get(id=runs[4].id).enqueued_at
             > timedelta(seconds=1.2))  # fmt: skip

    now = current_time()
    first = evaluate(now)
    # failed: two groups (boom, always_fails); every other rule: one.
    assert first.sent == 7 * 3 and first.errors == []
    assert counts(mailbox, inbox) == (7, 7, 7)
    subjects = mailbox.subjects()
    for rule in ("failed", "retries", "slow", "backlog", "orphan", "rate"):
        assert any(s.startswith(f"[tasktrail] {rule}:") for s in subjects), (rule, subjects)
    # (\d+: a run another test left behind may reach the table late and be counted)
    assert re.search(r"failed: \d+ failed runs of tests.testapp.tasks.boom", " ".join(subjects))
    assert re.search(
        r"retries: \d+ runs? failed after retrying of tests.testapp.tasks.always_fails",
        " ".join(subjects),
    )
    assert "[tasktrail] slow: 1 attempt over its bound of tests.testapp.tasks.sleepy" in subjects
    assert all(json.loads(d.body)["text"] for d in inbox.to("/slack"))

    assert evaluate(current_time()).sent == 0  # the same window: nothing new
    enqueue(boom, "three")
    wait_for(lambda: TaskRun.objects.filter(task=f"{prefix}boom", status="FAILED").count() == 3)
    again = evaluate(current_time())
    assert (again.claimed, again.sent) == (0, 0) and counts(mailbox, inbox) == (7, 7, 7)
    throttled = AlertDelivery.objects.get(rule="failed", group=f"{prefix}boom", channel="mail")
    assert throttled.count >= 3  # counted, not sent

    # The next window: the conditions still hold, so their rules fire once more; the
    # event rules' events belong to the window that already had its message.
    nxt = evaluate(now + timedelta(seconds=DAY))
    assert nxt.sent == 2 * 3 and counts(mailbox, inbox) == (9, 9, 9)
    assert AlertDelivery.objects.filter(state="sent").count() == 9 * 3


@pytest.mark.django_db
def test_dashboard_lists_rules_channels_and_deliveries(
    receivers: tuple[Mailbox, Inbox], settings: Any, admin_client: Any, client: Any
) -> None:
    queue = f"nobody-{os.urandom(3).hex()}"
    alerts(settings, {"orphan": {"kind": "no_worker", "queues": [queue], "channels": ALL}})
    evaluate()
    page = admin_client.get("/ops/alerts/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "orphan" in html and f"no worker online consumes {queue}" in html
    assert "ops@example.com" in html and f"127.0.0.1:{HTTP_PORT}" in html
    assert SECRET not in html and "/slack" not in html  # a Slack URL's path is its token
    assert html.count('class="status status-successful">sent<') == 3
    assert client.get("/ops/alerts/").status_code == 302  # anonymous: to the login page
    alerts(settings, {"typo": {"kind": "failed", "channels": ["mial"]}})
    broken = admin_client.get("/ops/alerts/").content.decode()
    assert "tasktrail.E204" in broken and "unknown channel(s) mial" in broken
    settings.TASKTRAIL = {**settings.TASKTRAIL, "ALERTS": {}}
    assert "No alert rules are configured" in admin_client.get("/ops/alerts/").content.decode()


@pytest.mark.django_db
def test_migration_is_in_place() -> None:
    call_command("makemigrations", "tasktrail", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_a_claim_is_won_once_and_old_settled_claims_are_pruned(settings: Any) -> None:
    from django.db import IntegrityError, transaction

    from tasktrail.alerts.delivery import claim, prune
    from tasktrail.alerts.evaluation import Firing
    from tasktrail.alerts.rules import Rule

    rule = Rule(id="r", kind="failed", channels=("mail", "hook"), window=60)
    now = current_time()
    firing = Firing(group="g", window_start=window_start(now, 60), count=1, summary="1 of g")
    assert claim(rule, [firing], now) == 2
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert claim(rule, [firing], now) == 0  # a second evaluator, or the next round
    assert not [q for q in queries.captured_queries if "INSERT" in q["sql"]]  # read, not tried
    row = AlertDelivery.objects.get(channel="mail")
    with pytest.raises(IntegrityError), transaction.atomic():  # what two racers meet
        AlertDelivery.objects.create(**{f.name: getattr(row, f.name) for f in
                                        AlertDelivery._meta.concrete_fields if f.name != "id"})  # fmt: skip
    more = Firing(group="g", window_start=firing.window_start, count=4, summary="4 of g")
    assert claim(rule, [more], now) == 0
    assert set(AlertDelivery.objects.values_list("count", flat=True)) == {4}

    AlertDelivery.objects.filter(channel="mail").update(state="sent")
    assert prune(now + timedelta(days=29), (rule,)) == 0  # kept for 30 days
    assert prune(now + timedelta(days=31), (rule,)) == 1  # the pending one stays
    assert list(AlertDelivery.objects.values_list("channel", flat=True)) == ["hook"]


@pytest.mark.django_db
def test_rules_on_the_database_still_fire_while_redis_is_down(
    receivers: tuple[Mailbox, Inbox], settings: Any
) -> None:
    import uuid

    from django.utils import timezone

    mailbox, _ = receivers
    now = timezone.now()
    TaskRun.objects.create(id=str(uuid.uuid4()), task="reports.build", status="FAILED",
                           enqueued_at=now, finished_at=now)  # fmt: skip
    alerts(settings, {
        "failed": {"kind": "failed", "tasks": ["reports.*"], "channels": ["mail"]},
        "orphan": {"kind": "no_worker", "queues": ["q"], "channels": ["mail"]},
    })  # fmt: skip
    down = f"redis://127.0.0.1:{CLOSED_PORT}/0"
    settings.TASKTRAIL = {**settings.TASKTRAIL, "REDIS_URL": down}
    report = evaluate()
    assert report.sent == 1 and mailbox.subjects() == [
        "[tasktrail] failed: 1 failed run of reports.build"
    ]
    assert len(report.errors) == 1 and report.errors[0].startswith("orphan: ")


@pytest.mark.django_db
def test_a_sender_that_died_mid_delivery_is_replaced_after_its_lease(
    receivers: tuple[Mailbox, Inbox], settings: Any
) -> None:
    from tasktrail.alerts.delivery import LEASE, _take, claim
    from tasktrail.alerts.evaluation import find
    from tasktrail.alerts.validation import load

    mailbox, _ = receivers
    fresh_window(DAY)
    alerts(settings, {"orphan": {"kind": "no_worker", "queues": ["gone"], "window": DAY,
                                 "channels": ["mail"]}})  # fmt: skip
    [rule] = load().rules
    now = current_time()
    assert claim(rule, find(rule, now), now) == 1
    row = AlertDelivery.objects.get()
    assert _take(row, now)  # a sender takes it, then dies before sending or marking
    assert not _take(row, now)  # nobody else can take it meanwhile
    assert evaluate(now + timedelta(seconds=LEASE - 1)).sent == 0
    assert len(mailbox.messages) == 0
    assert evaluate(now + timedelta(seconds=LEASE + 1)).sent == 1  # the lease lapsed
    assert evaluate(now + timedelta(seconds=LEASE + 2)).sent == 0
    assert len(mailbox.messages) == 1
    row.refresh_from_db()
    assert (row.state, row.attempts) == ("sent", 2)
