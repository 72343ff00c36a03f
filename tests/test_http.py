"""The JSON API in-process: bad input, the access rules, CSRF on actions, the 202 helper."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import quote, unquote

import pytest
from django.contrib.auth.models import User
from django.test import Client, RequestFactory
from django.urls import resolve

from tasktrail import Status, accepted, get_run
from tasktrail.access import make_token
from tasktrail.flusher import flush_all
from tasktrail.http import run_urls
from tasktrail.models import AuditEntry, TaskRun
from tasktrail.transitions import apply, stamp
from tests.conftest import use_own_key_prefix

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner() -> User:
    return User.objects.create_user("owner", password="pw")


@pytest.fixture
def other() -> User:
    return User.objects.create_user("other", password="pw")


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("staff", password="pw", is_staff=True)


def make_run(
    owner: User | None = None,
    status: str = Status.READY,
    task: str = "tests.testapp.tasks.add",
    run_id: str | None = None,
) -> str:
    run_id = run_id or str(uuid.uuid4())
    create = {
        "id": run_id,
        "task": task,
        "enqueued_at": stamp(time.time()),
        "args": "[1, 2]",
        "kwargs": "{}",
    }
    if owner is not None:
        create["owner"] = str(owner.pk)
    apply(run_id, "publish", status=Status.READY, create=create)
    if status in (Status.FAILED, Status.SUCCESSFUL):
        apply(run_id, "start", attempt=1, status=Status.RUNNING)
        apply(
            run_id, "finish", attempt=1, status=status, fields={"finished_at": stamp(time.time())}
        )
    return run_id


def as_user(user: User | None, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    if user is not None:
        client.force_login(user)
    return client


def test_unknown_id_is_a_json_404() -> None:
    response = Client().get(f"/tasks/{uuid.uuid4()}/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": "No run with this id."}


@pytest.mark.parametrize(
    "path",
    [f"/tasks/{'x' * 256}/", "/tasks/a%0Ab/events/", "/tasks/%00/", "/tasks/~not*base64/"],
)
def test_malformed_id_is_a_json_400(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 400
    assert "Malformed run id" in response.json()["error"]


@pytest.mark.parametrize(
    "run_id", ["order-1", "report 2026/12", "~tilde", "..", "ünïcode:42", "a?b#c%d"]
)
def test_any_celery_task_id_reaches_its_run(owner: User, run_id: str, own_key_prefix: str) -> None:
    """Celery takes any string as a task id: each one round-trips through the URLs."""
    make_run(owner, run_id=run_id)
    urls = run_urls(run_id)
    response = as_user(owner).get(urls["status_url"])
    assert response.status_code == 200, response.content
    assert response.json()["id"] == run_id
    assert response.json()["events_url"].endswith(urls["events_url"])
    match = resolve(unquote(urls["events_url"]))
    assert (match.url_name, match.kwargs) == ("run-events", {"run_id": run_id})


def test_wrong_method_is_a_json_405(owner: User) -> None:
    run_id = make_run(owner)
    response = as_user(owner).post(f"/tasks/{run_id}/")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert "not allowed" in response.json()["error"]
    assert as_user(owner).get(f"/tasks/{run_id}/cancel/").status_code == 405


def test_unknown_endpoint_under_the_prefix_is_a_json_404() -> None:
    response = Client().get("/tasks/a/b/c/")
    assert response.status_code == 404
    assert response.json()["error"] == "No such endpoint."


@pytest.mark.parametrize("value", ["abc", "1-x", "-1", "1" * 30 + "-0", "1-2-3"])
def test_bad_last_event_id_is_a_json_400(owner: User, value: str) -> None:
    run_id = make_run(owner)
    client = as_user(owner)
    assert client.get(f"/tasks/{run_id}/events/", HTTP_LAST_EVENT_ID=value).status_code == 400
    response = client.get(f"/tasks/{run_id}/events/", {"last_event_id": value})
    assert response.status_code == 400
    assert "Last-Event-ID" in response.json()["error"]


def test_status_json_has_the_documented_fields(owner: User) -> None:
    run_id = make_run(owner)
    body = as_user(owner).get(f"/tasks/{run_id}/").json()
    for field in (
        "id",
        "task",
        "status",
        "progress",
        "attempts",
        "enqueued_at",
        "started_at",
        "finished_at",
        "events_url",
        "status_url",
    ):
        assert field in body, field
    assert body["status"] == "READY"
    assert body["progress"] == {"percent": None, "current": None, "total": None, "message": ""}
    assert body["events_url"].endswith(f"/tasks/{run_id}/events/")


ENDPOINTS = [("get", ""), ("get", "events/"), ("post", "cancel/"), ("post", "retry/")]


@pytest.mark.parametrize(("method", "suffix"), ENDPOINTS)
def test_other_users_anonymous_and_bad_tokens_get_404(
    owner: User, other: User, method: str, suffix: str
) -> None:
    run_id = make_run(owner)
    other_run = make_run(other)
    url = f"/tasks/{run_id}/{suffix}"
    expired = make_token(run_id, max_age=1)
    wrong = make_token(other_run)
    time.sleep(2.1)
    cases = [
        as_user(other).generic(method.upper(), url),
        as_user(None).generic(method.upper(), url),
        as_user(None).generic(method.upper(), f"{url}?token={expired}"),
        as_user(None).generic(method.upper(), f"{url}?token={wrong}"),
        as_user(None).generic(method.upper(), f"{url}?token=garbage"),
    ]
    for response in cases:
        assert response.status_code == 404, (url, response.status_code)
        assert response.json() == {"error": "No run with this id."}
    # And a missing id looks exactly the same.
    missing = as_user(other).generic(method.upper(), f"/tasks/{uuid.uuid4()}/{suffix}")
    assert (missing.status_code, missing.json()) == (404, {"error": "No run with this id."})


def test_owner_staff_and_token_holders_can_read(owner: User, staff: User) -> None:
    run_id = make_run(owner)
    assert as_user(owner).get(f"/tasks/{run_id}/").status_code == 200
    assert as_user(staff).get(f"/tasks/{run_id}/").status_code == 200
    token = make_token(run_id)
    response = as_user(None).get(f"/tasks/{run_id}/", {"token": token})
    assert response.status_code == 200
    assert f"token={quote(token)}" in response.json()["events_url"]  # encoded, never raw


def test_a_token_in_the_query_is_never_copied_raw_into_the_urls(owner: User) -> None:
    """Parameter injection: the caller's ?token= goes into status_url/events_url encoded."""
    run_id = make_run(owner)
    token = make_token(run_id)
    body = as_user(owner).get(f"/tasks/{run_id}/", {"token": f"{token}&admin=1"}).json()
    assert "&admin=1" not in body["status_url"]
    assert "%26admin%3D1" in body["status_url"]


