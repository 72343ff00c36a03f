"""Replay with edited arguments (tasktrail.replay): refusals publish nothing, a replay is
a new run linked by ``retry_of`` and audited with secrets hidden, the dashboard form and
the CLI command; against real Redis and the real broker, and a real worker at the end."""

from __future__ import annotations

import contextlib
import io
import json
import uuid
from typing import Any

import pytest
from celery.result import AsyncResult
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings
from django.utils import timezone

import tests.celery_app
from tasktrail import enqueue, get_run
from tasktrail.actions import ActionRefused, cancel
from tasktrail.flusher import flush_all
from tasktrail.models import AuditEntry, TaskRun
from tasktrail.redaction import HIDDEN
from tasktrail.replay import ReplayRefused, check_arguments, parse_arguments, replay
from tasktrail.runs import Run
from tests.testapp.tasks import add, echo, flaky, numbered_feed, sign_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.urls_ops")]


def cancelled(task: Any, *args: Any, **kwargs: Any) -> Run:
    """A finished run without a worker: enqueued an hour ahead, then cancelled."""
    run = enqueue(task, *args, countdown=3600, kwargs=kwargs)
    return cancel(run.id)


def discard(run_id: str) -> None:
    """Cancel a replay this test published; a worker running for other tests in the
    session may already have run it (it goes to the session's queue at once)."""
    with contextlib.suppress(ActionRefused):
        cancel(run_id)


def replays_of(run_id: str) -> list[TaskRun]:
    flush_all()  # a published run is in Redis first: bring every record to the database
    return list(TaskRun.objects.filter(retry_of=run_id))


def assert_refused_and_nothing_published(run_id: str, match: str, *args: Any) -> None:
    with pytest.raises(ReplayRefused, match=match):
        replay(run_id, *args)
    assert replays_of(run_id) == []
    assert not AuditEntry.objects.filter(run_id=run_id, action="replay").exists()


# Validation, before anything is published


def test_replay_publishes_a_new_run_with_the_edited_arguments_and_audits_it() -> None:
    run = cancelled(add, 1, 2)
    new = replay(run.id, [20, 22], {}, actor=None, address="10.0.0.9")
    assert (new.retry_of, new.task, new.args, new.kwargs) == (run.id, run.task, [20, 22], {})
    assert new.status in ("READY", "RUNNING", "SUCCESSFUL")  # a session worker may run it
    entry = AuditEntry.objects.get(run_id=run.id, action="replay")
    assert entry.address == "10.0.0.9"
    assert entry.actor_name == "system"
    assert entry.detail == {
        "new_run": new.id,
        "before": {"args": [1, 2], "kwargs": {}},
        "after": {"args": [20, 22], "kwargs": {}},
    }
    discard(new.id)


def test_omitted_arguments_are_the_stored_ones() -> None:
    run = cancelled(numbered_feed, 3, delay=0.2)
    first = replay(run.id, None, {"delay": 0.1})
    second = replay(run.id, [4])
    assert (first.args, first.kwargs) == ([3], {"delay": 0.1})
    assert (second.args, second.kwargs) == ([4], {"delay": 0.2})
    discard(first.id)
    discard(second.id)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ([1, 2, 3], {}, r"do not fit tests\.testapp\.tasks\.add\(x, y\): too many positional"),
        ([1, 2], {"z": 3}, r"unexpected keyword argument 'z'"),
        ([1], {}, r"missing a required argument: 'y'"),
        ({"x": 1}, {}, r"Positional arguments must be a JSON list, not an object"),
        ([1, 2], [3], r"Keyword arguments must be a JSON object, not a list"),
        ([1, 2], "y=2", r"Keyword arguments must be a JSON object, not a string"),
        ([float("nan"), 2], {}, r"args\[0\] is nan, which JSON cannot carry"),
        ([1, {"deep": [float("inf")]}], {}, r"args\[1\]\['deep'\]\[0\] is inf"),
        ([1, {2: 3}], {}, r"args\[1\] has the key 2: JSON object keys are strings"),
        ([1, {1, 2}], {}, r"args\[1\] is a set, which is not JSON"),
        (
            [1, 2],
            {"x": json.loads("[" * 150 + "]" * 150)},  # deep, yet within Python's limits
            r"kwargs\['x'\](\[0\]){100} is nested more than 100",
        ),
    ],
)
def test_a_refused_edit_publishes_nothing(args: Any, kwargs: Any, match: str) -> None:
    run = cancelled(add, 1, 2)
    assert_refused_and_nothing_published(run.id, match, args, kwargs)


