"""Replay with changes from a failed run's page in headless Chromium, against a real
uvicorn and a real worker: an invalid edit is refused with the text kept, a fixed one
runs as a new run that succeeds. The screenshot is docs/screenshots/dashboard-replay.png
(docs/dashboard.md)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult

import tests.celery_app
from tasktrail import enqueue, get_run
from tasktrail.models import AuditEntry
from tests.conftest import ROOT
from tests.ops_browser import ops_server as running_ops_server
from tests.ops_browser import staff_tab
from tests.testapp.tasks import add

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]
PORT = 27620  # in this feature's port range
SHOT = ROOT / "docs" / "screenshots" / "dashboard-replay.png"


@pytest.fixture
def ops_server(tmp_path: Path) -> Iterator[str]:
    with running_ops_server(PORT, tmp_path / "uvicorn.log") as url:
        yield url


@pytest.fixture
def page(ops_server: str) -> Iterator[Any]:
    with staff_tab(ops_server, height=900) as tab:
        tab.base_url = ops_server
        yield tab


def _submit(page: Any) -> Any:
    with page.expect_response(lambda r: r.url.endswith("/replay/")) as answer:
        page.get_by_role("button", name="Replay with changes").click()
    return answer.value


@pytest.mark.usefixtures("worker")
def test_replay_a_failed_run_with_an_edited_argument(page: Any) -> None:
    failed = enqueue(add, "one", 1).wait(timeout=30)  # str + int: TypeError
    assert failed.status == "FAILED"
    page.goto(f"{page.base_url}/ops/runs/{failed.id}/")
    form = page.get_by_role("region", name="Replay with changes")
    positional = form.get_by_label("Positional arguments (a JSON list)")
    assert positional.input_value().split() == ["[", '"one",', "1", "]"]

    # An edit that does not fit add(x, y): refused, shown again with the text as typed.
    positional.fill("[20, 22, 1]")
    assert _submit(page).status == 400
    alert = page.get_by_role("alert")
    assert "too many positional arguments" in alert.inner_text()
    assert page.get_by_label("Positional arguments (a JSON list)").input_value() == "[20, 22, 1]"
    assert not AuditEntry.objects.filter(run_id=failed.id, action="replay").exists()

    page.get_by_label("Positional arguments (a JSON list)").fill("[20, 22]")
    page.get_by_role("alert").evaluate("node => node.remove()")  # the screenshot: the edit
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOT), full_page=True)
    answer = _submit(page)
    assert answer.status == 302
    page.wait_for_url(re.compile(r"/ops/runs/[0-9a-f-]{36}/$"))
    new_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    assert new_id != failed.id
    page.get_by_text(f"Replayed {failed.id} with changes as {new_id}.").wait_for()
    page.locator("h1 + p [data-status]").filter(has_text="SUCCESSFUL").wait_for()

    new = get_run(new_id)
    assert (new.status, new.result, new.args, new.retry_of) == (
        "SUCCESSFUL",
        42,
        [20, 22],
        failed.id,
    )
    assert AsyncResult(new_id, app=tests.celery_app.app).get(timeout=10) == 42
    page.get_by_role("link", name=failed.id).wait_for()  # "Retry of" links back
