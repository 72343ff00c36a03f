"""The dashboard in headless Chromium (Playwright) against a real uvicorn and worker.

Screenshots go to docs/screenshots/dashboard-*.png for docs/dashboard.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

import tests.celery_app  # noqa: F401  (publishing needs the app)
from tasktrail import enqueue, get_run
from tasktrail.models import TaskRun
from tests.conftest import ROOT, _child_env, _free_port, _stop
from tests.testapp.tasks import add, always_fails, numbered_feed, sleepy

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


def _mounted_in_tests_urls() -> bool:
    from tests.urls import urlpatterns

    return any(str(p.pattern) == "ops/" for p in urlpatterns)


@pytest.fixture(scope="session")
def ops_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """The ``server`` fixture once tests/urls.py mounts /ops/; until then the same
    uvicorn serving tests.urls_ops."""
    if _mounted_in_tests_urls():
        yield request.getfixturevalue("server")
        return
    request.getfixturevalue("django_db_setup")
    port = _free_port()
    log = open(ROOT / "tests" / ".server-ops.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "tests.urls_ops:asgi",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=_child_env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)
        log.close()


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError("uvicorn exited; see tests/.server-ops.log") from None
            time.sleep(0.1)
    raise RuntimeError("uvicorn did not start")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls of the
    # test itself are still plain synchronous calls.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
            )
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def open_as(browser: Any, ops_server: str) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []

    def opener(user: User, path: str) -> Any:
        client = Client()
        client.force_login(user)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies(
            [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": ops_server}]
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(ops_server + path)
        return page

    yield opener
    for context in contexts:
        context.close()


@pytest.fixture
def boss() -> User:
    return User.objects.create_superuser(f"boss-{uuid.uuid4().hex[:6]}", "b@example.com", "pw")


def wait_for_rows(ids: list[str], timeout: float = 20.0, **fields: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if TaskRun.objects.filter(pk__in=ids, **fields).count() == len(ids):
            return
        time.sleep(0.2)
    raise AssertionError(f"runs {ids} not in the database with {fields}")


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"dashboard-{name}.png"), full_page=True)


@pytest.mark.usefixtures("worker")
def test_list_filter_and_overview(open_as: Callable[..., Any], boss: User) -> None:
    done = [enqueue(add, i, i).wait(30) for i in range(3)]
    failed = enqueue(always_fails, "for the overview").wait(30)
    wait_for_rows([r.id for r in [*done, failed]], status__in=["SUCCESSFUL", "FAILED"])
    page = open_as(boss, "/ops/")
    page.get_by_role("heading", name="Throughput and failure rate").wait_for()
    assert page.locator("svg[role=img]").count() == 2
    shot(page, "overview")
    page.get_by_role("link", name="Runs", exact=True).click()
    page.locator(f'tr[data-run-id="{failed.id}"]').wait_for()
    page.get_by_text("Live updates: on").wait_for()
    shot(page, "runs")
    page.get_by_label("Status").select_option("FAILED")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**status=FAILED**")
    assert page.locator(f'tr[data-run-id="{failed.id}"]').count() == 1
    assert all(page.locator(f'tr[data-run-id="{r.id}"]').count() == 0 for r in done)
    for screen in ("workers", "queues", "schedules"):
        page.get_by_role("link", name=screen.capitalize(), exact=True).click()
        page.get_by_role("heading", name=screen.capitalize(), exact=True).wait_for()
        shot(page, screen)
    assert "online" in page.goto(page.url.replace("schedules", "workers")).text()


@pytest.mark.usefixtures("worker")
def test_detail_shows_live_progress(open_as: Callable[..., Any], boss: User) -> None:
    run = enqueue(numbered_feed, 60, 0.1)
    page = open_as(boss, f"/ops/runs/{run.id}/")
    page.wait_for_function(
        "() => document.querySelector('[data-progress-bar]').value > 10"
        " && document.querySelectorAll('[data-feed] li').length > 5"
    )
    shot(page, "run-detail")
    value_then = page.eval_on_selector("[data-progress-bar]", "el => el.value")
    page.wait_for_function(
        f"() => document.querySelector('[data-progress-bar]').value > {value_then}"
    )
    page.locator("[data-status]", has_text="SUCCESSFUL").wait_for(timeout=30_000)
    assert get_run(run.id).status == "SUCCESSFUL"


@pytest.mark.usefixtures("worker")
def test_retry_from_a_failure(open_as: Callable[..., Any], boss: User) -> None:
    failed = enqueue(always_fails, f"retry me {uuid.uuid4().hex[:6]}").wait(30)
    assert failed.status == "FAILED"
    wait_for_rows([failed.id], status="FAILED")
    page = open_as(boss, "/ops/failures/?since=1h")
    shot(page, "failures")
    page.get_by_role("button", name=f"Retry run {failed.id}").click()
    page.get_by_text(f"Retrying {failed.id} as").wait_for()
    new_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    assert new_id != failed.id
    assert get_run(new_id).retry_of == failed.id
    page.get_by_role("link", name=failed.id).wait_for()  # "Retry of" links back


@pytest.mark.usefixtures("worker")
def test_bulk_cancel_by_filter(open_as: Callable[..., Any], boss: User) -> None:
    marker = str(uuid.uuid4().int % 10**9)  # digits float() keeps as they are
    waiting = [enqueue(sleepy, float(marker), countdown=3600) for _ in range(3)]
    other = enqueue(sleepy, 0.5, countdown=3600)
    wait_for_rows([r.id for r in [*waiting, other]])
    page = open_as(boss, f"/ops/runs/?search={marker}&status=READY")
    assert page.locator("tr[data-run-id]").count() == 3
    page.get_by_role("link", name="Cancel all matching…").click()
    page.get_by_role("heading", name="Cancel 3 runs?").wait_for()
    shot(page, "bulk-confirm")
    page.get_by_role("button", name="Yes, cancel 3 runs").click()
    page.get_by_text("Cancelled 3 runs").wait_for()
    assert {get_run(r.id).status for r in waiting} == {"CANCELLED"}
    assert get_run(other.id).status == "READY"
    from tasktrail.actions import cancel

    cancel(other.id)


def test_non_staff_is_refused(open_as: Callable[..., Any]) -> None:
    someone = User.objects.create_user(f"someone-{uuid.uuid4().hex[:6]}")
    page = open_as(someone, "/ops/runs/")
    page.get_by_role("heading", name="Not allowed").wait_for()
    assert "staff only" in page.content()
    shot(page, "refused")