def test_a_token_reads_but_does_not_act(owner: User) -> None:
    run_id = make_run(owner)
    response = as_user(None).post(f"/tasks/{run_id}/cancel/?token={make_token(run_id)}")
    assert response.status_code == 403
    assert get_run(run_id).status == Status.READY


def test_cancel_needs_csrf_and_is_audited(owner: User, worker: object) -> None:
    run_id = make_run(owner)
    client = as_user(owner, enforce_csrf_checks=True)
    assert client.post(f"/tasks/{run_id}/cancel/").status_code == 403  # no CSRF token
    assert get_run(run_id).status == Status.READY
    client.get(f"/tasks/{run_id}/")  # any page; take the CSRF cookie Django sets for the form
    token = _csrf(client)
    response = client.post(
        f"/tasks/{run_id}/cancel/", HTTP_X_CSRFTOKEN=token, REMOTE_ADDR="10.1.2.3"
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "CANCELLED"
    entry = AuditEntry.objects.get(run_id=run_id)
    assert (entry.action, entry.actor_id, entry.address) == ("cancel", owner.pk, "10.1.2.3")
    again = client.post(f"/tasks/{run_id}/cancel/", HTTP_X_CSRFTOKEN=token)
    assert again.status_code == 409


def _csrf(client: Client) -> str:
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    secret = _get_new_csrf_string()
    client.cookies["csrftoken"] = secret
    return str(_mask_cipher_secret(secret))


def test_retry_only_after_failure(owner: User, staff: User, worker: object) -> None:
    waiting = make_run(owner)
    assert as_user(owner).post(f"/tasks/{waiting}/retry/").status_code == 409
    failed = make_run(owner, status=Status.FAILED)
    response = as_user(staff).post(f"/tasks/{failed}/retry/")
    assert response.status_code == 202
    body = response.json()
    assert body["retry_of"] == failed
    new = get_run(body["id"])
    assert (new.retry_of, new.owner_id, new.args) == (failed, str(owner.pk), [1, 2])
    assert new.wait(timeout=20).result == 3
    assert AuditEntry.objects.filter(run_id=failed, action="retry").count() == 1


def test_list_shows_only_own_runs_with_filters_and_cursor(
    owner: User, other: User, staff: User, settings: Any
) -> None:
    # Earlier tests' runs may carry a reused user pk: flush them and start clean.
    flush_all()
    TaskRun.objects.all().delete()
    use_own_key_prefix(settings)  # this test's runs reach the table by its own flush only
    mine = [make_run(owner) for _ in range(5)]
    failed = make_run(owner, status=Status.FAILED)
    theirs = make_run(other)
    flush_all()
    client = as_user(owner)
    first = client.get("/tasks/", {"limit": 4}).json()
    assert len(first["results"]) == 4
    second = client.get(first["next"]).json()
    seen = [r["id"] for r in first["results"] + second["results"]]
    assert sorted(seen) == sorted([*mine, failed])
    assert len(set(seen)) == len(seen)
    assert second["next"] is None
    only_failed = client.get("/tasks/", {"status": "FAILED"}).json()["results"]
    assert [r["id"] for r in only_failed] == [failed]
    assert theirs in [
        r["id"] for r in as_user(staff).get("/tasks/", {"limit": 200}).json()["results"]
    ]
    assert as_user(None).get("/tasks/").json() == {"results": [], "next": None}


@pytest.mark.parametrize(
    "query",
    [
        {"cursor": "!!!"},
        {"cursor": "eyJ4Ijox"},
        {"status": "DONE"},
        {"limit": "0"},
        {"limit": "x"},
        {"limit": "500"},
    ],
)
def test_list_bad_input_is_a_json_400(owner: User, query: dict[str, str]) -> None:
    response = as_user(owner).get("/tasks/", query)
    assert response.status_code == 400
    assert response.json()["error"]


def test_accepted_returns_202_with_location_and_urls(owner: User) -> None:
    run = get_run(make_run(owner))
    request = RequestFactory().post("/reports/")
    response = accepted(run, request, with_token=True, report="sales")
    assert response.status_code == 202
    body = __import__("json").loads(response.content)
    assert body["id"] == run.id and body["status"] == "READY" and body["report"] == "sales"
    assert response["Location"] == body["status_url"]
    assert body["status_url"].startswith("http://testserver/tasks/")
    assert "?token=" in body["events_url"]


@pytest.mark.django_db
def test_the_api_answers_under_atomic_requests() -> None:
    # Django refuses ATOMIC_REQUESTS around async views with an HTML 500; the API's
    # views opt out (each write is its own transaction) so projects that set it work.
    from django.db import connection

    user = User.objects.create_user("atomic", password="pw")
    client = Client()
    client.force_login(user)
    saved = connection.settings_dict["ATOMIC_REQUESTS"]
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    try:
        listed = client.get("/tasks/")
        missing = client.get("/tasks/no-such-run/")
    finally:
        connection.settings_dict["ATOMIC_REQUESTS"] = saved
    assert listed.status_code == 200, listed.content[:300]
    assert missing.status_code == 404 and missing["Content-Type"] == "application/json"
