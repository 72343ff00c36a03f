"""The workflow timeline in headless Chromium against a real uvicorn and a real prefork
worker (2 processes): a chord of 100 short tasks fills in live, without a reload,
and its callback's bar appears. The screenshot is docs/screenshots/dashboard-timeline.png
(docs/dashboard.md)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import chord
from django.utils import timezone

from tasktrail import get_run
from tasktrail.models import TaskRun
from tests.conftest import ROOT
from tests.helpers import eventually
from tests.ops_browser import ops_server as running_ops_server
from tests.ops_browser import staff_tab
from tests.testapp.tasks import sleepy, tally

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("worker"),
]
PORT = 27640  # in this feature's port range
SHOT = ROOT / "docs" / "screenshots" / "dashboard-timeline.png"
MEMBERS = 100


@pytest.fixture
def ops_server(tmp_path: Path) -> Iterator[str]:
    with running_ops_server(PORT, tmp_path / "uvicorn.log") as url:
        yield url


@pytest.fixture
def tab(ops_server: str) -> Iterator[tuple[Any, str]]:
    with staff_tab(ops_server, height=900, timeout_ms=30_000) as page:
        yield page, ops_server


def _statuses(page: Any) -> list[str]:
    statuses: list[str] = page.eval_on_selector_all(
        "[data-bar-id]", "bars => bars.map(b => b.dataset.status)"
    )
    return statuses


def test_a_chord_fills_in_live(tab: tuple[Any, str]) -> None:
    page, base = tab
    # Two runs hold both worker processes for a moment, so the page opens on a waiting
    # chord; then 50 to 100 ms each, about four seconds for all of them.
    blockers = [sleepy.delay(3.0) for _ in range(2)]
    for blocker in blockers:
        eventually(lambda b=blocker: get_run(b.id).status == "RUNNING", timeout=30)
    header = [sleepy.s(0.05 + (i % 6) * 0.01) for i in range(MEMBERS)]
    result = chord(header, tally.s()).apply_async()
    first = result.parent.results[0].id
    page.goto(f"{base}/ops/runs/{first}/timeline/")
    page.evaluate("() => { window.sameDocument = true; }")  # gone if the page reloads

    # Early on, members wait or run; the header is all there (from Redis until saved).
    page.wait_for_function(f"() => document.querySelectorAll('[data-bar-id]').length >= {MEMBERS}")
    early = _statuses(page)
    assert any(s in ("READY", "RUNNING") for s in early), early
    # Part-way: some finished, some not: the screenshot for the docs.
    page.wait_for_function(
        "() => { const s = [...document.querySelectorAll('[data-bar-id]')].map(b => b.dataset.status);"
        " const done = s.filter(x => x === 'SUCCESSFUL').length; return done >= 20 && done < s.length; }"
    )
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOT), full_page=True)

    assert result.get(timeout=60) == MEMBERS
    callback = page.locator(f'[data-bar-id="{result.id}"]')
    callback.wait_for(state="attached")
    page.wait_for_function(
        "n => { const s = [...document.querySelectorAll('[data-bar-id]')].map(b => b.dataset.status);"
        " return s.length === n && s.every(x => x === 'SUCCESSFUL'); }",
        arg=MEMBERS + 1,
    )
    assert page.evaluate("() => window.sameDocument === true"), "the page reloaded"
    assert callback.get_attribute("data-status") == "SUCCESSFUL"
    assert (
        f"{MEMBERS + 1} runs: {MEMBERS + 1} successful"
        in page.locator("[data-gantt-summary]").inner_text()
    )
    # The callback is last by start; each bar links to its run and says what it is.
    assert page.eval_on_selector_all("[data-bar-id]", "b => b[b.length - 1].dataset.barId") == (
        result.id
    )
    title = callback.locator("title").text_content() or ""
    assert "tests.testapp.tasks.tally" in title and result.id in title and "SUCCESSFUL" in title
    page.get_by_text("All finished: live updates stopped").wait_for(timeout=15_000)
    callback.click()
    page.wait_for_url(f"**/ops/runs/{result.id}/")
    page.get_by_role("link", name="Workflow timeline").click()  # and back from the run page
    page.locator(f'[data-bar-id="{first}"]').wait_for(state="attached")
    assert all(b.get(timeout=10) == 3.0 for b in blockers)


def test_a_family_of_a_thousand_stays_readable(tab: tuple[Any, str]) -> None:
    """A finished chord of 1,000 chunks over a minute on eight worker processes, a few
    failed or retried, and its callback: every bar drawn, compact, under one axis."""
    page, base = tab
    group, rows, now = str(uuid.uuid4()), [], timezone.now()
    start = now - timedelta(minutes=2)
    for index in range(1000):
        enqueued = start + timedelta(milliseconds=index * 2)
        began = start + timedelta(seconds=index // 8 * 0.45 + 0.2)
        run_id = str(uuid.uuid4())
        rows.append(
            TaskRun(
                id=run_id, task="reports.tasks.render_chunk", root_id=run_id, group_id=group,
                status="FAILED" if index % 97 == 5 else "SUCCESSFUL",
                attempts=2 if index % 41 == 3 else 1, enqueued_at=enqueued, started_at=began,
                last_attempted_at=began + timedelta(seconds=0.2 if index % 41 == 3 else 0),
                finished_at=began + timedelta(seconds=0.3 + (index % 5) * 0.03),
            )
        )  # fmt: skip
    last = rows[-1]
    rows.append(
        TaskRun(
            id=str(uuid.uuid4()), task="reports.tasks.merge_report", root_id=last.id,
            parent_id=last.id, group_id=group, status="SUCCESSFUL", attempts=1,
            enqueued_at=last.finished_at, started_at=last.finished_at + timedelta(seconds=0.1),
            last_attempted_at=last.finished_at + timedelta(seconds=0.1),
            finished_at=last.finished_at + timedelta(seconds=4),
        )
    )  # fmt: skip
    TaskRun.objects.bulk_create(rows, batch_size=500)
    page.goto(f"{base}/ops/runs/{rows[0].id}/timeline/")
    page.get_by_text("1001 runs: 990 successful, 11 failed").wait_for()
    assert page.locator("[data-bar-id]").count() == 1001
    assert page.locator("[data-bar-id] rect.gantt-retry").count() == 25  # index % 41 == 3
    assert page.locator("[data-bar-id][data-status=FAILED] rect.status-bar-failed").count() == 11
    assert page.eval_on_selector_all("[data-bar-id]", "b => b[b.length - 1].dataset.barId") == (
        rows[-1].id
    )
    height = page.eval_on_selector(
        "[data-gantt-body] svg", "svg => svg.getBoundingClientRect().height"
    )
    assert 3000 <= height <= 3100  # 3 px a row
    page.get_by_text("All finished: live updates stopped").wait_for(timeout=15_000)
    page.screenshot(path=str(SHOT.with_name("dashboard-timeline-1000.png")), full_page=True)
