"""tasktrail.contrib.rest_framework in a DRF project over a real uvicorn and worker:
docs/drf.md's complete example, run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from tasktrail import Status, get_run
from tasktrail.flusher import flush_all
from tests.helpers import eventually
from tests.test_drf_auth import _credentials

pytestmark = [pytest.mark.server, pytest.mark.worker, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent


def test_the_docs_example_is_the_one_the_tests_run() -> None:
    page = (ROOT / "docs" / "drf.md").read_text()
    block = re.search(r"```python\n(# The complete example.*?)```", page, re.S)
    assert block is not None
    assert block.group(1) == (ROOT / "tests" / "testapp" / "drf_example.py").read_text()


def _finished(client: httpx.Client, url: str) -> dict[str, Any]:
    return eventually(
        lambda: (body := client.get(url).json())["status"] == "SUCCESSFUL" and body, timeout=30
    )


def test_perform_create_with_plain_apply_async_is_the_users_run(
    server: str, worker: object
) -> None:
    owner = User.objects.create_user("doc-owner", password="pw")
    with httpx.Client(base_url=server, headers=_credentials("token", owner), timeout=10) as client:
        created = client.post("/api/documents/", json={"title": "Q3 report"})
        assert created.status_code == 201, created.text
        run_id = created.json()["uuid"]
        body = _finished(client, f"/tasks/{run_id}/")
        assert body["result"] == {"document": created.json()["id"]}
        assert body["progress"]["percent"] == 100
    assert get_run(run_id).owner_id == str(owner.pk)


def test_process_answers_202_lists_the_objects_runs_and_guards_them(
    server: str, worker: object
) -> None:
    owner = User.objects.create_user("proc-owner", password="pw")
    other = User.objects.create_user("proc-other", password="pw")
    with httpx.Client(base_url=server, headers=_credentials("token", owner), timeout=10) as client:
        document = client.post("/api/documents/", json={"title": "scan"}).json()
        started = client.post(f"/api/documents/{document['id']}/process/")
        assert started.status_code == 202, started.text
        assert started.headers["Location"] == started.json()["status_url"]
        run_id = started.json()["id"]
        assert _finished(client, started.json()["status_url"])["subject"] == (
            f"testapp.document:{document['id']}"
        )
        flush_all()
        listed = client.get(f"/api/documents/{document['id']}/runs/").json()
        assert run_id in [run["id"] for run in listed]
        assert all(run["status_url"].startswith("http") for run in listed)
        again = client.post(f"/api/documents/{document['id']}/runs/{run_id}/cancel/")
        assert again.status_code == 409  # it already ended
        browsable = client.post(
            f"/api/documents/{document['id']}/process/", headers={"Accept": "text/html"}
        )
        assert browsable.status_code == 202
        assert browsable.headers["content-type"].startswith("text/html")
    with httpx.Client(base_url=server, headers=_credentials("basic", other), timeout=10) as client:
        theirs = client.get(f"/api/documents/{document['id']}/runs/").json()
        assert run_id not in [run["id"] for run in theirs]
        refused = client.post(f"/api/documents/{document['id']}/runs/{run_id}/cancel/")
        assert refused.status_code == 404
    assert get_run(run_id).status == Status.SUCCESSFUL


def test_the_actions_follow_the_viewsets_lookup_field_and_subject(
    server: str, worker: object
) -> None:
    owner = User.objects.create_user("uuid-owner", password="pw")
    with httpx.Client(base_url=server, headers=_credentials("token", owner), timeout=10) as client:
        document = client.post("/api/documents/", json={"title": "by uuid"}).json()
        base = f"/api/documents-by-uuid/{document['uuid']}"
        started = client.post(f"{base}/process/")
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        finished = _finished(client, started.json()["status_url"])
        assert finished["subject"] == f"document:{document['uuid']}"
        flush_all()
        listed = client.get(f"{base}/runs/")
        assert listed.status_code == 200, listed.text
        assert run_id in [run["id"] for run in listed.json()]
        assert client.post(f"{base}/runs/{run_id}/cancel/").status_code == 409