def test_json_text_with_nan_or_bad_syntax_is_refused_with_what_to_fix() -> None:
    with pytest.raises(ReplayRefused, match="NaN is not a JSON number"):
        parse_arguments("[NaN, 1]", "{}")
    with pytest.raises(ReplayRefused, match="Infinity is not a JSON number"):
        parse_arguments("[]", '{"y": -Infinity}')
    with pytest.raises(ReplayRefused, match="Positional arguments are not valid JSON"):
        parse_arguments("[1,", "{}")
    with pytest.raises(ReplayRefused, match="nested too deeply"):
        parse_arguments("[" * 100_000 + "]" * 100_000, "{}")
    assert parse_arguments(" ", "") == ([], {})
    assert parse_arguments(None, '{"a": 1}') == (None, {"a": 1})


def test_a_bound_task_binds_without_self() -> None:
    assert check_arguments(flaky.name, ["k", 0], {}) == (["k", 0], {})
    with pytest.raises(ReplayRefused, match="too many positional"):
        check_arguments(flaky.name, ["self?", "k", 0], {})


def test_the_redaction_marker_left_in_is_refused_until_re_entered() -> None:
    run = cancelled(sign_in, "ada", "hunter2", options={"api_key": "k-1", "lang": "en"})
    assert run.args == ["ada", HIDDEN] and run.arguments_incomplete
    assert_refused_and_nothing_published(
        run.id, r"args\[1\], kwargs\['options'\]\['api_key'\] still hold the redaction marker"
    )
    assert_refused_and_nothing_published(
        run.id, r"args\[1\] still holds the redaction marker", None, {"options": {"lang": "fr"}}
    )
    new = replay(run.id, ["ada", "n3w-pass"], {"options": {"api_key": "k-2", "lang": "fr"}})
    detail = AuditEntry.objects.get(run_id=run.id, action="replay").detail
    # The audit keeps the same redaction as the record: no secret is stored.
    assert detail["after"] == {
        "args": ["ada", HIDDEN],
        "kwargs": {"options": {"api_key": HIDDEN, "lang": "fr"}},
    }
    assert "n3w-pass" not in json.dumps(detail) and "k-2" not in json.dumps(detail)
    assert new.args == ["ada", HIDDEN] and new.arguments_incomplete
    discard(new.id)


def test_cut_arguments_must_be_entered_in_full(settings: Any) -> None:
    with override_settings(TASKTRAIL={**settings.TASKTRAIL, "MAX_ARGUMENT_BYTES": 100}):
        run = cancelled(echo, "x" * 1000)
    assert isinstance(run.args, dict) and run.args["truncated"] is True
    assert_refused_and_nothing_published(run.id, "Positional arguments were cut when stored")
    assert_refused_and_nothing_published(run.id, "were cut", json.loads(json.dumps(run.args)))
    new = replay(run.id, ["short"])
    assert new.args == ["short"]
    discard(new.id)


def test_an_unknown_task_is_refused() -> None:
    row = TaskRun.objects.create(
        id=str(uuid.uuid4()), task="no.such.task", status="FAILED", args=[1], kwargs={},
        enqueued_at=timezone.now(), finished_at=timezone.now(),
    )  # fmt: skip
    assert_refused_and_nothing_published(row.id, "No task named 'no.such.task' is registered")


