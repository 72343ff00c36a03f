"""Pause and resume a queue from the queues page in headless Chromium: a run waits
while its queue is paused and runs once it is resumed. The screenshot is
docs/screenshots/dashboard-queue-controls.png (docs/dashboard.md)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tasktrail import enqueue, get_run, keys
from tasktrail.connection import get_redis
from tests.conftest import ROOT
from tests.ops_browser import ops_server as running_ops_server
from tests.ops_browser import staff_tab
from tests.queue_worker import APP, running_worker, still_waiting
from tests.testapp.tasks import add

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]
PORT = 27517  # in this feature's port range
SHOT = ROOT / "docs" / "screenshots" / "dashboard-queue-controls.png"


@pytest.fixture
def ops_server(tmp_path: Path) -> Iterator[str]:
    with running_ops_server(PORT, tmp_path / "uvicorn.log") as url:
        yield url


@pytest.fixture
def page(ops_server: str) -> Iterator[Any]:
    with staff_tab(ops_server) as tab:
        tab.goto(ops_server + "/ops/queues/")
        yield tab


def _stops_consuming(node: str, queue: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = APP.control.inspect([node], timeout=1.0).active_queues() or {}
        if node in answer and queue not in {q["name"] for q in answer[node]}:
            return True
    return False


def test_pause_and_resume_a_queue_from_the_page(page: Any, tmp_path: Path) -> None:
    queue = f"{settings.TASKTRAIL['KEY_PREFIX']}-qcb-{uuid.uuid4().hex[:6]}"
    node = f"qcb-{uuid.uuid4().hex[:6]}@queue-controls"
    try:
        with running_worker(queue, node, tmp_path / "worker.log"):
            enqueue(add, 0, 0, queue=queue).wait(timeout=30)  # it consumes; the page lists it
            page.reload()
            row = page.locator(f'tr[data-queue="{queue}"]')
            row.get_by_role("button", name="Pause").click()
            # The page reports who answered within the reply timeout; under load the worker
            # may answer late, so the test asks the worker itself whether it stopped consuming.
            page.get_by_text(re.compile(rf"^Queue {re.escape(queue)} paused: ")).wait_for()
            assert _stops_consuming(node, queue, 20.0), "the worker still consumes the queue"
            run = enqueue(add, 20, 22, queue=queue)
            assert still_waiting(run.id, 3.0), get_run(run.id).status
            page.reload()  # the waiting run in the depth column
            assert row.locator(".queue-state").inner_text() == "Paused"
            SHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOT), full_page=True)
            row.get_by_role("button", name="Resume").click()
            page.get_by_text(re.compile(rf"^Queue {re.escape(queue)} resumed: ")).wait_for()
            assert run.wait(timeout=30).result == 42
            assert row.locator(".queue-state").inner_text() == "Running"
    finally:
        get_redis().srem(keys.paused_queues(), queue)
