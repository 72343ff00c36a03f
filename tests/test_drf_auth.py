"""The run endpoints authenticate the way a DRF project does, over a real uvicorn:
Token, Basic and JWT clients read and cancel their own runs without CSRF; another
user's credentials get 404; a session without the CSRF token gets a JSON 403."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from rest_framework.authtoken.models import Token
from rest_framework_simplejwt.tokens import RefreshToken

from tasktrail import Status, get_run
from tasktrail.flusher import flush_all
from tasktrail.transitions import apply, stamp
from tests.sse_client import Event, read
from tests.test_http import _csrf, as_user, make_run

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]


def _credentials(kind: str, user: User) -> dict[str, str]:
    if kind == "token":
        return {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    if kind == "basic":
        raw = base64.b64encode(f"{user.username}:pw".encode()).decode()
        return {"Authorization": f"Basic {raw}"}
    return {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"}


def _run_of(owner: User) -> str:
    run_id = str(uuid.uuid4())
    create = {"id": run_id, "task": "tests.testapp.tasks.add", "owner": str(owner.pk),
              "enqueued_at": stamp(time.time())}  # fmt: skip
    apply(run_id, "publish", status=Status.READY, create=create,
          events=[("state", {"run": run_id})])  # fmt: skip
    return run_id


def _first_event(client: httpx.Client, path: str) -> Any:
    with client.stream("GET", path) as response:
        assert response.status_code == 200
        for item in read(response):
            if isinstance(item, Event):
                return item.data
    return None


@pytest.mark.parametrize("kind", ["token", "basic", "jwt"])
def test_a_credential_reads_and_cancels_its_own_run_without_csrf(server: str, kind: str) -> None:
    owner = User.objects.create_user(f"owner-{kind}", password="pw")
    other = User.objects.create_user(f"other-{kind}", password="pw")
    run_id = _run_of(owner)
    with httpx.Client(base_url=server, headers=_credentials(kind, owner), timeout=10) as client:
        status = client.get(f"/tasks/{run_id}/")
        assert status.status_code == 200, status.text
        assert status.json()["id"] == run_id
        assert _first_event(client, f"/tasks/{run_id}/events/")["status"] == "READY"
        flush_all()  # the list reads the database
        listed = client.get("/tasks/").json()["results"]
        assert run_id in [r["id"] for r in listed]
        cancelled = client.post(f"/tasks/{run_id}/cancel/")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "CANCELLED"
    with httpx.Client(base_url=server, headers=_credentials(kind, other), timeout=10) as client:
        assert client.get(f"/tasks/{run_id}/").status_code == 404
        assert client.post(f"/tasks/{run_id}/retry/").status_code == 404
        assert run_id not in [r["id"] for r in client.get("/tasks/").json()["results"]]


def test_a_bad_credential_is_a_json_401_naming_the_scheme(server: str) -> None:
    run_id = _run_of(User.objects.create_user("owner-bad", password="pw"))
    with httpx.Client(base_url=server, timeout=10) as client:
        answer = client.get(f"/tasks/{run_id}/", headers={"Authorization": "Token nope"})
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/json"
    assert "token" in answer.json()["error"].lower()


def test_a_session_without_the_csrf_token_gets_a_json_403(server: str) -> None:
    owner = User.objects.create_user("owner-session", password="pw")
    run_id = _run_of(owner)
    login = Client()
    login.force_login(owner)
    cookies = {"sessionid": login.cookies["sessionid"].value}
    with httpx.Client(base_url=server, cookies=cookies, timeout=10) as client:
        assert client.get(f"/tasks/{run_id}/").status_code == 200  # reading needs none
        refused = client.post(f"/tasks/{run_id}/cancel/")
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/json"
        assert "CSRF" in refused.json()["error"]
    assert get_run(run_id).status == Status.READY


@pytest.mark.django_db
def test_without_drf_the_session_and_djangos_csrf_check_decide() -> None:
    """``AUTHENTICATION_CLASSES = []``: Django's session only (no DRF involved)."""
    from django.conf import settings

    owner = User.objects.create_user("owner-plain", password="pw")
    with override_settings(TASKTRAIL={**settings.TASKTRAIL, "AUTHENTICATION_CLASSES": []}):
        run_id = make_run(owner)
        token = Token.objects.create(user=owner).key
        assert (
            Client().get(f"/tasks/{run_id}/", HTTP_AUTHORIZATION=f"Token {token}").status_code
            == 404
        )
        client = as_user(owner, enforce_csrf_checks=True)
        assert client.get(f"/tasks/{run_id}/").status_code == 200
        refused = client.post(f"/tasks/{run_id}/cancel/")
        assert refused.status_code == 403 and "CSRF check failed" in refused.json()["error"]
        client.get(f"/tasks/{run_id}/")
        assert (
            client.post(f"/tasks/{run_id}/cancel/", HTTP_X_CSRFTOKEN=_csrf(client)).status_code
            == 200
        )


def test_a_run_a_viewset_publishes_with_plain_apply_async_is_the_token_users(
    server: str,
) -> None:
    from tests.test_enqueue import NOBODY

    owner = User.objects.create_user("owner-viewset", password="pw")
    headers = _credentials("token", owner)
    with httpx.Client(base_url=server, headers=headers, timeout=10) as client:
        started = client.post("/api/reports/", params={"queue": NOBODY})
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        assert client.get(f"/tasks/{run_id}/").json()["id"] == run_id
    assert get_run(run_id).owner_id == str(owner.pk)
    with httpx.Client(base_url=server, headers=_credentials("basic", owner), timeout=10) as client:
        assert client.get(f"/tasks/{run_id}/").status_code == 200