def test_a_run_that_has_not_finished_is_refused() -> None:
    run = enqueue(add, 1, 2, countdown=3600)
    with pytest.raises(ActionRefused, match=r"Only finished runs .* READY") as refused:
        replay(run.id, [3, 4])
    assert not isinstance(refused.value, ReplayRefused)
    assert replays_of(run.id) == []
    cancel(run.id)


# The dashboard form


@pytest.fixture
def boss() -> User:
    return User.objects.create_superuser(f"boss-{uuid.uuid4().hex[:6]}", "", "pw")


def client_for(user: User, **options: Any) -> Client:
    client = Client(**options)
    client.force_login(user)
    return client


def test_the_form_shows_the_stored_arguments_to_those_who_may_act(boss: User) -> None:
    run = cancelled(add, 1, 2)
    page = client_for(boss).get(f"/ops/runs/{run.id}/").content.decode()
    assert "Replay with changes" in page
    assert f'action="/ops/runs/{run.id}/replay/"' in page
    assert (
        '<textarea id="replay-args" name="args" rows="4" spellcheck="false">[\n  1,\n  2\n]' in page
    )
    viewer = User.objects.create_user("viewer", is_staff=True)
    assert (
        "Replay with changes" not in client_for(viewer).get(f"/ops/runs/{run.id}/").content.decode()
    )
    waiting = enqueue(add, 1, 2, countdown=3600)
    assert (
        "Replay with changes"
        not in client_for(boss).get(f"/ops/runs/{waiting.id}/").content.decode()
    )
    cancel(waiting.id)


def test_replay_from_the_dashboard_redirects_to_the_new_run(boss: User) -> None:
    run = cancelled(add, 1, 2)
    client = client_for(boss)
    response = client.post(
        f"/ops/runs/{run.id}/replay/", {"args": "[5, 6]", "kwargs": "{}"}, REMOTE_ADDR="10.1.2.3"
    )
    assert response.status_code == 302
    new_id = response["Location"].rstrip("/").rsplit("/", 1)[-1]
    new = get_run(new_id)
    assert (new.retry_of, new.args) == (run.id, [5, 6])
    entry = AuditEntry.objects.get(run_id=run.id, action="replay")
    assert (entry.actor_name, entry.address, entry.actor_id) == (boss.username, "10.1.2.3", boss.pk)
    page = client.get(response["Location"]).content.decode()
    assert f"Replayed {run.id} with changes as {new_id}." in page
    discard(new_id)


