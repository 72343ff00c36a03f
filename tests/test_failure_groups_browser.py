"""Failure groups in headless Chromium: failures from a real worker are grouped on the
groups page; "Retry all in this group" retries them and the new runs show in the group
once they fail again. The screenshot is docs/screenshots/dashboard-failure-groups.png
(docs/dashboard.md)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasktrail import enqueue
from tasktrail.flusher import flush_all
from tasktrail.models import AuditEntry, TaskRun
from tests.conftest import ROOT
from tests.ops_browser import ops_server as running_ops_server
from tests.ops_browser import staff_tab
from tests.testapp.tasks import reject_order, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]
PORT = 27600  # in this feature's port range
SHOT = ROOT / "docs" / "screenshots" / "dashboard-failure-groups.png"


@pytest.fixture
def ops_server(tmp_path: Path) -> Iterator[str]:
    with running_ops_server(PORT, tmp_path / "uvicorn.log") as url:
        yield url


@pytest.fixture
def page(ops_server: str) -> Iterator[Any]:
    with staff_tab(ops_server) as tab:
        yield tab


def _failed_rows(run_ids: list[str], seconds: float = 60.0) -> dict[str, TaskRun]:
    """The runs' FAILED rows, flushed from Redis (all of them, or what came in time)."""
    deadline = time.monotonic() + seconds
    while True:
        flush_all()
        rows = {r.id: r for r in TaskRun.objects.filter(pk__in=run_ids, status="FAILED")}
        if len(rows) == len(run_ids) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_retry_all_in_a_group_from_the_page(worker: Any, page: Any, ops_server: str) -> None:
    marker = uuid.uuid4().hex[:6]
    orders = [enqueue(reject_order, f"{marker}-{n}") for n in range(3)]
    other = enqueue(sign_in, "nobody", "secret")
    for handle in (*orders, other):
        assert handle.wait(timeout=60).status == "FAILED"
    rows = _failed_rows([h.id for h in (*orders, other)])
    fingerprint = rows[orders[0].id].fingerprint
    assert {rows[h.id].fingerprint for h in orders} == {fingerprint}

    page.goto(ops_server + "/ops/failures/")
    page.get_by_role("link", name="Grouped by cause →").click()
    group_row = page.locator(f'tr[data-fingerprint="{fingerprint}"]')
    assert group_row.locator("[data-count]").inner_text() == "3"
    assert "tests/testapp/tasks.py:" in group_row.inner_text()
    assert page.locator(f'tr[data-fingerprint="{rows[other.id].fingerprint}"]').count() == 1
    group_row.get_by_role("link", name="builtins.ValueError").click()
    page.get_by_role("button", name="Retry all in this group").click()
    page.get_by_text(re.compile(r"^Retried 3 runs of this group")).wait_for()

    new_ids = list(
        AuditEntry.objects.filter(run_id__in=[h.id for h in orders], action="retry").values_list(
            "detail__new_run", flat=True
        )
    )
    assert len(new_ids) == 3
    # The retries fail the same way, on the same line: they join the group.
    again = _failed_rows([str(i) for i in new_ids])
    assert {r.fingerprint for r in again.values()} == {fingerprint}, again
    page.reload()
    for new_id in new_ids:
        page.locator(f'tr[data-run-id="{new_id}"]').wait_for()
    page.goto(ops_server + "/ops/failures/groups/")
    assert group_row.locator("[data-count]").inner_text() == "6"
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOT), full_page=True)
