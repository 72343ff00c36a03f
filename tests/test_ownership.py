"""Runs published outside enqueue() belong to someone: the request's user, or the
owner bound with owned_by(). Existing delay()/apply_async() call sites are unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from tasktrail import enqueue, get_run, owned_by
from tests.testapp.tasks import add

pytestmark = pytest.mark.django_db
NOBODY = f"{settings.TASKTRAIL['KEY_PREFIX']}-nobody"


def test_a_plain_delay_in_a_view_belongs_to_the_signed_in_user() -> None:
    user = User.objects.create_user("alice", password="pw")
    client = Client()
    client.force_login(user)
    run_id = client.get("/start-with-delay/", {"queue": NOBODY}).json()["id"]
    run = get_run(run_id)
    assert run.owner_id == str(user.pk)
    # ... so its owner reads it through the API, where anyone else gets 404.
    assert client.get(f"/tasks/{run_id}/").status_code == 200
    assert Client().get(f"/tasks/{run_id}/").status_code == 404


def test_owned_by_a_subject_inside_a_request_keeps_the_requests_user_as_owner() -> None:
    user = User.objects.create_user("carol", password="pw")
    client = Client()
    client.force_login(user)
    run_id = client.get("/start-with-delay/", {"queue": NOBODY, "subject": "crawl:1"}).json()["id"]
    run = get_run(run_id)
    assert (run.owner_id, run.subject) == (str(user.pk), "crawl:1")


def test_an_anonymous_request_publishes_a_run_without_owner() -> None:
    run_id = Client().get("/start-with-delay/", {"queue": NOBODY}).json()["id"]
    assert get_run(run_id).owner_id is None


def test_owned_by_binds_owner_team_and_subject_outside_requests(
    django_capture_on_commit_callbacks: Any,
) -> None:
    user = User.objects.create_user("bob", password="pw")
    # enqueue() in a transaction publishes on commit, after the block: the owner it
    # was called under still holds.
    with (
        django_capture_on_commit_callbacks(execute=True),
        owned_by(user, team="acme", subject="invoice:7"),
    ):
        plain = add.apply_async((1, 1), queue=NOBODY)
        via_enqueue = enqueue(add, 2, 2, queue=NOBODY)
        explicit = enqueue(add, 3, 3, owner=None, team="other", queue=NOBODY)
    outside = add.apply_async((4, 4), queue=NOBODY)
    for run_id in (plain.id, via_enqueue.id):
        run = get_run(run_id)
        assert (run.owner_id, run.team, run.subject) == (str(user.pk), "acme", "invoice:7")
    assert get_run(explicit.id).team == "other"  # the call's own words win
    assert get_run(outside.id).owner_id is None


def test_owned_by_refuses_an_unsaved_user() -> None:
    with pytest.raises(ValueError, match="saved user"), owned_by(User(username="ghost")):
        pass
