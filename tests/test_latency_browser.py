"""The latency screen in headless Chromium against a real uvicorn; screenshots go to
docs/screenshots/dashboard-latency*.png for docs/dashboard.md."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from tasktrail.models import TaskRun
from tests import test_dashboard_browser as dashboard_browser

# The dashboard browser tests' fixtures: one Chromium, one uvicorn, a superuser.
browser = dashboard_browser.browser
ops_server = dashboard_browser.ops_server
open_as = dashboard_browser.open_as
boss = dashboard_browser.boss
shot = dashboard_browser.shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# name -> (typical queue wait, typical runtime), seconds
TASKS = {
    "reports.tasks.build_sales_report": (0.8, 24.0),
    "documents.tasks.process_document": (0.3, 3.5),
    "crawl.tasks.fetch_page": (2.5, 0.6),
    "shop.tasks.send_receipt": (0.05, 0.12),
}


def seed(rng: random.Random) -> None:
    """A day of runs per task: log-normal waits and runtimes, a busier spell (longer
    waits) four hours ago, a few failures."""
    now = timezone.now()
    rows = []
    for task, (wait, runtime) in TASKS.items():
        for index in range(600):
            enqueued = now - timedelta(seconds=index * 86_000 / 600 + rng.random() * 60)
            hours_ago = (now - enqueued).total_seconds() / 3600
            busy = 6.0 if 3.5 < hours_ago < 5 else 1.0
            waited = wait * busy * math.exp(rng.gauss(0, 0.6))
            ran = runtime * math.exp(rng.gauss(0, 0.35))
            started = enqueued + timedelta(seconds=waited)
            rows.append(
                TaskRun(
                    id=str(uuid.uuid4()),
                    task=task,
                    status="FAILED" if rng.random() < 0.03 else "SUCCESSFUL",
                    queue="celery",
                    enqueued_at=enqueued,
                    started_at=started,
                    last_attempted_at=started,
                    finished_at=started + timedelta(seconds=ran),
                )
            )
    TaskRun.objects.bulk_create(rows, batch_size=500)


def test_latency_table_and_one_tasks_charts(open_as: Callable[..., Any], boss: User) -> None:
    seed(random.Random(13))
    page = open_as(boss, "/ops/")
    page.get_by_role("link", name="Latency", exact=True).click()
    page.get_by_role("heading", name="Latency", exact=True).wait_for()
    hour, day = page.locator("table.latency").all()
    # Each seeded task has its row in both tables (runs other tests left to the session's
    # worker may add rows of their own tasks meanwhile).
    for table in (hour, day):
        for task in TASKS:
            assert table.locator("tbody tr").filter(has_text=task).count() == 1, task
    receipt = day.locator("tbody tr").filter(has_text="shop.tasks.send_receipt")
    assert "ms" in receipt.inner_text()  # a fast task's figures are in milliseconds
    shot(page, "latency")

    day.get_by_role("link", name="reports.tasks.build_sales_report").click()
    page.get_by_role("heading", name="Latency of reports.tasks.build_sales_report").wait_for()
    charts = page.locator("figure.latency-chart svg[role=img]")
    assert charts.count() == 4
    # Each line has a point per hour that had runs (24 or 25 of them over a day).
    points = page.eval_on_selector_all(
        "figure.latency-chart polyline.p95",
        "lines => lines.map(l => l.getAttribute('points').split(' ').length)",
    )
    assert points[2] >= 24 and points[3] >= 24
    box = charts.nth(2).bounding_box()
    assert box is not None and box["width"] > 300
    shot(page, "latency-task")