def test_a_refused_edit_shows_the_form_again_with_the_text_kept(boss: User) -> None:
    run = cancelled(add, 1, 2)
    typed = '[1, 2, "three"]'
    response = client_for(boss).post(
        f"/ops/runs/{run.id}/replay/", {"args": typed, "kwargs": '{"a": NaN}'}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "NaN is not a JSON number" in page
    assert "[1, 2, &quot;three&quot;]</textarea>" in page
    assert replays_of(run.id) == []
    deep = client_for(boss).post(
        f"/ops/runs/{run.id}/replay/", {"args": "[" * 50_000 + "]" * 50_000, "kwargs": ""}
    )
    assert deep.status_code == 400
    assert "nested too deeply" in deep.content.decode()
    bad_bind = client_for(boss).post(f"/ops/runs/{run.id}/replay/", {"args": typed, "kwargs": ""})
    assert bad_bind.status_code == 400
    assert "too many positional arguments" in bad_bind.content.decode()
    assert replays_of(run.id) == []


def test_who_may_replay(boss: User) -> None:
    run = cancelled(add, 1, 2)
    url = f"/ops/runs/{run.id}/replay/"
    form = {"args": "[5, 6]", "kwargs": "{}"}
    viewer = User.objects.create_user("viewer", is_staff=True)
    assert client_for(viewer).post(url, form).status_code == 403
    acting = User.objects.create_user("acting", is_staff=True)
    acting.user_permissions.add(Permission.objects.get(codename="change_taskrun"))
    member = User.objects.create_user("member")
    assert client_for(member).post(url, form).status_code == 403
    assert Client().post(url, form).status_code == 302  # anonymous: to the login page
    assert client_for(boss).get(url).status_code == 405
    # CSRF: a POST without the token is refused before anything happens.
    assert client_for(boss, enforce_csrf_checks=True).post(url, form).status_code == 403
    assert client_for(boss).post(f"/ops/runs/{uuid.uuid4()}/replay/", form).status_code == 404
    assert replays_of(run.id) == []
    response = client_for(acting).post(url, form)
    assert response.status_code == 302
    assert len(replays_of(run.id)) == 1
    discard(replays_of(run.id)[0].id)


# The CLI command


def run_cli(*args: str) -> str:
    out = io.StringIO()
    call_command("tasktrail", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_cli_replay_prints_the_new_run_and_refuses_clearly() -> None:
    run = cancelled(add, 1, 2)
    new_id = run_cli("replay", run.id, "--args", "[7, 8]").strip()
    new = get_run(new_id)
    assert (new.retry_of, new.args, new.kwargs) == (run.id, [7, 8], {})
    entry = AuditEntry.objects.get(run_id=run.id, action="replay")
    assert entry.actor_name.startswith("cli")
    assert get_run(run_cli("replay", run.id).strip()).args == [1, 2]  # omitted: stored
    with pytest.raises(CommandError, match=r"refused: .*unexpected keyword argument 'z'"):
        run_cli("replay", run.id, "--kwargs", '{"z": 1}')
    with pytest.raises(CommandError, match="NaN is not a JSON number"):
        run_cli("replay", run.id, "--args", "[NaN, 1]")
    with pytest.raises(CommandError, match="No run"):
        run_cli("replay", str(uuid.uuid4()))
    assert len(replays_of(run.id)) == 2
    for row in replays_of(run.id):
        discard(row.id)


# A real worker runs the replay


@pytest.mark.worker
@pytest.mark.usefixtures("worker")
def test_a_failed_run_replayed_runs_with_the_edited_arguments() -> None:
    failed = enqueue(sign_in, "nobody", "pw", kwargs={}).wait(timeout=30)
    assert failed.status == "FAILED"
    new = replay(failed.id, ["ada", "the-real-pass"], {}).wait(timeout=30)
    assert (new.status, new.result, new.retry_of) == ("SUCCESSFUL", "ada", failed.id)
    assert new.args == ["ada", HIDDEN]  # stored redacted; the task got the real value
    celery = AsyncResult(new.id, app=tests.celery_app.app)
    assert (celery.state, celery.get(timeout=10)) == ("SUCCESS", "ada")

    broken = enqueue(add, "a", 1).wait(timeout=30)
    assert broken.status == "FAILED"
    fixed = replay(broken.id, [20, 22], {}).wait(timeout=30)
    assert (fixed.status, fixed.result, fixed.args) == ("SUCCESSFUL", 42, [20, 22])
    assert AsyncResult(fixed.id, app=tests.celery_app.app).get(timeout=10) == 42
    flush_all()
    row = TaskRun.objects.get(pk=fixed.id)
    assert (row.retry_of, row.args, row.result, row.status) == (
        broken.id,
        [20, 22],
        42,
        "SUCCESSFUL",
    )
    again = replay(fixed.id, [1, 1], {}).wait(timeout=30)  # a successful run replays too
    assert again.result == 2


@pytest.mark.parametrize(
    ("args_text", "match"),
    [
        ('["a\\u0000b"]', "NUL character"),
        ('[{"k\\u0000": 1}]', "NUL character"),
        ("[" + "9" * 5000 + "]", "not valid JSON"),
    ],
)
def test_values_the_database_or_python_cannot_take_are_refused(args_text: str, match: str) -> None:
    run = cancelled(add, 1, 2)
    with pytest.raises(ReplayRefused, match=match):
        args, kwargs = parse_arguments(args_text, "{}")
        replay(run.id, args, kwargs)
    assert replays_of(run.id) == []
