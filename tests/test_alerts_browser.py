"""The alerts screen in headless Chromium against a real uvicorn: the rules and channels
of the configuration, and the messages a real evaluation sent to a real SMTP server and
a real HTTP receiver. The screenshot is docs/screenshots/dashboard-alerts.png
(docs/alerts.md)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tasktrail.alerts.delivery import evaluate
from tasktrail.alerts.models import AlertDelivery
from tasktrail.models import TaskRun
from tests.alerts_support import http_receiver, mail_to_smtp_server, smtp_server, wait_for
from tests.conftest import ROOT
from tests.ops_browser import ops_server, staff_tab

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PORT, SMTP_PORT, HTTP_PORT = 27660, 27661, 27662  # this feature's port range
SHOT = ROOT / "docs" / "screenshots" / "dashboard-alerts.png"
BOOM = "tests.testapp.tasks.boom"


def _configuration(queue: str) -> dict[str, Any]:
    return {
        "CHANNELS": {
            "ops": {"type": "email", "to": ["ops@example.com"], "from": "alerts@example.com"},
            "pager": {
                "type": "webhook",
                "url": f"http://127.0.0.1:{HTTP_PORT}/pager",
                "secret": "alerts-page-secret",
            },
        },
        "RULES": {
            "boom-failed": {"kind": "failed", "tasks": [BOOM], "channels": ["ops", "pager"]},
            "no-worker": {"kind": "no_worker", "queues": [queue], "channels": ["pager"]},
            "slow-reports": {
                "kind": "runtime",
                "tasks": ["reports.*"],
                "seconds": 900,
                "channels": ["ops"],
            },
        },
        "INTERVAL": 30,
    }


def test_the_alerts_screen_shows_rules_channels_and_what_was_sent(
    settings: Any, tmp_path: Path
) -> None:
    queue = f"nobody-{uuid.uuid4().hex[:6]}"
    configuration = _configuration(queue)
    settings.TASKTRAIL = {**settings.TASKTRAIL, "ALERTS": configuration}
    mail_to_smtp_server(settings, SMTP_PORT)
    now = timezone.now()
    for n in range(3):
        TaskRun.objects.create(
            id=str(uuid.uuid4()), task=BOOM, status="FAILED", queue="celery",
            enqueued_at=now, started_at=now, finished_at=now,
            error_type="RuntimeError", error_message=f"boom {n}",
        )  # fmt: skip
    with smtp_server(SMTP_PORT) as mailbox, http_receiver(HTTP_PORT) as inbox:
        evaluate()
        wait_for(lambda: len(mailbox.messages) >= 1 and len(inbox.to("/pager")) >= 2)
        sent = AlertDelivery.objects.filter(state="sent").count()
        assert sent == 3  # boom-failed by mail and webhook, no-worker by webhook
        env = {
            "DJANGO_SETTINGS_MODULE": "tests.alerts_page_settings",
            "TASKTRAIL_TEST_ALERTS": json.dumps(configuration),
        }
        with ops_server(PORT, tmp_path / "uvicorn.log", **env) as url, staff_tab(url) as tab:
            tab.goto(f"{url}/ops/alerts/")
            tab.get_by_role("heading", name="Alerts", exact=True).wait_for()
            text = tab.locator("main").inner_text()
            for rule in ("boom-failed", "no-worker", "slow-reports"):
                assert rule in text
            assert "ops@example.com" in text and f"127.0.0.1:{HTTP_PORT}" in text
            assert "alerts-page-secret" not in tab.content()  # secrets never shown
            assert tab.locator("text=sent").count() >= sent
            SHOT.parent.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(SHOT), full_page=True)
