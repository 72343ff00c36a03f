"""Hostile input that once ended in a 500 (issue 11, item 12): each is a JSON 4xx now.

In-process through Django's test client, on SQLite and on PostgreSQL (where a NUL
character in a query reaches the driver as an error, not as a miss). The live-server
twin of these values is the hand list in ``tests/acceptance/test_hostile.py``.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.http import HttpResponseBase
from django.test import AsyncRequestFactory, Client

from tasktrail.webhooks import HmacSha256, sign, webhook_view
from tests.test_http import make_run
from tests.testapp.tasks import echo

pytestmark = pytest.mark.django_db

SECRET = "whsec-hostile"


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.fixture
def owner() -> User:
    return User.objects.create_user("owner", password="pw")


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


def _owner_client(owner: User) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    return client


def _assert_json_4xx(response: HttpResponseBase, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json", response.content[:300]
    body: dict[str, Any] = json.loads(response.content)
    assert body["error"]
    return body


# --- the run list's query parameters -----------------------------------------------


@pytest.mark.parametrize("who", ["anonymous", "owner"])
def test_a_limit_of_five_thousand_digits_is_a_json_400(owner: User, who: str) -> None:
    client = Client() if who == "anonymous" else _owner_client(owner)
    _assert_json_4xx(client.get("/tasks/", {"limit": "1" * 5000}))


@pytest.mark.parametrize("name", ["task", "subject", "status", "cursor", "token", "limit"])
def test_a_nul_character_in_a_query_parameter_is_a_json_400(owner: User, name: str) -> None:
    body = _assert_json_4xx(_owner_client(owner).get("/tasks/", {name: "a\x00b"}))
    assert name in body["error"]


def test_a_nul_character_inside_the_cursor_is_a_json_400(owner: User) -> None:
    cursor = _cursor(["2020-01-01T00:00:00+00:00", "x\x00"])
    _assert_json_4xx(_owner_client(owner).get("/tasks/", {"cursor": cursor}))


def test_an_empty_status_is_a_json_400(owner: User) -> None:
    _assert_json_4xx(_owner_client(owner).get("/tasks/", {"status": ""}))


def test_an_anonymous_caller_is_held_to_the_cursor_rules_too() -> None:
    _assert_json_4xx(Client().get("/tasks/", {"cursor": "A" * 401}))
    _assert_json_4xx(Client().get("/tasks/", {"cursor": "!!!"}))


def test_a_nul_character_in_a_status_query_is_a_json_400(owner: User) -> None:
    run_id = make_run(owner)
    _assert_json_4xx(_owner_client(owner).get(f"/tasks/{run_id}/", {"token": "\x00"}))


# --- methods and CSRF ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize("endpoint", ["", "{run}/", "{run}/events/", "subjects/s:1/events/"])
def test_a_wrong_method_without_a_csrf_token_is_a_json_405(
    owner: User, method: str, endpoint: str
) -> None:
    run_id = make_run(owner)
    response = getattr(_owner_client(owner), method)("/tasks/" + endpoint.format(run=run_id))
    _assert_json_4xx(response, 405)
    assert "GET" in response["Allow"]


def test_an_unknown_path_posted_without_a_csrf_token_is_a_json_404(owner: User) -> None:
    _assert_json_4xx(_owner_client(owner).post("/tasks/no/such/thing/"), 404)


def test_cancel_without_a_csrf_token_is_still_refused_in_json(owner: User) -> None:
    run_id = make_run(owner)
    _assert_json_4xx(_owner_client(owner).post(f"/tasks/{run_id}/cancel/"), 403)


@pytest.mark.parametrize("value", ["0", "yes", "", "\x00"])
def test_terminate_outside_its_documented_values_is_a_json_400(owner: User, value: str) -> None:
    run_id = make_run(owner)
    client = Client()
    client.force_login(owner)
    response = client.post(f"/tasks/{run_id}/cancel/?terminate={value}")
    _assert_json_4xx(response)
    assert "terminate" in json.loads(response.content)["error"]


# --- the dashboard's run ids -----------------------------------------------------------


@pytest.mark.urls("tests.urls_ops")
@pytest.mark.parametrize("page", ["{id}/", "{id}/events/"])
@pytest.mark.parametrize("run_id", ["%00", "a%00b", "~AA", "x" * 300])
def test_a_dashboard_run_id_with_a_nul_character_is_not_found(
    staff_client: Client, page: str, run_id: str
) -> None:
    response = staff_client.get("/ops/runs/" + page.format(id=run_id))
    assert response.status_code == 404, response.content[:300]


@pytest.mark.urls("tests.urls_ops")
def test_a_dashboard_search_or_filter_with_a_nul_character_is_a_400(staff_client: Client) -> None:
    for query in ({"search": "a\x00b"}, {"task": "\x00"}, {"cursor": _cursor(["2020", "\x00"])}):
        response = staff_client.get("/ops/runs/", query)
        assert response.status_code == 400, (query, response.content[:300])


# --- webhooks ------------------------------------------------------------------------

factory = AsyncRequestFactory()
HOOK = webhook_view(echo, provider=HmacSha256(secrets=[SECRET]), kwargs=lambda p: {"value": 1})


def _deliver(body: bytes, stamp: str | None = None) -> HttpResponseBase:
    stamp = str(int(time.time())) if stamp is None else stamp
    headers = {
        "X-Signature-Timestamp": stamp,
        "X-Signature": sign(SECRET, stamp.encode() + b"." + body),
    }
    request = factory.post("/hook/", data=body, content_type="application/json", headers=headers)
    response: HttpResponseBase = async_to_sync(HOOK)(request)
    return response


@pytest.mark.parametrize(
    "stamp", ["9" * 400, "-" + "9" * 400, "9" * 5000, "1e10", "\u00b2", "1" * 13]
)
def test_a_signed_timestamp_of_hundreds_of_digits_is_a_json_400(stamp: str) -> None:
    _assert_json_4xx(_deliver(json.dumps({"id": str(uuid.uuid4())}).encode(), stamp))


def test_signed_json_nested_a_hundred_thousand_deep_is_a_json_400() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    assert _assert_json_4xx(_deliver(body))["code"] == "bad_json"


@pytest.mark.parametrize("subject", ["a%11b", "%00", "x%7F"])
def test_a_subject_with_a_control_character_is_a_json_400(owner: User, subject: str) -> None:
    _assert_json_4xx(_owner_client(owner).get(f"/tasks/subjects/{subject}/events/"))
